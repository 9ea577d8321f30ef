"""The plugin against real Docker, through pytester: homes live exactly as long as their
test, failures carry logs, --cirque-keep keeps, bad input creates nothing, Ctrl-C and
``-n 4`` leave nothing behind.

Each test gives the inner pytest run its own run id (``--testrunuid``), counts the Docker
objects labelled with it afterwards, and removes whatever is left even when it fails.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import docker
import pytest

from pytest_cirque import cli
from pytest_cirque.core.docker_backend import Backend
from pytest_cirque.core.waiting import wait_until
from pytest_cirque.homes import cleanup


@pytest.fixture
def client() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture
def run_id(client: docker.DockerClient) -> Iterator[str]:
    """A fresh run id for the inner run; its objects are removed after the test, always."""
    run = "pt" + uuid.uuid4().hex[:6]  # run ids are 8 characters
    yield run
    backend = Backend(client)
    cleanup.remove_objects(backend, backend.find([f"io.cirque.run={run}"]))


def run_objects(client: docker.DockerClient, run: str) -> list[str]:
    """Names of every container, network and volume labelled with this run."""
    label = {"label": f"io.cirque.run={run}"}
    return sorted(
        [c.name for c in client.containers.list(all=True, filters=label)]
        + [n.name for n in client.networks.list(filters=label)]
        + [v.name for v in client.volumes.list(filters=label)]
    )


def run_nodes(client: docker.DockerClient, run: str) -> list[str]:
    """ "home/node" of every node container of this run (from their labels)."""
    labels = [f"io.cirque.run={run}", "io.cirque.role=node"]
    return sorted(
        f"{c.labels['io.cirque.home']}/{c.labels['io.cirque.node']}"
        for c in client.containers.list(all=True, filters={"label": labels})
    )


def created_since(client: docker.DockerClient, since: float, run: str) -> list[str]:
    """Containers and networks of this run created since ``since`` (from Docker's events)."""
    events = client.events(
        since=int(since) - 1,
        until=int(time.time()) + 1,
        decode=True,
        filters={"event": "create", "type": ["container", "network"]},
    )
    names = [event.get("Actor", {}).get("Attributes", {}).get("name", "") for event in events]
    return [name for name in names if f"cirque-{run}-" in name]


def run_inner(pytester: pytest.Pytester, run: str, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--testrunuid", run, *args)


LIFECYCLE = """
import docker
import pytest

SPEC = {
    "sensor": {"command": ["sh", "-c", "echo hello-from-sensor; exec sleep infinity"]},
    "hub": {},
}


def node_containers(home):
    labels = [f"io.cirque.home={home.name}", "io.cirque.role=node"]
    found = docker.from_env().containers.list(filters={"label": labels})
    return {c.labels["io.cirque.node"]: c.status for c in found}


@pytest.mark.home(SPEC)
def test_passes(home):
    assert node_containers(home) == {"sensor": "running", "hub": "running"}


@pytest.mark.home(SPEC)
def test_fails(home):
    sensor = home["sensor"]
    sensor.wait_until(lambda: "hello-from-sensor" in sensor.logs(), "the greeting", timeout=20)
    assert node_containers(home) == {"sensor": "running", "hub": "running"}
    home["hub"].exec("echo hi-from-hub; exit 3")
    assert False, "deliberate failure"
"""


def test_home_lives_during_its_test_and_is_gone_after_even_on_failure(
    pytester: pytest.Pytester, client: docker.DockerClient, run_id: str
) -> None:
    pytester.makepyfile(test_lifecycle=LIFECYCLE)
    result = run_inner(pytester, run_id)
    result.assert_outcomes(passed=1, failed=1)
    home = f"cirque-{run_id}-main-test_fails"
    # The failure report carries the topology and each node's recent log.
    # A summary first: what failed, the home, the last command, where the evidence is.
    result.stdout.fnmatch_lines(
        [
            "*cirque summary*",
            "test_lifecycle.py::test_fails failed in call",
            "  error: AssertionError: deliberate failure*",
            f"  home {home}: sensor (running), hub (running)",
            "  last command in hub: $ echo hi-from-hub; exit 3  (exit 3, *s): hi-from-hub",
            "  logs, topology and captures: *cirque-logs*test_lifecycle.py_test_fails",
            f"*cirque topology {home}*",
            f"home {home} (running)",
            f"*cirque node {home}/sensor*",
            "log:",
            "hello-from-sensor",
            f"*cirque node {home}/hub*",
            "commands the test ran:",
            "$ echo hi-from-hub; exit 3  (exit 3, *s): hi-from-hub",
            "*cirque logs*",
            "written to *cirque-logs*test_lifecycle.py_test_fails",
        ]
    )
    # The hub printed nothing: no empty log section for it.
    assert "(empty)" not in result.stdout.str()
    folder = pytester.path / "cirque-logs" / "test_lifecycle.py_test_fails"
    assert "hello-from-sensor" in (folder / f"{home}.sensor.log").read_text()
    assert "node hub" in (folder / f"{home}.topology.txt").read_text()
    assert not (pytester.path / "cirque-logs" / "test_lifecycle.py_test_passes").exists()
    assert run_objects(client, run_id) == []


@pytest.mark.parametrize("xdist", [False, True], ids=["serial", "xdist"])
def test_junit_carries_the_home_the_paths_and_the_sections(
    pytester: pytest.Pytester, client: docker.DockerClient, run_id: str, xdist: bool
) -> None:
    pytester.makepyfile(test_lifecycle=LIFECYCLE)
    args = ["--junitxml=report.xml", "-o", "junit_logging=all", "-k", "test_fails"]
    result = run_inner(pytester, run_id, *args, *(["-n", "1"] if xdist else []))
    result.assert_outcomes(failed=1)
    case = ElementTree.parse(pytester.path / "report.xml").find(".//testcase[@name='test_fails']")
    assert case is not None
    properties = {(p.get("name"), p.get("value")) for p in case.iter("property")}
    home = f"cirque-{run_id}-{'gw0' if xdist else 'main'}-test_fails"
    assert ("cirque_home", home) in properties
    assert ("cirque_nodes", "sensor,hub") in properties
    folders = [value for name, value in properties if name == "cirque_log_folder"]
    assert len(folders) == 1 and folders[0].endswith("test_lifecycle.py_test_fails")
    out = "".join(element.text or "" for element in case.iter("system-out"))
    assert "--- cirque summary ---" in out and f"--- cirque topology {home} ---" in out
    assert "hello-from-sensor" in out
    # The terminal shows each section once, not again as printed output.
    assert "Captured stdout cirque" not in result.stdout.str()
    assert run_objects(client, run_id) == []


@pytest.mark.parametrize("worker", ["main", "gw0"], ids=["serial", "xdist"])
def test_keep_leaves_a_failed_home_up_and_cirque_down_removes_it(
    pytester: pytest.Pytester,
    client: docker.DockerClient,
    run_id: str,
    capsys: pytest.CaptureFixture[str],
    worker: str,
) -> None:
    pytester.makepyfile(test_lifecycle=LIFECYCLE)
    xdist = ["-n", "1"] if worker == "gw0" else []
    result = run_inner(pytester, run_id, "--cirque-keep", *xdist)
    result.assert_outcomes(passed=1, failed=1)
    home = f"cirque-{run_id}-{worker}-test_fails"
    result.stdout.fnmatch_lines(
        [
            "*cirque: homes kept for inspection*",
            f"home {home} is kept running for a look:",
            "  cirque ls",
            f"  cirque exec {home} sensor CMD...",
            f"  cirque shell {home} sensor",
            f"  cirque logs {home} sensor",
            f"  cirque down {home}    (removes it when you are done)",
        ]
    )
    assert run_nodes(client, run_id) == [f"{home}/hub", f"{home}/sensor"]

    capsys.readouterr()  # what the inner run printed
    assert cli.main(["ls"]) == 0
    listing = next(line for line in capsys.readouterr().out.splitlines() if home in line)
    assert listing.split()[1:] == [run_id, worker, "gone", "kept", "hub", "sensor"]

    assert cli.main(["exec", home, "sensor", "sh", "-c", "echo still-here"]) == 0
    assert capsys.readouterr().out == "still-here\n"

    assert cli.main(["down", home]) == 0
    assert f"removed home {home}" in capsys.readouterr().out
    assert run_objects(client, run_id) == []


def test_bad_markers_specs_and_images_create_nothing(
    pytester: pytest.Pytester, client: docker.DockerClient, run_id: str
) -> None:
    pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.home({"hub": {"capabilities": ["Teleport"]}})
        def test_unknown_capability(home):
            pass

        @pytest.mark.home({"hub": {"capabilities": [{"TrafficControl": {"latencyMs": -5}}]}})
        def test_negative_latency(home):
            pass

        @pytest.mark.home({"hub": {}})
        @pytest.mark.capabilities("LanAccess", nodes=["nobody"])
        def test_marker_names_a_missing_node(home):
            pass

        @pytest.mark.home({"hub": {"image": "cirque-test-no-such-image:1"}})
        def test_unknown_image(home):
            pass

        def test_two_homes_one_bad(home_factory):
            home_factory({"a": {}, "b": {"capabilities": [{"Mount": {"source": "/nope/x"}}]}})
        """
    )
    started = time.time()
    result = run_inner(pytester, run_id)
    result.assert_outcomes(errors=4, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*::test_unknown_capability: @pytest.mark.home node hub: unknown capability*",
            "*::test_negative_latency: @pytest.mark.home node hub*latencyMs*",
            "*::test_marker_names_a_missing_node: @pytest.mark.capabilities: nodes=*",
            "*::test_unknown_image: *unknown image 'cirque-test-no-such-image:1'*",
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
    assert created_since(client, started, run_id) == []
    assert run_objects(client, run_id) == []


def test_ctrl_c_during_a_test_still_tears_everything_down(
    pytester: pytest.Pytester, client: docker.DockerClient, run_id: str
) -> None:
    pytester.makepyfile(
        test_interrupted="""
        import pytest

        @pytest.fixture(scope="session")
        def shared(session_home):
            return session_home

        @pytest.fixture(scope="session")
        def cirque_session_home_spec():
            return {"shared": {}}

        @pytest.mark.home({"a": {}, "b": {}})
        def test_interrupted(home, shared, home_factory):
            home_factory({"c": {}})
            raise KeyboardInterrupt

        def test_never_reached():
            pass
        """
    )
    result = run_inner(pytester, run_id)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*KeyboardInterrupt*"])
    assert run_objects(client, run_id) == []


def test_sigint_while_a_test_waits_tears_everything_down(
    pytester: pytest.Pytester, client: docker.DockerClient, run_id: str, sigint_reaches_children
) -> None:
    """A real Ctrl-C (SIGINT to pytest) while a test waits on its home."""
    pytester.makepyfile(
        test_waiting="""
        import pytest

        @pytest.mark.home({"a": {}, "b": {}})
        def test_waits(home):
            home["a"].wait_until(lambda: False, "Ctrl-C", timeout=600)
        """
    )
    # -X faulthandler: should the inner run not end, SIGABRT makes it print every thread's
    # stack, so the failure shows where it hangs. Its stdin is not the xdist worker's
    # (which carries the worker's channel to the controller).
    command = [sys.executable, "-X", "faulthandler", "-m", "pytest", "-p", "no:cacheprovider"]
    process = subprocess.Popen(
        [*command, "--testrunuid", run_id],
        cwd=pytester.path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        expected = [f"cirque-{run_id}-main-test_waits/{n}" for n in "ab"]
        wait_until(
            lambda: run_nodes(client, run_id) == expected,
            f"the inner run's nodes {expected}",
            120,
            log=lambda: f"nodes so far: {run_nodes(client, run_id)}",
        )
        process.send_signal(signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)
            output, _ = process.communicate(timeout=30)
            pytest.fail(f"pytest had not ended 120 s after SIGINT; its threads:\n{output}")
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == pytest.ExitCode.INTERRUPTED, output
    assert "KeyboardInterrupt" in output
    assert run_objects(client, run_id) == []


def test_xdist_workers_each_make_homes_and_leave_nothing(
    pytester: pytest.Pytester, client: docker.DockerClient, run_id: str
) -> None:
    pytester.makepyfile(
        test_parallel="""
        import os
        import pytest

        @pytest.mark.parametrize("n", range(8))
        @pytest.mark.home({"node": {}})
        def test_homes(home, home_factory, n):
            worker = os.environ["PYTEST_XDIST_WORKER"]
            assert f"-{worker}-" in home.name
            other = home_factory({"peer": {"capabilities": ["LanAccess"]}}, name=f"extra{n}")
            assert other.name != home.name
            assert home["node"].exec("true").exit_code == 0
        """
    )
    result = run_inner(pytester, run_id, "-n", "4")
    result.assert_outcomes(passed=8)
    assert run_objects(client, run_id) == []


def test_session_home_is_shared_and_removed_at_the_end(
    pytester: pytest.Pytester, client: docker.DockerClient, run_id: str
) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture(scope="session")
        def cirque_session_home_spec():
            return "session.yaml"
        """
    )
    Path(pytester.path / "session.yaml").write_text("box: {env: {ROLE: shared}}\n")
    pytester.makepyfile(
        test_shared="""
        seen = set()

        def test_first(session_home):
            seen.add(session_home.name)
            session_home["box"].put_file("/tmp/mark", b"first")

        def test_second(session_home):
            seen.add(session_home.name)
            assert len(seen) == 1
            assert session_home["box"].get_file("/tmp/mark") == b"first"
            assert session_home["box"].exec("echo $ROLE").stdout == "shared\\n"
        """
    )
    result = run_inner(pytester, run_id)
    result.assert_outcomes(passed=2)
    assert run_objects(client, run_id) == []


@pytest.mark.parametrize("xdist", [False, True], ids=["terminal", "xdist-stderr"])
def test_image_progress_reaches_the_terminal(
    pytester: pytest.Pytester, client: docker.DockerClient, run_id: str, xdist: bool
) -> None:
    """Looking for (and building) an image reports progress where the user sees it, not
    into the test's captured output: the terminal reporter, or stderr under xdist."""
    pytester.makepyfile(
        test_progress="""
        import pytest

        @pytest.mark.home({"hub": {"image": "cirque-test-no-such-image:2"}})
        def test_unknown_image(home):
            pass
        """
    )
    result = run_inner(pytester, run_id, *(["-n", "1"] if xdist else []))
    result.assert_outcomes(errors=1)
    if xdist:
        result.stderr.fnmatch_lines(["[[]cirque gw0[]] pulling cirque-test-no-such-image:2*"])
    else:
        result.stdout.fnmatch_lines(["cirque: pulling cirque-test-no-such-image:2*"])
    result.stdout.no_fnmatch_line("*Captured stderr setup*")


WIFI = """
import pytest
from pytest_cirque import wifi


@pytest.mark.wifi(stations=["sta"], ssid="lab", psk="correct horse")
@pytest.mark.home({"sta": {}})
def test_joins(home, wifi_ap):
    assert (wifi_ap.ssid, wifi_ap.psk) == ("lab", "correct horse")
    report = wifi.provision(home["sta"], wifi_ap)
    assert report.bssid == wifi_ap.bssid


@pytest.mark.wifi(stations=["sta"], ssid="lab", psk="correct horse")
@pytest.mark.home({"sta": {}})
def test_fails_after_joining(home, wifi_ap):
    wifi.associate(home["sta"], wifi_ap)
    assert False, "deliberate failure"


@pytest.mark.wifi(psk="short")
@pytest.mark.home({"sta": {}})
def test_bad_psk(home):
    pass


@pytest.mark.home({"sta": {"capabilities": ["WiFi"]}})
def test_station_without_medium(home):
    pass
"""


def test_wifi_marker_fixture_and_failure_report(
    pytester: pytest.Pytester, client: docker.DockerClient, run_id: str
) -> None:
    pytester.makepyfile(test_wifi=WIFI)
    result = run_inner(pytester, run_id, "-m", "wifi")
    # -m wifi selects the three marked tests; the unmarked one is deselected.
    result.assert_outcomes(passed=1, failed=1, errors=1, deselected=1)
    home = f"cirque-{run_id}-main-test_fails_after_joining"
    result.stdout.fnmatch_lines(
        [
            "*test_bad_psk: @pytest.mark.wifi: capability WiFiAP field 'psk': *8 to 63*",
            f"*cirque wpa_ctrl {home}/sta*",
            "*event CTRL-EVENT-CONNECTED - Connection to * completed*",
            f"*cirque wifi {home}*",
            "ap ap: 'lab' WPA2-PSK bssid *",
            "station sta: COMPLETED ssid 'lab' *",
        ]
    )
    folder = pytester.path / "cirque-logs" / "test_wifi.py_test_fails_after_joining"
    pcap = folder / f"{home}.wifi.pcap"
    assert pcap.read_bytes()[:4] == b"\xd4\xc3\xb2\xa1" and pcap.stat().st_size > 1000
    assert "CTRL-EVENT-CONNECTED" in (folder / f"{home}.sta.wpa_ctrl.log").read_text()
    assert run_objects(client, run_id) == []

    result = run_inner(pytester, run_id, "-k", "without_medium")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*node sta: capability WiFi needs the home's wifi medium*"])
    assert run_objects(client, run_id) == []


THREAD = """
import pytest
from pytest_cirque import thread


@pytest.mark.thread(channel=21, panid=0x1234)
@pytest.mark.home({"n1": {}, "n2": {}})
def test_formed(home, thread_network, thread_node_factory):
    assert thread_network.dataset.channel == 21
    assert thread_network.leader.name == "n1"
    assert thread_network.roles()["n2"] in ("router", "child")
    n3 = thread_node_factory("n3", position=[20, 0])  # on the marker's channel and PAN ID
    assert thread.state(n3) == "router"  # the factory waits for its upgrade from child
    assert thread.ping(n3, home["n1"]).received == 3
    print("TOPOLOGY", thread_network.topology())


@pytest.mark.thread(form=False)
@pytest.mark.home({"n1": {}})
def test_not_formed(thread_network):
    assert thread_network.roles() == {"n1": "disabled"}


@pytest.mark.thread
@pytest.mark.home({"n1": {}, "n2": {}})
def test_fails_after_forming(home):
    assert False, "deliberate failure"
"""


def test_thread_marker_fixtures_and_failure_report(
    pytester: pytest.Pytester, client: docker.DockerClient, run_id: str
) -> None:
    pytester.makepyfile(test_thread=THREAD)
    result = run_inner(pytester, run_id, "-m", "thread", "-s", "-p", "no:randomly")
    result.assert_outcomes(passed=2, failed=1)
    home = f"cirque-{run_id}-main-test_fails_after_forming"
    result.stdout.fnmatch_lines(
        [
            "*TOPOLOGY thread network *: channel 21, PAN ID 0x1234, *",
            "  n1: leader, rloc16 0x*, partition *; neighbours: *n2 (*",
            f"*cirque thread {home}*",
            "  n1: leader, *",
            "--- thread node n2 ---",
            "ot-ctl state: [rc]*",  # router or child
        ]
    )
    folder = pytester.path / "cirque-logs" / "test_thread.py_test_fails_after_forming"
    pcap = (folder / f"{home}.thread.pcap").read_bytes()
    assert pcap[:4] == b"\xd4\xc3\xb2\xa1" and int.from_bytes(pcap[20:24], "little") == 195
    assert len(pcap) > 1000  # the frames that formed the network
    assert "n1: leader" in (folder / f"{home}.thread.txt").read_text()
    assert run_objects(client, run_id) == []


def test_a_module_scoped_home_is_made_once_for_its_module(
    pytester: pytest.Pytester, client: docker.DockerClient, run_id: str
) -> None:
    pytester.makepyfile(
        test_kitchen="""
        from pytest_cirque import home_fixture

        kitchen = home_fixture({"hub": {}, "lamp": {}}, scope="module")
        seen = []

        def test_first(kitchen):
            seen.append(kitchen.name)
            kitchen["hub"].put_file("/tmp/mark", b"first")

        def test_second(kitchen):
            seen.append(kitchen.name)
            assert seen[0] == seen[1]
            assert kitchen["hub"].get_file("/tmp/mark") == b"first"

        pantry = home_fixture({"shelf": {}}, scope="class")
        pantries = []

        class TestOneClass:
            def test_own_home(self, pantry, kitchen):
                pantries.append(pantry.name)
                assert pantry.name != kitchen.name and list(pantry.nodes) == ["shelf"]

            def test_same_home(self, pantry):
                assert pantry.name == pantries[-1]

        class TestAnotherClass:
            def test_another_home(self, pantry):
                assert pantry.name not in pantries
        """,
        test_other="""
        def test_not_in_this_module(request):
            assert "kitchen" not in request.fixturenames
        """,
    )
    result = run_inner(pytester, run_id, "-p", "no:randomly")
    result.assert_outcomes(passed=6)
    assert run_objects(client, run_id) == []


def test_a_wifi_home_is_selected_by_its_radio_without_the_marker(
    pytester: pytest.Pytester, run_id: str
) -> None:
    """-m wifi selects a test whose home has WiFi nodes although nobody wrote the marker;
    the added marker changes nothing the test gets (no stations, no wifi_ap settings)."""
    pytester.makepyfile(
        test_radios="""
        import pytest

        @pytest.mark.home({"ap": {"image": "wifi-ap", "capabilities": [{"WiFiAP": {"ssid": "x"}}]}})
        def test_has_an_ap(request):
            marks = [m for m in request.node.iter_markers("wifi")]
            assert [m.kwargs for m in marks] == [{"_cirque_auto": True}]

        @pytest.mark.home({"plain": {}})
        def test_plain():
            pass

        @pytest.mark.home({"bad": {"capabilities": ["NoSuch"]}})
        def test_bad_spec():
            pass
        """
    )
    result = run_inner(pytester, run_id, "-m", "wifi", "--collect-only", "-q")
    assert "test_radios.py::test_has_an_ap" in result.stdout.str()
    assert "test_plain" not in result.stdout.str() and "test_bad_spec" not in result.stdout.str()
    result = run_inner(pytester, run_id, "-m", "wifi", "-k", "has_an_ap", "-p", "no:cirque")
    result.assert_outcomes(passed=0, errors=0)  # without the plugin nothing is marked


def test_with_reruns_only_the_last_failed_attempt_is_kept(
    pytester: pytest.Pytester, client: docker.DockerClient, run_id: str
) -> None:
    pytest.importorskip("pytest_rerunfailures")
    pytester.makepyfile(
        test_flaky="""
        import pytest

        ATTEMPTS = []

        @pytest.mark.home({"n": {}})
        def test_passes_on_rerun(home):
            ATTEMPTS.append(home.name)
            assert len(ATTEMPTS) > 1, "fails the first time"

        @pytest.mark.home({"n": {}})
        def test_always_fails(home):
            assert False, "broken for good"
        """
    )
    result = run_inner(pytester, run_id, "--reruns", "1", "--cirque-keep")
    result.assert_outcomes(passed=1, failed=1)
    assert result.parseoutcomes().get("rerun") == 2
    kept = client.containers.list(
        all=True, filters={"label": [f"io.cirque.run={run_id}", "io.cirque.kept=1"]}
    )
    homes = sorted(c.labels["io.cirque.home"] for c in kept)
    try:
        # One home: the last attempt's (a rerun's home takes the next free name).
        assert len(homes) == 1 and homes[0].startswith(f"cirque-{run_id}-main-test_always_fails")
    finally:
        for home in homes:
            cleanup.remove_home(Backend(client), home)
    assert run_objects(client, run_id) == []
