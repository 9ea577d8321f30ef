"""pytest plugin: the fixtures, markers, options and hooks of pytest-cirque.

A test asks for a virtual home with ``@pytest.mark.home(spec)`` and the ``home`` fixture.
Markers are checked, and the spec parsed, in ``pytest_runtest_setup`` before any fixture
runs, so a bad marker or spec fails the test's setup in one line and creates nothing.
On failure each home's topology and node logs go into the report and the log directory;
with ``--cirque-keep`` the failed test's homes stay up for a look with the ``cirque`` CLI.

Per-node fixtures are plain fixtures over ``home``::

    @pytest.fixture
    def sensor(home):
        return home["sensor"]
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

from pytest_cirque import config as cirque_config
from pytest_cirque.core.errors import CirqueError, ProvisioningError, SpecError

if TYPE_CHECKING:
    from pytest_cirque.homes.home import Home
    from pytest_cirque.homes.node import Node
    from pytest_cirque.homes.session import Cirque
    from pytest_cirque.spec import HomeSpec
    from pytest_cirque.thread import ThreadNetwork
    from pytest_cirque.wifi import AccessPoint

#: Marker name -> "signature: description", as pytest's ``markers`` ini lines want them.
MARKERS: dict[str, str] = {
    "home": "home(spec, *, name=None): the nodes of the test's `home` fixture: a mapping of "
    "node name to node spec, or a YAML file path relative to the test file",
    "capabilities": "capabilities(*capabilities, nodes=None): add capabilities (names or "
    "{name: params}) to every node of the test's home, or only to the nodes named",
    "wifi": "wifi(*, stations=None, **ap): the test's home has a WiFi medium; `stations` "
    "names the nodes that get the WiFi capability, `ap` (ssid, psk, channel, hidden, mode, "
    "subnet, position) configures the `wifi_ap` fixture's access point",
    "thread": "thread(*, nodes=None, channel=None, panid=None, form=True): the nodes named "
    "(default: the home's Thread nodes, or all its nodes when none has Thread) get the Thread "
    "capability on one network (channel, PAN ID); with `form` the network is formed (a "
    "leader, the rest routers or children) before the test starts",
}

#: Radio media whose tests carry the marker of the same name (added when missing).
RADIO_MARKERS = ("wifi", "thread")

#: Title of the report section that says how to reach a kept home.
KEPT_SECTION = "cirque kept home"
LOG_TAIL = 100

SETTINGS_KEY = pytest.StashKey["cirque_config.CirqueSettings"]()
HOME_SPEC_KEY = pytest.StashKey["HomeSpec"]()
HOME_NAME_KEY = pytest.StashKey["str | None"]()
TEST_HOMES_KEY = pytest.StashKey[list["Home"]]()
SESSION_HOME_KEY = pytest.StashKey["Home"]()
#: A failed test's cirque sections, handed to JUnit with its teardown report.
JUNIT_OUTPUT_KEY = pytest.StashKey[str]()
#: Homes of home_fixture fixtures alive now, by fixture name (for failure reports).
SCOPED_HOMES_KEY = pytest.StashKey[dict[str, "Home"]]()


# --- marker signatures: calling these checks a marker's arguments (the pytest-django recipe)


def home_marker(spec: Mapping[str, Any] | str | os.PathLike[str], *, name: str | None = None):
    """Arguments of ``@pytest.mark.home``."""
    if not isinstance(spec, (Mapping, str, os.PathLike)):
        raise TypeError(
            "spec must be a mapping of node name to node spec or a YAML file path, "
            f"not {type(spec).__name__}"
        )
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError(f"name must be a non-empty string, not {name!r}")
    return spec, name


def capabilities_marker(*capabilities: str | Mapping[str, Any], nodes: list[str] | None = None):
    """Arguments of ``@pytest.mark.capabilities``."""
    if not capabilities:
        raise TypeError("give at least one capability, e.g. capabilities('LanAccess')")
    for capability in capabilities:
        if not isinstance(capability, (str, Mapping)) or not capability:
            raise TypeError(
                f"each capability is a name or a {{name: params}} mapping, not {capability!r}"
            )
    if nodes is not None and (
        isinstance(nodes, str) or not all(isinstance(node, str) for node in nodes)
    ):
        raise TypeError(f"nodes must be a list of node names, not {nodes!r}")
    return capabilities, None if nodes is None else list(nodes)


def thread_marker(
    *,
    nodes: list[str] | None = None,
    channel: int | None = None,
    panid: int | str | None = None,
    form: bool = True,
) -> tuple[list[str] | None, dict[str, Any], bool]:
    """Arguments of ``@pytest.mark.thread``: the Thread nodes, the network's settings
    (checked like a Thread capability's parameters) and whether to form it."""
    if nodes is not None and (isinstance(nodes, str) or not all(isinstance(n, str) for n in nodes)):
        raise TypeError(f"nodes must be a list of node names, not {nodes!r}")
    if not isinstance(form, bool):
        raise TypeError(f"form must be True or False, not {form!r}")
    settings = {
        key: value for key, value in (("channel", channel), ("panid", panid)) if value is not None
    }
    return (None if nodes is None else list(nodes)), settings, form


def wifi_marker(*, stations: list[str] | None = None, **ap: Any) -> tuple[list[str] | None, dict]:
    """Arguments of ``@pytest.mark.wifi``: the station nodes, and the settings of the
    ``wifi_ap`` fixture's access point (checked like a WiFiAP capability's parameters)."""
    if stations is not None and (
        isinstance(stations, str) or not all(isinstance(s, str) for s in stations)
    ):
        raise TypeError(f"stations must be a list of node names, not {stations!r}")
    return (None if stations is None else list(stations)), ap


def call_marker(item: pytest.Item, marker: pytest.Mark, signature: Callable[..., Any]) -> Any:
    """Call a marker's signature with its arguments; a mismatch is a one-line SpecError."""
    try:
        return signature(*marker.args, **marker.kwargs)
    except TypeError as exc:
        message = re.sub(r"^\w+\(\) ", "", str(exc))
        raise SpecError(f"{item.nodeid}: @pytest.mark.{marker.name}: {message}") from None


# --- building a home spec from markers (pure: nothing is created here)


def parse_home_spec(
    spec: Mapping[str, Any] | str | os.PathLike[str], base_dir: Path, where: str
) -> HomeSpec:
    """Parse a spec given as a mapping or as a YAML path relative to ``base_dir``.

    Nodes written in Cirque's topology keys are read as ``cirque serve`` reads them
    (pytest_cirque.topology.read_node says the rule), so the same topology files work
    here and over the service.
    """
    from pytest_cirque.spec import HomeSpec
    from pytest_cirque.topology import read_node

    if isinstance(spec, Mapping):
        return HomeSpec.parse(spec, where=where, read_node=read_node)
    path = Path(os.path.expanduser(os.fspath(spec)))
    if not path.is_absolute():
        path = base_dir / path
    if not path.is_file():
        raise SpecError(
            f"{where}: home spec file {path} not found (a relative path is taken from "
            f"{base_dir}); give an existing YAML file or a mapping"
        )
    return HomeSpec.parse(str(path), where=where, read_node=read_node)


def build_capability(capability: str | Mapping[str, Any], where: str) -> list[Any]:
    """Capability instances for one marker argument: a name or a {name: params} mapping."""
    from pytest_cirque.capabilities.model.base import lookup

    if isinstance(capability, str):
        return [lookup(capability, where).from_params(None, where)]
    return [lookup(name, where).from_params(params, where) for name, params in capability.items()]


def check_node_names(spec: HomeSpec, nodes: list[str] | None, where: str) -> None:
    """SpecError naming the nodes a marker names that the home does not have."""
    unknown = sorted(set(nodes or ()) - set(spec.nodes))
    if unknown:
        known = ", ".join(sorted(spec.nodes))
        raise SpecError(
            f"{where}: nodes={unknown} are not in the home (its nodes: {known}); "
            "name existing nodes or leave nodes out to mean all"
        )


def add_capabilities(
    spec: HomeSpec, capabilities: tuple[Any, ...], nodes: list[str] | None, where: str
) -> None:
    """Give the named nodes (all when None) the marker's capabilities.

    A capability the node's spec already has is replaced: the marker, closer to the
    test, wins.
    """
    check_node_names(spec, nodes, where)
    for node_name in nodes if nodes is not None else list(spec.nodes):
        node_spec = spec.nodes[node_name]
        node_where = f"{where}: node {node_name!r}"
        for capability in capabilities:
            for instance in build_capability(capability, node_where):
                name = instance.name.lower()
                node_spec.capabilities[:] = [
                    c for c in node_spec.capabilities if c.name.lower() != name
                ]
                node_spec.capabilities.append(instance)


def add_thread(
    spec: HomeSpec, nodes: list[str] | None, settings: dict[str, Any], where: str
) -> None:
    """Put the named nodes on the marker's Thread network: a node that already has Thread
    keeps its parameters and takes the marker's channel and PAN ID; the others get Thread.
    Without names: the home's Thread nodes, or every node when none has Thread."""
    from pytest_cirque.capabilities.model.thread import Thread

    def has_thread(name: str) -> bool:
        return any(isinstance(c, Thread) for c in spec.nodes[name].capabilities)

    check_node_names(spec, nodes, where)
    if nodes is None:
        nodes = [name for name in spec.nodes if has_thread(name)] or list(spec.nodes)
    for name in nodes:
        params = next(
            (dict(c.params) for c in spec.nodes[name].capabilities if isinstance(c, Thread)), {}
        )
        add_capabilities(spec, ({"Thread": {**params, **settings}},), [name], where)


def thread_to_form(item: pytest.Item, home: Home) -> list[Any] | None:
    """The nodes whose network ``@pytest.mark.thread(form=True)`` asks to form, in the
    order of the spec (the first becomes leader), or None."""
    from pytest_cirque.capabilities.model.thread import Thread

    marker = written_marker(item, "thread")
    if marker is None:
        return None
    nodes, _settings, form = call_marker(item, marker, thread_marker)
    if not form:
        return None
    chosen = [
        node
        for name, node in list(home.nodes.items())
        if (nodes is None or name in nodes) and node.driver(Thread) is not None
    ]
    return chosen or None


#: Keyword of a radio marker the plugin added at collection, for selection only.
AUTO_MARK = "_cirque_auto"


def written_marker(item: pytest.Item, name: str) -> pytest.Mark | None:
    """The closest marker of that name the user wrote: one the plugin added at collection
    (``-m wifi`` selects a WiFi home's test) never changes what a test gets."""
    return next((m for m in item.iter_markers(name) if not m.kwargs.get(AUTO_MARK)), None)


def spec_from_markers(item: pytest.Item) -> tuple[HomeSpec, str | None] | None:
    """Check the item's cirque markers and build its home spec (None without a home marker).

    Raises SpecError in one line naming the test and the marker; creates nothing.
    """
    wifi = written_marker(item, "wifi")
    if wifi is not None:
        stations, ap = call_marker(item, wifi, wifi_marker)
        # The wifi_ap fixture's settings, checked now: a bad PSK fails before any home.
        where = f"{item.nodeid}: @pytest.mark.wifi"
        build_capability({"WiFiAP": {"ssid": "cirque-ap", **ap}}, where)
    thread = written_marker(item, "thread")
    if thread is not None:
        thread_nodes, thread_settings, _form = call_marker(item, thread, thread_marker)
        # The network's settings, checked now: a bad channel fails before any home.
        build_capability({"Thread": thread_settings}, f"{item.nodeid}: @pytest.mark.thread")
    home_mark = item.get_closest_marker("home")
    capability_marks = list(item.iter_markers("capabilities"))
    checked = [call_marker(item, mark, capabilities_marker) for mark in capability_marks]
    if home_mark is None:
        if capability_marks:
            raise SpecError(
                f"{item.nodeid}: @pytest.mark.capabilities needs a home: add "
                "@pytest.mark.home(spec) to the test"
            )
        return None
    raw_spec, name = call_marker(item, home_mark, home_marker)
    where = f"{item.nodeid}: @pytest.mark.home"
    spec = parse_home_spec(raw_spec, Path(item.path).parent, where)
    # Outermost marker first, so a marker closer to the test replaces a farther one's.
    for capabilities, nodes in reversed(checked):
        add_capabilities(spec, capabilities, nodes, f"{item.nodeid}: @pytest.mark.capabilities")
    if wifi is not None:
        spec.media.add("wifi")
        if stations:
            add_capabilities(spec, ("WiFi",), stations, f"{item.nodeid}: @pytest.mark.wifi")
    if thread is not None:
        add_thread(spec, thread_nodes, thread_settings, f"{item.nodeid}: @pytest.mark.thread")
    spec.check_media()
    return spec, name


def wifi_ap_settings(item: pytest.Item) -> dict[str, Any]:
    """The ``wifi_ap`` fixture's AP settings from the test's ``@pytest.mark.wifi``."""
    marker = written_marker(item, "wifi")
    return call_marker(item, marker, wifi_marker)[1] if marker is not None else {}


def setup_failure(message: str) -> BaseException:
    """The exception that fails a test with just this line (raise it ``from None``)."""
    return pytest.fail.Exception(message, pytrace=False)


# --- hooks


def pytest_addoption(parser: pytest.Parser) -> None:
    cirque_config.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    for text in MARKERS.values():
        config.addinivalue_line("markers", text)
    config.stash[SETTINGS_KEY] = cirque_config.resolve(config)
    config.pluginmanager.register(KeptHomes(), "cirque-kept-homes")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark a test whose home has radio nodes with that radio (wifi, thread), for -m
    selection only, before pytest deselects by marker. A spec that does not parse is left
    alone here: its test fails at setup with the one-line error."""
    for item in items:
        for radio in radios_of(item):
            if item.get_closest_marker(radio) is None:
                item.add_marker(getattr(pytest.mark, radio)(**{AUTO_MARK: True}))


def radios_of(item: pytest.Item) -> set[str]:
    """The radio media the test's home would have, from its markers (pure)."""
    if item.get_closest_marker("home") is None:
        return set()
    try:
        built = spec_from_markers(item)
    except Exception:  # a bad spec: reported at setup, where it belongs
        return set()
    if built is None:
        return set()
    spec = built[0]
    media = spec.provided_media() | {
        cap.medium for node in spec.nodes.values() for cap in node.capabilities if cap.medium
    }
    return media & set(RADIO_MARKERS)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Check markers and parse the spec before any fixture can create something."""
    item.stash[TEST_HOMES_KEY] = []
    try:
        built = spec_from_markers(item)
    except SpecError as exc:
        problem = str(exc)
        raise setup_failure(
            problem if problem.startswith(item.nodeid) else f"{item.nodeid}: {problem}"
        ) from None
    if built is not None:
        item.stash[HOME_SPEC_KEY], item.stash[HOME_NAME_KEY] = built


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """On a failed setup or call: attach logs and topology, and keep the homes if asked."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.failed and call.when in ("setup", "call"):
        shorten_cirque_traceback(item, call, report)
        homes = homes_of(item)
        if homes:
            report_homes(item, report, homes)
        keep_capture(item, report, call)
        ours = [(title, text) for title, text in report.sections if title.startswith("cirque ")]
        if ours:
            text = "\n\n".join(f"--- {title} ---\n{body}" for title, body in ours)
            item.stash[JUNIT_OUTPUT_KEY] = text
    elif call.when == "teardown" and JUNIT_OUTPUT_KEY in item.stash:
        # JUnit writes a test's system-out from its teardown report: offer the cirque
        # sections there as printed output, so CI systems that show JUnit show them. The
        # terminal shows a passed teardown's output only when asked (-rP).
        report.sections.append(("Captured stdout cirque", item.stash[JUNIT_OUTPUT_KEY]))


def shorten_cirque_traceback(
    item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport
) -> None:
    """A CirqueError says what is wrong in its one line: show the test's own frames that
    led there, without pytest-cirque's frames below them."""
    excinfo = call.excinfo
    if excinfo is None or not excinfo.errisinstance(CirqueError):
        return
    if item.config.getoption("fulltrace", False) or not isinstance(item, pytest.Function):
        return
    entries = list(excinfo.traceback)
    starts = [i for i, entry in enumerate(entries) if Path(entry.path) == Path(item.path)]
    if not starts:
        return
    user_frames = [
        entry
        for entry in entries[starts[0] :]
        if not str(entry.frame.f_globals.get("__name__", "")).startswith("pytest_cirque")
    ]
    style = item.config.getoption("tbstyle", "auto")
    # pytest < 8 takes no callable tbfilter (TypeError): then pytest's own report stays.
    with contextlib.suppress(TypeError):
        report.longrepr = excinfo.getrepr(
            funcargs=True,
            showlocals=item.config.getoption("showlocals", False),
            style="long" if style == "auto" else style,
            tbfilter=lambda _: type(excinfo.traceback)(user_frames),
        )


class KeptHomes:
    """Gathers kept-home instructions from reports (this process's or xdist workers') and
    repeats them at the end of the terminal summary."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.texts += [text for title, text in report.sections if title == KEPT_SECTION]

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.texts:
            terminalreporter.section("cirque: homes kept for inspection", sep="-", yellow=True)
            for text in self.texts:
                terminalreporter.write_line(text)


# --- failure reports


def homes_of(item: pytest.Item) -> list[Home]:
    """Every home the test used: its own (home, home_factory), the session's, and those of
    the home_fixture fixtures it uses."""
    own: list[Home] = item.stash.get(TEST_HOMES_KEY, [])
    homes = list(own)
    used = getattr(item, "fixturenames", ())
    session_home = item.config.stash.get(SESSION_HOME_KEY, None)
    if session_home is not None and "session_home" in used:
        homes.append(session_home)
    scoped = item.config.stash.get(SCOPED_HOMES_KEY, {})
    homes += [home for fixture, home in scoped.items() if fixture in used]
    return homes


def log_dir_for(item: pytest.Item) -> Path:
    """The test's folder under the log directory (its node id made a safe file name)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid).strip("_")
    return item.config.stash[SETTINGS_KEY].log_dir / safe[:200]


def report_homes(item: pytest.Item, report: pytest.TestReport, homes: list[Home]) -> None:
    """Attach each home's topology and node logs to the report and write them to disk."""
    settings = item.config.stash[SETTINGS_KEY]
    folder = log_dir_for(item)
    written: list[str] = []
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
    for home in homes:
        try:
            topology = home.topology()
        except Exception as exc:  # the report must not fail because a home is half gone
            topology = f"(topology unavailable: {exc})"
        report.sections.append((f"cirque topology {home.name}", topology))
        written += _write(folder / f"{home.name}.topology.txt", topology)
        for node_name, node in list(home.nodes.items()):
            try:
                log = node.logs(tail=LOG_TAIL)
            except Exception as exc:
                log = f"(log unavailable: {exc})"
            commands = "\n".join(str(record) for record in node.history)
            parts = [
                *([f"commands the test ran:\n{commands}"] if commands else []),
                *([f"log:\n{log.rstrip()}"] if log.strip() else []),
            ]
            if parts:  # an empty section says nothing: leave it out
                report.sections.append((f"cirque node {home.name}/{node_name}", "\n".join(parts)))
            written += _write(folder / f"{home.name}.{node_name}.log", log)
        written += report_wifi(home, report, folder)
        written += report_thread(home, report, folder)
        if settings.keep and not home.kept:
            if will_rerun(item):
                report.sections.append(
                    ("cirque", f"home {home.name} not kept: this attempt will be run again")
                )
            else:
                report.sections.append((KEPT_SECTION, keep_home(home)))
    if written:
        report.sections.append(("cirque logs", f"written to {folder}"))
    report.sections.insert(0, ("cirque summary", failure_summary(item, report, homes, folder)))
    # JUnit properties: taken from the item when the test's last report is written.
    for home in homes:
        item.user_properties.append(("cirque_home", home.name))
        item.user_properties.append(("cirque_nodes", ",".join(home.nodes)))
    item.user_properties.append(("cirque_log_folder", str(folder)))
    for path in written:
        if path.endswith(".pcap"):
            item.user_properties.append(("cirque_capture", path))


def failure_summary(
    item: pytest.Item, report: pytest.TestReport, homes: list[Home], folder: Path
) -> str:
    """One screen at the top of a failed test's report: what failed where, and where the
    evidence is."""
    lines = [f"{item.nodeid} failed in {report.when}"]
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        lines.append(f"  error: {str(crash.message).splitlines()[0][:300]}")
    for home in homes:
        nodes = ", ".join(f"{name} ({node.state})" for name, node in list(home.nodes.items()))
        lines.append(f"  home {home.name}: {nodes or 'no nodes'}")
        for name, node in list(home.nodes.items()):
            if node.history:
                lines.append(f"  last command in {name}: {node.history[-1]}")
    lines.append(f"  logs, topology and captures: {folder}")
    return "\n".join(lines)


def will_rerun(item: pytest.Item) -> bool:
    """Whether pytest-rerunfailures will run this failed attempt again: then only the last
    attempt's homes are kept."""
    plugin = item.config.pluginmanager.getplugin("rerunfailures")
    if plugin is None or not hasattr(plugin, "get_reruns_count"):
        return False
    reruns = plugin.get_reruns_count(item)
    attempt = getattr(item, "execution_count", None)
    if not reruns or attempt is None:  # no reruns asked for: this attempt is the last
        return False
    return int(attempt) <= int(reruns)


def report_wifi(home: Home, report: pytest.TestReport, folder: Path) -> list[str]:
    """The WiFi medium's view (APs, stations, each station's control log) as report
    sections, and what was on the air as a pcap in the log folder."""
    from pytest_cirque.radios.relay.protocol import WIFI_MEDIUM

    medium = home.media.get(WIFI_MEDIUM)
    if medium is None:
        return []
    written: list[str] = []
    try:
        wifi = medium.as_wifi()
        state = wifi.status()
        lines = [
            f"ap {name}: {ap.ssid!r} {ap.security} bssid {ap.bssid} clients {ap.clients or '-'}"
            for name, ap in state.aps.items()
        ]
        for name, station in state.stations.items():
            lines.append(
                f"station {name}: {station.wpa_state} ssid {station.ssid!r} "
                f"bssid {station.bssid} ip {station.ip_address}"
            )
            log = "\n".join(wifi.log(name)[-LOG_TAIL:])
            report.sections.append((f"cirque wpa_ctrl {home.name}/{name}", log or "(empty)"))
            written += _write(folder / f"{home.name}.{name}.wpa_ctrl.log", log)
        summary = "\n".join(lines) or "(no access points or stations)"
        report.sections.append((f"cirque wifi {home.name}", summary))
        with contextlib.suppress(OSError):
            capture = medium.save_capture(folder / f"{home.name}.wifi.pcap")
            if capture is not None:
                written.append(str(capture))
    except CirqueError as exc:
        report.sections.append((f"cirque wifi {home.name}", f"(unavailable: {exc})"))
    return written


def report_thread(home: Home, report: pytest.TestReport, folder: Path) -> list[str]:
    """A Thread home's network as ``ot-ctl`` sees it (roles, neighbours, each daemon's
    log) and the capture of its air (802.15.4, which Wireshark decodes)."""
    from pytest_cirque import thread
    from pytest_cirque.radios.relay.protocol import THREAD_MEDIUM

    medium = home.media.get(THREAD_MEDIUM)
    if medium is None:
        return []

    try:
        nodes = thread.thread_nodes(home)
        summary = "\n".join([thread.topology(nodes), *(thread.report(node) for node in nodes)])
        report.sections.append((f"cirque thread {home.name}", summary))
        written = _write(folder / f"{home.name}.thread.txt", summary)
        capture = medium.save_capture(folder / f"{home.name}.thread.pcap")
    except (CirqueError, OSError) as exc:  # the report must not fail for a half-gone home
        report.sections.append((f"cirque thread {home.name}", f"(unavailable: {exc})"))
        return []
    return written + ([str(capture)] if capture is not None else [])


def keep_capture(item: pytest.Item, report: pytest.TestReport, call: pytest.CallInfo[None]) -> None:
    """A failed provisioning step's capture lives in the run's temporary folder, which goes
    when the session ends: move it into the test's log folder, which stays."""
    error = call.excinfo.value if call.excinfo is not None else None
    capture = getattr(error, "capture", None) if isinstance(error, ProvisioningError) else None
    if capture is None or not Path(capture).is_file():
        return
    folder = log_dir_for(item)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        kept = Path(shutil.move(str(capture), folder / Path(capture).name))
    except OSError as exc:
        report.sections.append(("cirque capture", f"(could not keep {capture}: {exc})"))
        return
    report.sections.append(("cirque capture", f"the air up to the failed step: {kept}"))
    item.user_properties.append(("cirque_capture", str(kept)))


def _write(path: Path, text: str) -> list[str]:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError:
        return []
    return [str(path)]


def keep_home(home: Home) -> str:
    """Mark the home kept (it survives teardown and reaping) and say how to reach it."""
    try:
        home.keep()
    except Exception as exc:
        return f"home {home.name} could not be kept ({exc}); it is removed with the session"
    node = next(iter(home.nodes), "NODE")
    lines = [
        f"home {home.name} is kept running for a look:",
        "  cirque ls",
        f"  cirque exec {home.name} {node} CMD...",
        f"  cirque shell {home.name} {node}",
        f"  cirque logs {home.name} {node}",
        f"  cirque down {home.name}    (removes it when you are done)",
    ]
    return "\n".join(lines)


# --- fixtures


def run_identity(config: pytest.Config) -> tuple[str | None, str]:
    """(run id, worker): xdist's testrun uid and worker id, or the main process's own."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        return workerinput["testrunuid"], workerinput["workerid"]
    return config.getoption("testrunuid", None), "main"


def progress_printer(config: pytest.Config) -> Callable[[str], None]:
    """Where image builds and reaping report progress: the terminal, never the capture."""
    capture = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")
    workerinput = getattr(config, "workerinput", None)

    def progress(line: str) -> None:
        uncaptured = capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()
        with uncaptured:
            if workerinput is None and reporter is not None:
                reporter.write_line(f"cirque: {line}")
            else:
                worker = workerinput["workerid"] if workerinput else "main"
                sys.stderr.write(f"[cirque {worker}] {line}\n")
                sys.stderr.flush()

    return progress


@pytest.fixture(scope="session")
def cirque(request: pytest.FixtureRequest) -> Iterator[Cirque]:
    """The session's Cirque service (one per xdist worker); reaps dead runs' leftovers first
    and destroys every home it made, except kept ones, at the end, even after Ctrl-C."""
    from pytest_cirque.homes.session import Cirque

    config = request.config
    settings = config.stash[SETTINGS_KEY]
    run_id, worker = run_identity(config)
    progress = progress_printer(config)
    try:
        service = Cirque(
            run_id=run_id,
            worker=worker,
            # One rebuild per run: under xdist only the first worker rebuilds.
            rebuild_images=settings.rebuild_images and worker in ("main", "gw0"),
            progress=progress,
        )
    except CirqueError as exc:
        raise setup_failure(str(exc)) from None
    try:
        reap_dead_runs(service, progress)
        yield service
    finally:
        service.close()


def reap_dead_runs(service: Cirque, progress: Callable[[str], None]) -> None:
    """Remove what dead runs left (never a live or kept one). Workers starting together
    may race for the same leftovers; what one could not remove is said, not fatal."""
    from pytest_cirque.homes import cleanup

    try:
        removed = cleanup.reap(service.backend, dead_only=True)
    except CirqueError as exc:
        progress(f"reaping dead runs' leftovers: {exc}")
        return
    if removed:
        progress(f"removed {len(removed)} leftover object(s) of dead runs")


def home_name_of_test(request: pytest.FixtureRequest) -> str:
    """A home name from the test's name (parameters and all), cut to what a name may hold."""
    from pytest_cirque.core.identity import safe_name
    from pytest_cirque.spec import HOME_NAME_MAX

    return safe_name(request.node.name.replace(".", "-"))[:HOME_NAME_MAX].strip("-_") or "home"


def _create_home(
    request: pytest.FixtureRequest, cirque: Cirque, spec: HomeSpec, name: str | None
) -> Home:
    """Create a home and track it for the test's failure report."""
    home = cirque.create_home(spec, name=name)
    request.node.stash.setdefault(TEST_HOMES_KEY, []).append(home)
    return home


def _destroy_all(homes: list[Home]) -> None:
    """Destroy homes newest first (kept ones stay); every one is attempted, then the first
    error is raised."""
    errors: list[BaseException] = []
    for home in reversed(homes):
        try:
            home.destroy()
        except BaseException as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def home(request: pytest.FixtureRequest, cirque: Cirque) -> Iterator[Home]:
    """The test's home, built from its ``@pytest.mark.home`` (and ``capabilities``) markers;
    destroyed after the test unless it failed under --cirque-keep."""
    spec = request.node.stash.get(HOME_SPEC_KEY, None)
    if spec is None:
        pytest.fail(
            f"{request.node.nodeid}: the home fixture needs @pytest.mark.home(spec) on the "
            "test, its class or its module",
            pytrace=False,
        )
    name = request.node.stash.get(HOME_NAME_KEY, None) or home_name_of_test(request)
    try:
        made = _create_home(request, cirque, spec, name)
    except CirqueError as exc:  # an unknown image, a failed start: one line at setup
        raise setup_failure(f"{request.node.nodeid}: {exc}") from None
    try:
        to_form = thread_to_form(request.node, made)
        if to_form:
            from pytest_cirque import thread

            thread.form(to_form)
        yield made
    finally:
        _destroy_all([made])


@pytest.fixture
def home_factory(request: pytest.FixtureRequest, cirque: Cirque) -> Iterator[Callable[..., Home]]:
    """Make several homes in one test: ``home_factory(spec, name=None)`` with a mapping or
    a YAML path relative to the test file. A bad spec or image raises its CirqueError in
    the test (so ``pytest.raises`` can check it). All are destroyed after the test."""
    made: list[Home] = []

    def make_home(
        spec: Mapping[str, Any] | str | os.PathLike[str], name: str | None = None
    ) -> Home:
        where = f"{request.node.nodeid}: home_factory"
        parsed = parse_home_spec(spec, Path(request.node.path).parent, where)
        if written_marker(request.node, "wifi") is not None:
            parsed.media.add("wifi")
        made.append(_create_home(request, cirque, parsed, name or home_name_of_test(request)))
        return made[-1]

    try:
        yield make_home
    finally:
        _destroy_all(made)


@pytest.fixture
def wifi_ap_factory(request: pytest.FixtureRequest, home: Home) -> Callable[..., AccessPoint]:
    """Add an access point node to the test's home: ``wifi_ap_factory(name="ap", **ap)``
    with WiFiAP's parameters (ssid, psk, channel, hidden, mode, subnet, position, mac).
    A bad parameter raises SpecError and adds nothing."""
    from pytest_cirque.capabilities.model.wifi import WiFiAP
    from pytest_cirque.wifi import access_point

    def make(name: str = "ap", image: str = "wifi-ap", **settings: Any) -> AccessPoint:
        if name in home:
            node = home[name]
            if node.driver(WiFiAP) is None:
                raise SpecError(
                    f"{request.node.nodeid}: wifi_ap: node {name!r} exists and is no access "
                    "point; choose another name"
                )
            return access_point(node)
        settings.setdefault("ssid", f"cirque-{name}")
        node = home.add_node(name, {"image": image, "capabilities": [{"WiFiAP": settings}]})
        return access_point(node)

    return make


@pytest.fixture
def wifi_ap(request: pytest.FixtureRequest, home: Home, wifi_ap_factory) -> AccessPoint:
    """The access point of the test's home: its WiFiAP node when the spec has one, else a
    new one, set up by ``@pytest.mark.wifi(ssid=..., psk=...)`` (default: SSID
    "cirque-ap", WPA2 passphrase "cirque-passphrase"). Exposes ssid, psk, bssid, address."""
    from pytest_cirque.capabilities.model.wifi import WiFiAP
    from pytest_cirque.wifi import access_point

    for node in list(home.nodes.values()):
        if node.driver(WiFiAP) is not None:
            return access_point(node)
    settings = {"psk": "cirque-passphrase", **wifi_ap_settings(request.node)}
    try:
        return wifi_ap_factory("ap", **settings)
    except SpecError as exc:
        raise setup_failure(f"{request.node.nodeid}: wifi_ap: {exc}") from None


@pytest.fixture
def thread_network(request: pytest.FixtureRequest, home: Home) -> ThreadNetwork:
    """The Thread network of the test's home: its dataset (``.dataset``), its nodes, and
    their roles now (``.leader``, ``.routers``, ``.children``, ``.roles()``). Formed before
    the test by ``@pytest.mark.thread`` (form=True, the default); else ``.form()`` forms
    it."""
    from pytest_cirque import thread

    try:
        return thread.network(home)
    except CirqueError as exc:
        raise setup_failure(f"{request.node.nodeid}: thread_network: {exc}") from None


@pytest.fixture
def thread_node_factory(request: pytest.FixtureRequest, home: Home) -> Callable[..., Node]:
    """Add a Thread node to the test's home: ``thread_node_factory(name, start=True,
    image=None, **thread)`` with the Thread capability's parameters (position, mode,
    commissioned, channel, ...); the channel and PAN ID of the test's
    ``@pytest.mark.thread`` unless given. With ``start`` it starts Thread and waits until
    the node is attached (leader, router or child) and, as ``thread.join`` does, until a
    router it is about to become. A bad parameter raises SpecError and adds nothing."""
    from pytest_cirque import thread

    marker = written_marker(request.node, "thread")
    on_marker = call_marker(request.node, marker, thread_marker)[1] if marker is not None else {}

    def make(name: str, start: bool = True, image: str | None = None, **params: Any) -> Node:
        spec: dict[str, Any] = {"capabilities": [{"Thread": {**on_marker, **params}}]}
        if image is not None:
            spec["image"] = image
        node = home.add_node(name, spec)
        if start:
            thread.join(node, states=thread.ATTACHED)
        return node

    return make


SCOPES = ("class", "module", "package", "session")


def home_fixture(
    spec: Mapping[str, Any] | str | os.PathLike[str],
    *,
    scope: Literal["class", "module", "package", "session"] = "module",
    name: str | None = None,
) -> Any:
    """A fixture of one home shared by the tests of a class, module, package or session:
    ``kitchen = home_fixture({"hub": {}}, scope="module")`` in a test module or conftest.py
    makes ``kitchen`` a fixture whose home is created once for that scope and destroyed
    after it. ``spec`` is a mapping or a YAML path relative to the module using it. A bad
    spec fails the setup of each test that uses it, in one line, and creates nothing."""
    if scope not in SCOPES:
        raise ValueError(f"home_fixture: scope {scope!r} is not one of {', '.join(SCOPES)}")

    @pytest.fixture(scope=scope)
    def shared_home(request: pytest.FixtureRequest, cirque: Cirque) -> Iterator[Home]:
        where = f"{request.node.nodeid or 'session'}: home fixture {request.fixturename}"
        try:
            parsed = parse_home_spec(spec, Path(str(request.path)).parent, where)
            made = cirque.create_home(parsed, name=name or request.fixturename)
        except CirqueError as exc:
            problem = str(exc)
            message = problem if problem.startswith(where) else f"{where}: {problem}"
            raise setup_failure(message) from None
        fixture = request.fixturename or "home"
        scoped = request.config.stash.setdefault(SCOPED_HOMES_KEY, {})
        scoped[fixture] = made
        try:
            yield made
        finally:
            scoped.pop(fixture, None)
            _destroy_all([made])

    return shared_home


@pytest.fixture(scope="session")
def cirque_session_home_spec() -> Mapping[str, Any] | str | os.PathLike[str]:
    """The spec of ``session_home``: override this fixture in a conftest.py (a mapping, or
    a YAML path relative to the rootdir)."""
    pytest.fail(
        "session_home needs its spec: define a session-scoped fixture cirque_session_home_spec "
        "in conftest.py returning a home spec (mapping or YAML path)",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def session_home(
    request: pytest.FixtureRequest,
    cirque: Cirque,
    cirque_session_home_spec: Mapping[str, Any] | str | os.PathLike[str],
) -> Iterator[Home]:
    """One home shared by every test of the session (per xdist worker), for suites whose
    tests do not change it. Built from ``cirque_session_home_spec``."""
    config = request.config
    try:
        spec = parse_home_spec(
            cirque_session_home_spec, config.rootpath, "cirque_session_home_spec"
        )
        shared = cirque.create_home(spec, name="session")
    except CirqueError as exc:
        raise setup_failure(str(exc)) from None
    config.stash[SESSION_HOME_KEY] = shared
    try:
        yield shared
    finally:
        del config.stash[SESSION_HOME_KEY]
        _destroy_all([shared])
