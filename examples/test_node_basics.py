"""Talking to a node: exec, files, logs, background commands, restarts.

Most of these only look at a node, so they share one home (``box`` from conftest.py,
built from ``cirque_session_home_spec``); the restart example makes its own.
"""

import pytest

from pytest_cirque.core.errors import NodeError


def test_exec_returns_exit_code_and_both_streams(box):
    result = box.exec("echo out; echo err >&2; exit 3")
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")


def test_exec_check_raises_naming_node_and_command(box):
    with pytest.raises(NodeError, match=r"box.*false"):
        box.exec(["false"], check=True)


def test_environment_from_the_spec(box):
    assert box.exec("echo $ROLE", check=True).stdout.strip() == "box"


def test_files_in_and_out(box):
    box.put_file("/tmp/greeting.txt", b"hello node\n")
    assert box.exec("cat /tmp/greeting.txt", check=True).stdout == "hello node\n"
    box.exec("echo reply > /tmp/reply.txt", check=True)
    assert box.get_file("/tmp/reply.txt") == b"reply\n"


def test_logs_show_the_main_process_output(box):
    box.wait_until(lambda: "box is up" in box.logs(tail=10), "the greeting in the log", timeout=10)


def test_a_background_command_runs_until_it_ends_or_is_killed(box):
    server = box.exec_background(["sleep", "300"])
    box.wait_until(
        lambda: box.exec(["pgrep", "-f", "sleep 300"]).exit_code == 0,
        "the background command to be running",
        timeout=10,
    )
    assert server.running
    server.kill()
    box.wait_until(lambda: not server.running, "the killed command to end", timeout=10)

    job = box.exec_background("echo working; echo done")
    result = job.wait(timeout=10)
    assert (result.exit_code, result.stdout) == (0, "working\ndone\n")


def boots(node) -> int:
    """How often the node's command has started (it records each start in a file)."""
    return node.exec("cat /var/tmp/boots").stdout.count("boot")


@pytest.mark.home({"dev": {"command": ["sh", "-c", "echo boot >> /var/tmp/boots; exec sleep 1d"]}})
def test_stop_start_restart(home):
    dev = home["dev"]
    # A node runs as soon as its container starts; its command may still be starting up.
    # Wait for what the test relies on, here each boot being recorded, never a fixed time.
    dev.wait_until(lambda: boots(dev) == 1, "the first boot", timeout=20)
    dev.stop()
    assert dev.state == "exited"
    dev.start()
    assert dev.state == "running"
    dev.wait_until(lambda: boots(dev) == 2, "the second boot", timeout=20)
    dev.restart()
    assert dev.state == "running"
    # The node's files outlive restarts.
    dev.wait_until(lambda: boots(dev) == 3, "the third boot", timeout=20)
