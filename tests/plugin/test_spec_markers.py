"""From markers to a home spec: YAML paths relative to the test file, the capabilities
marker, and bad specs failing setup in one line before the service is even asked.

The ``cirque`` fixture is replaced by a recorder of the specs it is given: these tests
cover the plugin's own logic; tests/integration/test_plugin_docker.py runs it for real.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_cirque import topology


def recording_conftest(record: str) -> str:
    """A conftest whose ``cirque`` service creates nothing: for each home it prints
    ``CREATED`` and each line that ``record(spec, name)`` (Python source given here)
    makes of the spec it was asked for."""
    return f"""
import json
import pytest

{record}

class RecordingService:
    def create_home(self, spec, name=None):
        for line in record(spec, name):
            print("CREATED " + line)
        return Home()

class Home:
    name = "recorded"
    nodes = {{}}
    def destroy(self):
        pass

@pytest.fixture(scope="session")
def cirque():
    return RecordingService()
"""


#: Each node's capabilities, with a TrafficControl's loss.
RECORDING_CONFTEST = recording_conftest(
    """
def record(spec, name):
    caps = {
        n: [(c.name, c.describe().get("loss")) for c in s.capabilities]
        for n, s in spec.nodes.items()
    }
    return [f"name={name} caps={caps}"]
"""
)

REFUSING_CONFTEST = """
import pytest

@pytest.fixture(scope="session")
def cirque():
    raise AssertionError("the service must not be asked for anything")
"""


def created_lines(result: pytest.RunResult) -> list[str]:
    return [line[line.index("CREATED") :] for line in result.stdout.lines if "CREATED" in line]


def test_capabilities_marker_adds_to_all_or_named_nodes(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(RECORDING_CONFTEST)
    pytester.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.capabilities("Interactive")

        @pytest.mark.home({"a": {"capabilities": [{"TrafficControl": {"loss": 5}}]}, "b": {}},
                          name="kitchen")
        @pytest.mark.capabilities({"TrafficControl": {"loss": 20}}, nodes=["a"])
        @pytest.mark.capabilities("LanAccess", nodes=["b"])
        def test_marked(home):
            pass
        """
    )
    result = pytester.runpytest("-s")
    result.assert_outcomes(passed=1)
    assert created_lines(result) == [
        "CREATED name=kitchen caps={"
        "'a': [('Interactive', None), ('TrafficControl', 20.0)], "
        "'b': [('Interactive', None), ('LanAccess', None)]}"
    ]


def test_yaml_spec_path_is_relative_to_the_test_file(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(RECORDING_CONFTEST)
    sub = pytester.mkpydir("sub")
    (sub / "home.yaml").write_text("hub:\n  capability: [LanAccess]\nlamp: {}\n")
    (sub / "test_yaml.py").write_text(
        "import pytest\n\n@pytest.mark.home('home.yaml')\ndef test_from_yaml(home):\n    pass\n"
    )
    result = pytester.runpytest("-s")
    result.assert_outcomes(passed=1)
    assert created_lines(result) == [
        "CREATED name=test_from_yaml caps={'hub': [('LanAccess', None)], 'lamp': []}"
    ]


BAD_SPECS = [
    (
        '@pytest.mark.home({"hub": {"capabilities": ["Teleport"]}})',
        "*::test_bad: @pytest.mark.home node hub: unknown capability 'Teleport'; known*",
    ),
    (
        '@pytest.mark.home({"hub": {"capabilities": [{"TrafficControl": {"loss": 101}}]}})',
        "*::test_bad: @pytest.mark.home node hub capability TrafficControl*loss*",
    ),
    (
        '@pytest.mark.home({"hub": {"imgae": "base"}})',
        "*::test_bad: @pytest.mark.home node hub: unknown field 'imgae'*",
    ),
    (
        '@pytest.mark.home("missing.yaml")',
        "*::test_bad: @pytest.mark.home: home spec file */missing.yaml not found*",
    ),
    (
        '@pytest.mark.home({"hub": {}}) @pytest.mark.capabilities("LanAccess", nodes=["hbu"])',
        "*::test_bad: @pytest.mark.capabilities: nodes=[[]'hbu'[]] are not in the home (its "
        "nodes: hub)*",
    ),
    (
        '@pytest.mark.home({"hub": {}}) @pytest.mark.capabilities({"Mount": {"source": "x"}})',
        "*::test_bad: @pytest.mark.capabilities: node 'hub'*Mount*",
    ),
]


@pytest.mark.parametrize(("decorators", "line"), BAD_SPECS)
def test_a_bad_spec_fails_setup_in_one_line_and_asks_nothing(
    pytester: pytest.Pytester, decorators: str, line: str
) -> None:
    pytester.makeconftest(REFUSING_CONFTEST)
    pytester.makepyfile(
        f"""
        import pytest

        {decorators.replace(" @pytest", chr(10) + "        @pytest")}
        def test_bad(home):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([line])
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.no_fnmatch_line("*another exception occurred*")
    result.stdout.no_fnmatch_line("*must not be asked*")


def test_bad_yaml_names_file_and_line(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(REFUSING_CONFTEST)
    (pytester.path / "broken.yaml").write_text("hub:\n  image: base\n  env: [unclosed\n")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.home("broken.yaml")
        def test_bad(home):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*::test_bad: *broken.yaml:[0-9]*: invalid YAML*"])


def test_a_bad_spec_fails_even_without_the_home_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.home({"hub": {"capabilities": ["Teleport"]}})
        def test_bad():
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)


def test_a_spec_error_in_the_test_body_shows_the_test_line_and_the_error(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(REFUSING_CONFTEST.replace("raise AssertionError", "return object()#"))
    pytester.makepyfile(
        """
        def test_body(home_factory):
            home_factory({"hub": {"capabilities": [{"TrafficControl": {"loss": -1}}]}})
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            '>       home_factory({"hub": {"capabilities": *',
            "E       pytest_cirque.core.errors.SpecError: *::test_body: home_factory node hub*"
            "loss*",
        ]
    )
    result.stdout.no_fnmatch_line("*spec.py*")
    result.stdout.no_fnmatch_line("*plugin.py*")


def test_docker_unreachable_fails_setup_in_one_line(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.home({"hub": {}})
        def test_needs_docker(home):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["Docker engine unreachable at unix:///nonexistent/docker.sock*; start Docker*"]
    )
    result.stdout.no_fnmatch_line("*Traceback*")


#: Each node's Thread channel, PAN ID and mode, a line per node.
THREAD_RECORDING_CONFTEST = recording_conftest(
    """
def record(spec, name):
    lines = []
    for node_name, node in spec.nodes.items():
        threads = [c for c in node.capabilities if c.name == "Thread"]
        params = threads[0].params if threads else None
        if params:
            params = {k: params[k] for k in sorted(params) if k in ("channel", "panid", "mode")}
        lines.append(f"{node_name}: {params}")
    return lines
"""
)


def test_thread_marker_puts_the_nodes_on_one_network(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(THREAD_RECORDING_CONFTEST)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.home({"a": {}, "b": {}})
        @pytest.mark.thread(channel=20)
        def test_every_node(home):
            pass

        @pytest.mark.home({"a": {"capabilities": [{"Thread": {"mode": "-"}}]}, "b": {}})
        @pytest.mark.thread(panid=0x1234)
        def test_the_thread_nodes_keep_their_own_parameters(home):
            pass

        @pytest.mark.home({"a": {}, "b": {}})
        @pytest.mark.thread(nodes=["b"])
        def test_named(home):
            pass
        """
    )
    result = pytester.runpytest("-s", "-p", "no:randomly")
    result.assert_outcomes(passed=3)
    assert created_lines(result) == [
        "CREATED a: {'channel': 20, 'mode': 'rdn'}",
        "CREATED b: {'channel': 20, 'mode': 'rdn'}",
        "CREATED a: {'mode': '-', 'panid': 4660}",
        "CREATED b: None",
        "CREATED a: None",
        "CREATED b: {'mode': 'rdn'}",
    ]


#: The original Cirque's example topology, as a file and as the mapping it holds.
ORIGINAL_TOPOLOGY_FILE = Path(__file__).parents[2] / "examples" / "cirque_original_topology.yaml"
ORIGINAL_TOPOLOGY_YAML = ORIGINAL_TOPOLOGY_FILE.read_text()
ORIGINAL_TOPOLOGY = yaml.safe_load(ORIGINAL_TOPOLOGY_YAML)

#: Each node's image and capabilities with their parameters, as JSON.
NODES_RECORDING_CONFTEST = recording_conftest(
    """
def record(spec, name):
    nodes = {
        n: [s.image, [[c.name, c.params] for c in s.capabilities]]
        for n, s in spec.nodes.items()
    }
    return [json.dumps(nodes)]
"""
)


def nodes_as_recorded(spec: Any) -> dict[str, Any]:
    """A spec's nodes as the recording service prints them, through JSON as it does."""
    return json.loads(
        json.dumps(
            {
                n: [s.image, [[c.name, c.params] for c in s.capabilities]]
                for n, s in spec.nodes.items()
            }
        )
    )


def without_made_up_ssid(nodes: dict[str, Any]) -> dict[str, Any]:
    """The nodes with the access point's SSID, made up anew at each reading, taken out
    once checked to be Cirque's kind of SSID."""
    for _image, capabilities in nodes.values():
        for name, params in capabilities:
            if name == "WiFiAP":
                assert params.pop("ssid").startswith("wifiap-")
    return nodes


def test_an_original_cirque_topology_works_as_the_service_reads_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(NODES_RECORDING_CONFTEST)
    (pytester.path / "original.yaml").write_text(ORIGINAL_TOPOLOGY_YAML)
    pytester.makepyfile(
        f"""
        import pytest
        from pytest_cirque.plugin import home_fixture

        ORIGINAL_TOPOLOGY = {ORIGINAL_TOPOLOGY!r}
        shared = home_fixture("original.yaml")

        @pytest.mark.home("original.yaml")
        def test_marker_with_the_file(home):
            pass

        @pytest.mark.home(ORIGINAL_TOPOLOGY)
        def test_marker_with_the_mapping(home):
            pass

        def test_factory(home_factory):
            home_factory("original.yaml")
            home_factory(ORIGINAL_TOPOLOGY)

        def test_shared(shared):
            pass
        """
    )
    result = pytester.runpytest("-s", "-p", "no:randomly")
    result.assert_outcomes(passed=4)
    recorded = [json.loads(line[len("CREATED ") :]) for line in created_lines(result)]
    assert len(recorded) == 5

    served = topology.translate(ORIGINAL_TOPOLOGY).parse(allow_host_mounts=False)
    expected = without_made_up_ssid(nodes_as_recorded(served))
    assert [without_made_up_ssid(nodes) for nodes in recorded] == [expected] * 5
    # What the service's reading means, spelled out: WiFi stations that keep their
    # Ethernet, Thread nodes in RCP mode, an access point routing for them.
    capabilities = {name: dict(caps) for name, (_image, caps) in expected.items()}
    assert list(capabilities) == ["device0", "device1", "wifi-ap"]
    for station in ("device0", "device1"):
        assert list(capabilities[station]) == ["WiFi", "Thread", "Interactive"]
        assert capabilities[station]["WiFi"]["lan"] is True
        assert capabilities[station]["Thread"]["rcp_mode"] is True
    assert capabilities["wifi-ap"]["WiFiAP"]["mode"] == "router"


def test_an_original_topology_with_bluetooth_fails_in_one_line_with_its_place(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(REFUSING_CONFTEST.replace("raise AssertionError", "return object()#"))
    (pytester.path / "original.yaml").write_text(
        ORIGINAL_TOPOLOGY_YAML.replace("[WiFi, Thread, Interactive]", "[Bluetooth]", 1)
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.home("original.yaml")
        def test_marker(home):
            pass

        def test_factory(home_factory):
            home_factory({"device0": {"type": "generic_node", "capability": ["Bluetooth"]}})
        """
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(errors=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*::test_marker: *original.yaml:5 node device0: capability Bluetooth needs a "
            "simulated Bluetooth radio*; remove it",
            "E       pytest_cirque.core.errors.SpecError: *::test_factory: home_factory node "
            "device0: capability Bluetooth needs a simulated Bluetooth radio*; remove it",
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
