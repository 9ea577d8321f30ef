"""Nodes on real Docker: exec (exit codes, output, timeouts), background commands, files,
logs, stop/start/restart, addresses, waits."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from pytest_cirque.core import identity
from pytest_cirque.core.docker_backend import Backend
from pytest_cirque.core.errors import ExecTimeout, NodeError, WaitTimeout
from pytest_cirque.homes import networks
from pytest_cirque.homes.home import Home
from pytest_cirque.homes.node import Node, listening_ports
from pytest_cirque.homes.session import Cirque


@pytest.fixture(scope="module")
def home() -> Iterator[Home]:
    service = Cirque(worker=os.environ.get("PYTEST_XDIST_WORKER", "main"))
    try:
        yield service.create_home(
            {
                "n": {},
                "talker": {"command": ["sh", "-c", "echo node-says-hello; exec sleep infinity"]},
            }
        )
    finally:
        service.close()
        left = Backend(service.client).find([f"{identity.RUN}={service.run_id}"])
        assert left == []


def test_exec_output_and_exit_code(home: Home) -> None:
    result = home["n"].exec("echo out; echo err >&2; exit 7")
    assert (result.exit_code, result.stdout, result.stderr) == (7, "out\n", "err\n")
    assert result.node == "n" and "exit 7" in result.command


def test_exec_argv_list_is_not_shell_parsed(home: Home) -> None:
    result = home["n"].exec(["echo", "$HOME", "a b"])
    assert result.stdout == "$HOME a b\n" and result.exit_code == 0


def test_exec_environment_and_user(home: Home) -> None:
    result = home["n"].exec("echo $GREETING; id -u", environment={"GREETING": "hi"}, user="65534")
    assert result.stdout == "hi\n65534\n"


def test_exec_check_raises_with_node_command_and_stderr(home: Home) -> None:
    with pytest.raises(NodeError) as exc:
        home["n"].exec("echo broken pipe >&2; exit 3", check=True)
    text = str(exc.value)
    assert "node n" in text and "exited with 3" in text and "broken pipe" in text
    assert "\n" not in text


def test_exec_missing_program(home: Home) -> None:
    result = home["n"].exec(["no-such-program"])
    assert result.exit_code != 0  # Docker reports 126/127: the code is never lost


def test_exec_timeout_kills_the_command(home: Home) -> None:
    node = home["n"]
    with pytest.raises(ExecTimeout) as exc:
        node.exec("sleep 1000 & sleep 999", timeout=1)
    assert "node n" in str(exc.value) and "sleep 999" in str(exc.value)
    node.wait_until(
        lambda: "sleep 99" not in node.exec("ps -eo args").stdout,
        "the timed-out commands to be gone",
        timeout=10,
    )


def test_background_exec_keeps_running(home: Home) -> None:
    node = home["n"]
    job = node.exec_background("echo started; while true; do sleep 0.1; done")
    assert job.running
    node.wait_until(lambda: "started" in job.stdout, "background output")
    assert job.running  # still going after the call returned and output arrived
    job.kill()
    assert not job.running
    assert job.wait(timeout=10).exit_code != 0


@pytest.mark.parametrize("attempt", range(3))
def test_background_exec_killed_right_after_it_started(home: Home, attempt: int) -> None:
    """Docker reports a just-started exec running with pid 0 for a moment; kill waits for
    the pid instead of killing nothing."""
    node = home["n"]
    job = node.exec_background(["sleep", f"432{attempt}"])
    job.kill()
    assert not job.running
    assert node.exec(["pgrep", "-f", f"^sleep 432{attempt}$"]).exit_code == 1, "still running"


def test_background_exec_finishes(home: Home) -> None:
    job = home["n"].exec_background(["sh", "-c", "echo done; exit 4"])
    result = job.wait(timeout=30)
    assert (result.exit_code, result.stdout) == (4, "done\n")
    assert not job.running


def test_background_wait_timeout(home: Home) -> None:
    job = home["n"].exec_background("sleep 600")
    with pytest.raises(ExecTimeout, match="still running"):
        job.wait(timeout=0.2)
    job.kill()


def test_put_and_get_files(home: Home) -> None:
    node = home["n"]
    payload = bytes(range(256)) * 100
    node.put_file("/opt/deep/dir/blob.bin", payload, mode=0o600)
    assert node.get_file("/opt/deep/dir/blob.bin") == payload
    assert node.exec("stat -c %a /opt/deep/dir/blob.bin").stdout == "600\n"
    node.put_file("/tmp/text.txt", "héllo\n")
    assert node.exec("cat /tmp/text.txt").stdout == "héllo\n"
    with pytest.raises(NodeError, match="no file /nope"):
        node.get_file("/nope")
    with pytest.raises(NodeError, match="absolute"):
        node.put_file("relative.txt", b"")


def test_logs(home: Home) -> None:
    talker = home["talker"]
    talker.wait_until(lambda: "node-says-hello" in talker.logs(), "the greeting in the log")
    assert talker.logs(tail=1).strip() == "node-says-hello"


def test_wait_until_times_out_with_what_and_log(home: Home) -> None:
    talker = home["talker"]
    with pytest.raises(WaitTimeout) as exc:
        talker.wait_until(lambda: talker.exec("test -e /never").exit_code == 0, "/never", 0.5)
    assert "waited 0.5 s for /never" in str(exc.value)
    assert "node-says-hello" in exc.value.log


def test_wait_until_returns_the_value(home: Home) -> None:
    assert home["n"].wait_until(lambda: home["n"].exec("echo 5").stdout.strip(), "echo") == "5"


def test_addresses(home: Home) -> None:
    node = home["n"]
    gateway = node.network.gateway
    assert node.ip and node.ip != gateway
    assert node.ip in node.exec("ip -4 addr show eth0").stdout
    assert node.ipv6 == []  # the default network has no IPv6


def test_stop_start_restart(home: Home) -> None:
    node = home["talker"]
    assert guarded(node)
    node.stop()
    assert node.state == "exited"
    assert node.ip is None
    with pytest.raises(NodeError, match="node talker"):
        node.exec("true")
    node.start()
    assert node.state == "running"
    assert node.exec("true").exit_code == 0
    assert guarded(node), "segment guard lost after stop and start"
    node.start()  # already running: nothing happens
    node.exec("touch /tmp/marker", check=True)
    node.restart()
    assert node.state == "running"
    assert node.exec("test -e /tmp/marker").exit_code == 0  # same container, not a new one
    assert guarded(node), "segment guard lost after restart"


def guarded(node: Node) -> bool:
    """Whether the node's namespace has its segment guard (the pool's prohibit route)."""
    routes = node.exec("ip route show type prohibit", check=True).stdout
    return str(networks.subnet_pool()) in routes


def test_screenshot_needs_xvnc(home: Home) -> None:
    with pytest.raises(NodeError, match="XVNC"):
        home["n"].screenshot()


def test_describe(home: Home) -> None:
    info = home["n"].describe()
    assert info["state"] == "running" and info["segment"] == "lan" and info["capabilities"] == []
    assert info["container"] == f"{home.name}.n"


# ---- wait strategies ------------------------------------------------------------------


def test_wait_for_log_returns_the_matching_line(home: Home) -> None:
    match = home["talker"].wait_for_log(r"node-(\w+)-hello", timeout=30)
    assert match.group(1) == "says"
    with pytest.raises(WaitTimeout) as error:
        home["talker"].wait_for_log("never-printed", timeout=0.5)
    assert "a log line matching 'never-printed'" in str(error.value)
    assert "node-says-hello" in error.value.log


def test_wait_for_port_sees_a_listener_from_inside_the_node(home: Home) -> None:
    node = home["n"]
    with pytest.raises(WaitTimeout, match="a listener on TCP port 8765"):
        node.wait_for_port(8765, timeout=0.5)
    server = node.exec_background(
        [
            "python3",
            "-c",
            "import socket,time; s=socket.socket(); s.bind(('', 8765)); "
            "s.listen(); time.sleep(600)",
        ]
    )
    try:
        assert node.wait_for_port(8765, timeout=30) == 8765
    finally:
        server.kill()


def test_wait_for_healthy_needs_a_healthcheck(home: Home) -> None:
    with pytest.raises(NodeError, match="has no HEALTHCHECK; wait for a log line or a port"):
        home["n"].wait_for_healthy(timeout=5)


def test_a_home_waits_for_what_its_nodes_wait_for(service_for_waits: Cirque) -> None:
    """Home creation returns only once the log line is there and the port listens."""
    script = (
        "python3 -c \"import socket,time; time.sleep(1); print('warming up', flush=True); "
        "s=socket.socket(); s.bind(('', 9099)); s.listen(); print('ready', flush=True); "
        'time.sleep(600)"'
    )
    home = service_for_waits.create_home(
        {
            "web": {
                "command": ["sh", "-c", script],
                "wait_for": {"log": "^ready$", "port": 9099, "timeout": 60},
            }
        }
    )
    assert "ready" in home["web"].logs()
    tables = home["web"].exec(["cat", "/proc/net/tcp", "/proc/net/tcp6"]).stdout
    assert 9099 in listening_ports(tables)


def test_a_wait_for_that_never_comes_fails_creation_and_leaves_nothing(
    service_for_waits: Cirque,
) -> None:
    with pytest.raises(WaitTimeout, match="a log line matching 'never'"):
        service_for_waits.create_home(
            {"mute": {"wait_for": {"log": "never", "timeout": 1}}}, name="mute"
        )
    assert (
        Backend(service_for_waits.client).find(
            [f"{identity.RUN}={service_for_waits.run_id}", f"{identity.HOME}"]
        )
        == []
    )


@pytest.fixture
def service_for_waits() -> Iterator[Cirque]:
    service = Cirque(worker=os.environ.get("PYTEST_XDIST_WORKER", "main"))
    try:
        yield service
    finally:
        service.close()
