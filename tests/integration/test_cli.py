"""The `cirque` command line against real Docker: ls, exec, logs, shell, down, reap and
images build on homes this test makes; every error one line with exit code 2."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator

import docker
import pytest

from pytest_cirque.core import identity
from pytest_cirque.core.docker_backend import Backend
from pytest_cirque.homes import cleanup
from pytest_cirque.homes.home import Home
from pytest_cirque.homes.session import Cirque


def cirque_cli(
    *args: str, env: dict[str, str] | None = None, **kwargs
) -> subprocess.CompletedProcess:
    """Run the real `cirque` command (this interpreter's), capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "pytest_cirque.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        check=False,
        **kwargs,
    )


@pytest.fixture
def client() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture
def run_id(client: docker.DockerClient) -> Iterator[str]:
    """A fresh run id; everything labelled with it is removed after the test, always."""
    run = "cl" + uuid.uuid4().hex[:6]
    yield run
    backend = Backend(client)
    cleanup.remove_objects(backend, backend.find([f"{identity.RUN}={run}"]))


@pytest.fixture
def home(run_id: str) -> Iterator[Home]:
    """A live home of two nodes owned by this process."""
    with Cirque(run_id=run_id) as service:
        yield service.create_home(
            {
                "dev": {"command": ["sh", "-c", "echo first; echo second; exec sleep infinity"]},
                "spare": {},
            },
            name="cli",
        )


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The error of a failed command, checked to be one line with exit code 2."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cirque: ")
    return lines[0]


def test_ls_lists_the_home_with_its_run_owner_and_nodes(home: Home, run_id: str) -> None:
    result = cirque_cli("ls")
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0].split()
    assert header == ["HOME", "RUN", "WORKER", "OWNER", "KEPT", "NODES"]
    row = next(line for line in result.stdout.splitlines() if line.startswith(home.name))
    assert row.split() == [home.name, run_id, "main", "alive", "-", "dev", "spare"]


def test_exec_passes_output_and_exit_code_through(home: Home) -> None:
    result = cirque_cli("exec", home.name, "dev", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (result.returncode, result.stdout, result.stderr) == (7, "out\n", "err\n")
    result = cirque_cli("exec", home.name, "dev", "--", "ls", "-d", "/tmp")
    assert (result.returncode, result.stdout) == (0, "/tmp\n")


def test_logs_tail_and_a_unique_part_of_the_home_name(home: Home, run_id: str) -> None:
    result = cirque_cli("logs", f"{run_id}-main-cli", "dev", "--tail", "1")
    assert (result.returncode, result.stdout) == (0, "second\n")


@pytest.mark.skipif(shutil.which("docker") is None, reason="cirque shell runs the docker CLI")
def test_shell_opens_an_interactive_shell_in_the_node(home: Home) -> None:
    result = subprocess.run(
        [
            "script",
            "-qec",
            f"{sys.executable} -m pytest_cirque.cli shell {home.name} dev",
            "/dev/null",
        ],
        input="echo shell-$((6*7)) $(hostname -s)\nexit\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "shell-42" in result.stdout


def test_down_removes_the_home_and_everything_it_owns(
    home: Home, client: docker.DockerClient, run_id: str
) -> None:
    result = cirque_cli("down", home.name)
    assert result.returncode == 0, result.stderr
    assert f"removed home {home.name}" in result.stdout
    assert Backend(client).find([f"{identity.HOME}={home.name}"]) == []
    assert one_line_error(cirque_cli("logs", home.name, "dev")).startswith(
        f"cirque: no home named {home.name!r}"
    )


def test_reap_removes_dead_runs_only(home: Home, client: docker.DockerClient, run_id: str) -> None:
    exited = subprocess.Popen(["true"])
    exited.wait()
    dead_owner = f"{socket.gethostname()}/{exited.pid}/1"  # a process that is gone
    made = {}
    for home_stem, extra in (("dead", {}), ("deadkept", {identity.KEPT: "1"})):
        home_id = f"cirque-{run_id}-main-{home_stem}"
        labels = {identity.RUN: run_id, identity.HOME: home_id, identity.OWNER: dead_owner}
        made[home_stem] = client.volumes.create(f"{home_id}-vol", labels={**labels, **extra}).name
    live_before = {o.name for o in Backend(client).find([f"{identity.HOME}={home.name}"])}

    result = cirque_cli("reap")
    assert result.returncode == 0, result.stderr
    assert "objects of dead runs" in result.stdout
    volumes = {v.name for v in client.volumes.list(filters={"label": f"{identity.RUN}={run_id}"})}
    assert made["dead"] not in volumes
    assert made["deadkept"] in volumes
    live_after = {o.name for o in Backend(client).find([f"{identity.HOME}={home.name}"])}
    assert live_after == live_before


def test_images_build_reports_each_tag() -> None:
    result = cirque_cli("images", "build", "base")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("base: ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("exec", "no-such-home", "dev", "true"), "cirque: no home named 'no-such-home'"),
        (("logs", "no-such-home", "dev"), "cirque: no home named 'no-such-home'"),
        (("down", "no-such-home"), "cirque: no home named 'no-such-home'"),
        (("images", "build", "no-such-image"), "cirque: 'no-such-image' is not a project image"),
    ],
)
def test_unknown_names_are_one_line_errors(args: tuple[str, ...], message: str) -> None:
    assert one_line_error(cirque_cli(*args)).startswith(message)


def test_unknown_node_names_the_known_ones(home: Home) -> None:
    line = one_line_error(cirque_cli("exec", home.name, "ghost", "true"))
    assert line == f"cirque: home {home.name} has no node 'ghost' (its nodes: dev, spare)"


def test_exec_without_a_command_is_one_line(home: Home) -> None:
    line = one_line_error(cirque_cli("exec", home.name, "dev"))
    assert "give the command to run" in line


def test_docker_unreachable_is_one_line() -> None:
    result = cirque_cli("ls", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert "Docker engine unreachable at unix:///nonexistent/docker.sock" in one_line_error(result)


def test_doctor_reports_docker_and_the_kernel_features() -> None:
    result = cirque_cli("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "cirque doctor"
    checks = {
        line.split()[1]: line.split()[0]
        for line in lines
        if line.startswith("  ") and line.split()[0] in ("ok", "missing", "error", "warning")
    }
    assert checks["docker"] == "ok"
    assert {"netem", "ipvlan", "tun", "hwsim", "802.15.4"} <= set(checks)
    assert lines[-1].startswith("summary: ")


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("logs",), "cirque logs: the following arguments are required: home, node"),
        (("logs", "h", "n", "--tail", "x"), "cirque logs: argument --tail: invalid int value"),
        (("images",), "cirque images: the following arguments are required: ACTION"),
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(args: tuple[str, ...], line: str) -> None:
    result = cirque_cli(*args)
    assert result.returncode == 2
    assert result.stderr.startswith(line)
    assert len(result.stderr.strip().splitlines()) == 1


def test_down_wants_the_full_name(home: Home, client: docker.DockerClient, run_id: str) -> None:
    line = one_line_error(cirque_cli("down", f"{run_id}-main-cli"))
    assert line == f"cirque: no home named '{run_id}-main-cli'; give its full name: {home.name}"
    assert Backend(client).find([f"{identity.HOME}={home.name}"]) != []
