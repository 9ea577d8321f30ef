"""Home and node spec parsing: every bad input is one SpecError line naming the place."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from pytest_cirque.capabilities.model import base
from pytest_cirque.capabilities.model.base import Capability, ContainerConfig
from pytest_cirque.core.errors import SpecError
from pytest_cirque.spec import (
    DEFAULT_IMAGE,
    WAIT_FOR_TIMEOUT_S,
    HomeSpec,
    NodeSpec,
    WaitFor,
    check_home_name,
)


class Beacon(Capability):
    """A fake capability: one optional numeric parameter, checked like real ones."""

    name = "Beacon"

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None, where: str) -> Capability:
        params = dict(params or {})
        period = params.pop("period", 1)
        if params:
            raise SpecError(f"{where}: unknown parameter {sorted(params)[0]}")
        if not isinstance(period, (int, float)) or period <= 0:
            raise SpecError(f"{where}: field 'period' must be a positive number, got {period!r}")
        return cls(period=period)

    def configure(self, config: ContainerConfig, node_name: str) -> None:
        config.environment["BEACON"] = str(self.params["period"])


@pytest.fixture(autouse=True)
def beacon() -> Iterator[None]:
    base.lookup("LanAccess", "import")  # loads the real capabilities first
    base.REGISTRY["beacon"] = Beacon
    yield
    base.REGISTRY.pop("beacon", None)


def one_line(exc: pytest.ExceptionInfo[SpecError]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_defaults_for_an_empty_node() -> None:
    spec = HomeSpec.parse({"hub": None, "lamp": {}})
    assert spec.names() == ["hub", "lamp"]
    hub = spec.nodes["hub"]
    assert (hub.image, hub.capabilities, hub.env, hub.command) == (DEFAULT_IMAGE, [], {}, None)
    assert hub.docker_network == "default"


def test_full_node_spec() -> None:
    spec = HomeSpec.parse(
        {
            "hub": {
                "image": "my/image:1",
                "capabilities": ["LanAccess", {"Beacon": {"period": 5}}],
                "env": {"A": 1, "B": True, "C": None},
                "command": ["sleep", 10],
                "docker_network": "IPv6",
            }
        }
    )
    hub = spec.nodes["hub"]
    assert hub.image == "my/image:1"
    assert [c.name for c in hub.capabilities] == ["LanAccess", "Beacon"]
    assert hub.capability("beacon").params == {"period": 5}
    assert hub.env == {"A": "1", "B": "true", "C": ""}
    assert hub.command == ["sleep", "10"]
    assert hub.docker_network == "ipv6"


def test_capabilities_as_a_mapping() -> None:
    node = NodeSpec.parse("n", {"capabilities": {"Beacon": {"period": 2}}, "env": {"X": "1=2"}})
    assert node.capabilities[0].params == {"period": 2}
    assert node.env == {"X": "1=2"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"capabilities": "LanAccess"},
            "node n: field 'capabilities' must be a list of capabilities, got the string "
            "'LanAccess'; write [LanAccess]",
        ),
        (
            {"capability": "LanAccess"},
            "node n: field 'capability' must be a list of capabilities, got the string "
            "'LanAccess'; write [LanAccess]",
        ),
        (
            {"env": ["MODE=eco"]},
            "node n: field 'env' must be a mapping of NAME: value, got list ['MODE=eco']; "
            "write it as {MODE: 'eco'}",
        ),
        ({"imgae": "base"}, "node n: unknown field 'imgae' (did you mean image?)"),
        ({"capabilities": ["LanAcces"]}, "unknown capability 'LanAcces' (did you mean LanAccess?)"),
    ],
)
def test_misshapen_node_fields_are_refused_in_one_line(raw: dict[str, Any], expected: str) -> None:
    with pytest.raises(SpecError) as error:
        NodeSpec.parse("n", raw)
    message = str(error.value)
    assert "\n" not in message
    assert expected in message


@pytest.mark.parametrize("source", [{}, None])
def test_an_empty_home_is_refused_in_one_line(source: Any) -> None:
    with pytest.raises(SpecError, match=r"^home spec: the home spec has no nodes; list at least"):
        HomeSpec.parse(source)


@pytest.mark.parametrize(
    "name",
    ["x" * 400, "a/b", "../up", "-leading", "with space", "", "dots.in.name", 7],
)
def test_a_bad_home_name_is_refused_in_one_line(name: Any) -> None:
    with pytest.raises(SpecError) as error:
        check_home_name(name, "home_factory")
    message = str(error.value)
    assert message.startswith("home_factory: invalid home name ")
    assert "at most 40 letters, digits, '_' and '-'" in message and "\n" not in message
    assert len(message) < 200


def test_a_good_home_name_passes() -> None:
    assert check_home_name("kitchen_2-b") == "kitchen_2-b"


def test_cirque_keys() -> None:
    spec = HomeSpec.parse(
        {
            "ap": {"type": "wifi_ap", "capability": ["LanAccess", "Beacon"]},
            "dev": {"base_image": "generic_node_image", "docker_network": "internal"},
            "tc": {"capability": ["TrafficControl"], "traffic_control": {"loss": 10}},
        }
    )
    assert spec.nodes["ap"].image == "wifi-ap"
    assert spec.nodes["ap"].capability("Beacon").params == {"period": 1}
    assert spec.nodes["dev"].image == "generic_node_image"
    assert spec.nodes["dev"].docker_network == "internal"
    assert spec.nodes["tc"].capability("TrafficControl").loss == 10


def test_cirque_mount_pairs_ask_for_mount(tmp_path: Path) -> None:
    node = NodeSpec.parse("n", {"mount_pairs": [[str(tmp_path), "/data"]]})
    mount = node.capability("Mount")
    assert mount is not None
    assert [(m.source, m.target) for m in mount.mounts] == [(str(tmp_path), "/data")]


def test_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "home.yaml"
    path.write_text("hub:\n  capabilities: [Beacon]\nlamp: {env: {MODE: eco}}\n")
    spec = HomeSpec.parse(path)
    assert spec.names() == ["hub", "lamp"]
    assert spec.nodes["lamp"].env == {"MODE": "eco"}
    assert spec.source == str(path)


def test_existing_spec_is_returned() -> None:
    spec = HomeSpec.parse({"a": {}})
    assert HomeSpec.parse(spec) is spec


# ---- bad input ----------------------------------------------------------------------


def test_unknown_capability_names_node_and_lists_known() -> None:
    with pytest.raises(SpecError) as exc:
        HomeSpec.parse({"hub": {"capabilities": ["Teleport"]}})
    text = one_line(exc)
    assert "node hub" in text and "'Teleport'" in text and "Beacon" in text


def test_bad_capability_parameter_names_the_field() -> None:
    with pytest.raises(SpecError) as exc:
        HomeSpec.parse({"hub": {"capabilities": [{"Beacon": {"period": -1}}]}})
    assert "node hub capability Beacon" in one_line(exc) and "period" in one_line(exc)


def test_real_capability_bad_parameters() -> None:
    with pytest.raises(SpecError) as exc:
        NodeSpec.parse("n", {"capabilities": [{"TrafficControl": {"loss": 150}}]})
    assert "loss" in one_line(exc)
    with pytest.raises(SpecError) as exc:
        NodeSpec.parse(
            "n", {"capabilities": [{"Mount": {"source": "/no/such/dir", "target": "/x"}}]}
        )
    assert "/no/such/dir" in one_line(exc)


def test_capability_listed_twice() -> None:
    with pytest.raises(SpecError, match="listed twice"):
        NodeSpec.parse("n", {"capabilities": ["Beacon", "beacon"]})


def test_capability_parameters_given_twice_cirque_style() -> None:
    with pytest.raises(SpecError, match="given twice"):
        NodeSpec.parse(
            "n",
            {"capability": [{"TrafficControl": {"loss": 1}}], "traffic_control": {"loss": 2}},
        )


def test_duplicate_node_in_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "home.yaml"
    path.write_text("hub: {}\nlamp: {}\nhub: {image: other}\n")
    with pytest.raises(SpecError) as exc:
        HomeSpec.parse(path)
    text = one_line(exc)
    assert f"{path}:3" in text and "duplicate key 'hub'" in text and "line 1" in text


def test_duplicate_field_in_yaml(tmp_path: Path) -> None:
    path = tmp_path / "home.yaml"
    path.write_text("hub:\n  image: a\n  image: b\n")
    with pytest.raises(SpecError, match=r"home.yaml:3: duplicate key 'image'"):
        HomeSpec.parse(path)


def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "home.yaml"
    path.write_text("hub:\n  image: base\n lamp: [unclosed\n")
    with pytest.raises(SpecError) as exc:
        HomeSpec.parse(path)
    text = one_line(exc)
    assert text.startswith(f"{path}:3: invalid YAML")


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not found"):
        HomeSpec.parse(tmp_path / "nope.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    with pytest.raises(SpecError, match="empty"):
        HomeSpec.parse(empty)


def test_node_error_in_yaml_has_file_line(tmp_path: Path) -> None:
    path = tmp_path / "home.yaml"
    path.write_text("hub: {}\nlamp:\n  colour: red\n")
    with pytest.raises(SpecError) as exc:
        HomeSpec.parse(path)
    assert one_line(exc).startswith(f"{path}:2 node lamp: unknown field 'colour'")


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ({"colour": "red"}, "unknown field 'colour'"),
        ({"image": ""}, "field 'image'"),
        ({"image": "two words"}, "field 'image'"),
        ({"env": "A=1"}, "field 'env'"),
        ({"env": {"1BAD": "x"}}, "invalid variable name"),
        ({"env": {"A": [1]}}, "must be a scalar"),
        ({"command": {"run": 1}}, "field 'command'"),
        ({"command": []}, "field 'command'"),
        ({"capabilities": 5}, "field 'capabilities'"),
        ({"capabilities": [{"A": {}, "B": {}}]}, "must be a name or"),
        ({"capabilities": [{"Beacon": 3}]}, "must be a mapping"),
        ({"docker_network": "overlay"}, "unknown network 'overlay'"),
        ("just text", "must be a mapping of fields"),
    ],
)
def test_bad_fields(node: Any, expected: str) -> None:
    with pytest.raises(SpecError) as exc:
        HomeSpec.parse({"hub": node})
    text = one_line(exc)
    assert "node hub" in text and expected in text


@pytest.mark.parametrize("name", ["", "-lead", "has space", "a/b", "a.b", "x" * 64, 7])
def test_bad_node_names(name: Any) -> None:
    with pytest.raises(SpecError, match="invalid node name"):
        HomeSpec.parse({name: {}})


def test_home_spec_must_be_a_mapping() -> None:
    with pytest.raises(SpecError, match="mapping of node name"):
        HomeSpec.parse([{"hub": {}}])


def test_cirque_weave_config_file_asks_for_weave(tmp_path: Path) -> None:
    credentials = tmp_path / "weave.json"
    credentials.write_text("{}")
    spec = NodeSpec.parse(
        "hub",
        {"weave_config_file": str(credentials), "weave_config_target_path": "/etc/weave.json"},
    )
    weave = spec.capability("Weave")
    assert weave is not None and [c.name for c in spec.capabilities] == ["Weave"]
    assert (weave.file, weave.target) == (str(credentials), "/etc/weave.json")


def test_cirque_weave_config_file_missing_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        NodeSpec.parse("hub", {"weave_config_file": str(tmp_path / "absent.json")})
    assert "node hub" in one_line(caught) and "does not exist" in one_line(caught)


@pytest.mark.parametrize(
    ("keys", "display", "localhost"),
    [
        ({"display_id": 3, "xvnc_localhost": False}, 3, False),
        ({"docker_display_id": 5}, 5, True),
        ({"display_id": 2, "docker_display_id": 2}, 2, True),
    ],
)
def test_cirque_xvnc_keys(keys: dict[str, Any], display: int, localhost: bool) -> None:
    spec = NodeSpec.parse("panel", {"type": "xvnc", "capability": ["XVNC"], **keys})
    xvnc = spec.capability("XVNC")
    assert xvnc is not None and (xvnc.display, xvnc.localhost) == (display, localhost)


def test_cirque_xvnc_display_ids_that_disagree_are_refused() -> None:
    with pytest.raises(SpecError, match=r"node panel.*given twice"):
        NodeSpec.parse("panel", {"capability": ["XVNC"], "display_id": 1, "docker_display_id": 2})


def test_cirque_xvnc_keys_without_xvnc_are_accepted_and_ask_for_nothing() -> None:
    spec = NodeSpec.parse(
        "phone", {"display_id": 1, "docker_display_id": 1, "xvnc_localhost": True}
    )
    assert spec.capabilities == []


# --- wait_for ---------------------------------------------------------------------------


def test_wait_for_reads_a_log_pattern_ports_health_and_a_timeout() -> None:
    node = NodeSpec.parse(
        "web", {"wait_for": {"log": r"listening on \d+", "port": [80, 443], "healthy": True}}
    )
    assert node.wait_for == WaitFor(
        log=r"listening on \d+", ports=(80, 443), healthy=True, timeout=WAIT_FOR_TIMEOUT_S
    )
    assert NodeSpec.parse("db", {"wait_for": {"port": 5432, "timeout": 5}}).wait_for == WaitFor(
        ports=(5432,), timeout=5.0
    )
    assert NodeSpec.parse("plain", {}).wait_for is None


@pytest.mark.parametrize(
    ("wait_for", "expected"),
    [
        ("ready", "field 'wait_for' must be a mapping such as"),
        ({}, "field 'wait_for' asks for nothing; give log, port or healthy"),
        ({"prot": 80}, "unknown key 'prot' (did you mean port?)"),
        ({"port": 70000}, "port must be a TCP port 1..65535, got 70000"),
        ({"port": "80"}, "port must be a TCP port 1..65535, got '80'"),
        ({"log": "("}, "log '(' is not a regular expression"),
        ({"healthy": "yes"}, "healthy must be true or false, got 'yes'"),
        ({"port": 80, "timeout": -1}, "timeout must be a number of seconds over 0, got -1"),
    ],
)
def test_a_bad_wait_for_is_refused_in_one_line(wait_for: Any, expected: str) -> None:
    with pytest.raises(SpecError) as error:
        NodeSpec.parse("web", {"wait_for": wait_for})
    assert expected in str(error.value) and "\n" not in str(error.value)
    assert str(error.value).startswith("node web: field 'wait_for'")
