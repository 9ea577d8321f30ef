"""Talking to a node: exec, files, logs, background commands, restarts.

Most of these only look at a node, so they share one home (``box`` from conftest.py,
built from ``cirque_session_home_spec``); the restart example makes its own.
"""

import pytest

from pytest_cirque.errors import NodeError


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
    assert "box is up" in box.logs(tail=10)


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


@pytest.mark.home({"dev": {"command": ["sh", "-c", "echo started; exec sleep infinity"]}})
def test_stop_start_restart(home):
    dev = home["dev"]
    dev.stop()
    assert dev.state == "exited"
    dev.start()
    assert dev.state == "running"
    dev.restart()
    dev.wait_until(lambda: dev.logs().count("started") >= 3, "three starts in the log", timeout=20)
