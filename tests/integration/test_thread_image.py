"""The thread image on a real engine: OpenThread's tools, built once from the pinned crate.

The first run on a machine builds OpenThread (a few minutes on two cores); later runs reuse
the image. A node of it gets a simulated radio (ot-rcp) under ot-daemon, which makes a real
wpan0 in the node's namespace and answers ot-ctl.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from pytest_cirque.core import identity
from pytest_cirque.core.docker_backend import as_backend
from pytest_cirque.core.images import ensure_image
from pytest_cirque.core.waiting import wait_until

pytestmark = pytest.mark.slow

#: Where ot-daemon serves ot-ctl for the interface wpan0.
DAEMON_SOCKET = "/run/openthread-wpan0.sock"


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    docker_client = docker.from_env(timeout=120)
    yield docker_client
    docker_client.close()


@pytest.fixture(scope="module")
def thread_image(client: docker.DockerClient) -> str:
    """The thread image, built now when this machine has not built its recipe yet."""
    return ensure_image(client, "thread")


@contextlib.contextmanager
def running(client: docker.DockerClient, image: str, **options: Any) -> Iterator[Any]:
    """A labelled node of the image, removed afterwards (the reaper knows its owner)."""
    run = identity.RunIdentity.create(worker="test-thread-image")
    home_id = run.home_id("thread")
    container = client.containers.run(
        image,
        detach=True,
        name=identity.object_name(home_id, secrets.token_hex(3)),
        labels=run.labels(home_id, identity.ROLE_NODE),
        **options,
    )
    try:
        yield container
    finally:
        container.remove(force=True)


def output_of(container: Any, command: str) -> tuple[int, str]:
    # Through the backend: docker-py's exec_run can lose a fast command's output. Its
    # stderr joins stdout in the shell, in the order written, as exec_run gave it.
    result = as_backend(container.client).exec(
        container.id, ["sh", "-c", f"exec 2>&1; {command}"], node=container.name, timeout=None
    )
    return result.exit_code, result.stdout


def test_thread_image_is_a_labelled_node_image_with_the_openthread_tools(
    client: docker.DockerClient, thread_image: str
) -> None:
    assert thread_image.startswith("cirque/thread:")
    labels = client.images.get(thread_image).labels
    assert labels[identity.IMAGE] == "thread"
    assert thread_image.endswith(labels[identity.RECIPE])
    with running(client, thread_image) as node:
        code, tools = output_of(
            node, "ls /usr/local/bin; ldd /usr/local/bin/ot-daemon | grep -c 'not found'"
        )
        assert {"ot-daemon", "ot-ctl", "ot-rcp", "ot-cli-ftd"} <= set(tools.split())
        assert tools.split()[-1] == "0", f"ot-daemon lacks libraries:\n{tools}"

        code, usage = output_of(node, "ot-ctl -h")
        assert code == 0, usage
        assert "ot-ctl [Options]" in usage and "--interface-name" in usage

        _, usage = output_of(node, "ot-rcp 2>&1")
        assert "ot-rcp [Options] NodeId" in usage and "--local-interface" in usage

        _, usage = output_of(node, "ot-daemon --help 2>&1")
        assert "spinel+hdlc+forkpty://" in usage


def test_simulated_radios_number_past_the_default_33_nodes(
    client: docker.DockerClient, thread_image: str
) -> None:
    with running(client, thread_image) as node:
        _, refused = output_of(node, "ot-rcp 129 </dev/null 2>&1")
        assert "Invalid NodeId: 129" in refused
        _, accepted = output_of(node, "ot-rcp 128 </dev/null 2>&1")
        assert "Invalid NodeId" not in accepted


def test_ot_daemon_over_a_simulated_rcp_makes_wpan0_and_answers_ot_ctl(
    client: docker.DockerClient, thread_image: str
) -> None:
    with running(
        client,
        thread_image,
        cap_add=["NET_ADMIN"],
        devices=["/dev/net/tun:/dev/net/tun:rwm"],
    ) as node:
        radio = "spinel+hdlc+forkpty:///usr/local/bin/ot-rcp?forkpty-arg=-Leth0&forkpty-arg=64"
        # A shell stays ot-daemon's parent: ot-daemon ends itself when its parent goes, and
        # the process a detached exec starts goes at once (as the Thread driver does it).
        node.exec_run(["sh", "-c", f"ot-daemon -I wpan0 '{radio}'; true"], detach=True)

        def daemon_answers() -> str | None:
            code, state = output_of(node, f"test -S {DAEMON_SOCKET} && ot-ctl state")
            return state if code == 0 else None

        state = wait_until(
            daemon_answers,
            "ot-daemon to serve ot-ctl",
            60,
            log=lambda: output_of(node, "ps -ef")[1],
        )
        assert state.split()[0] == "disabled"
        code, link = output_of(node, "ip link show wpan0")
        assert code == 0, link
        _, version = output_of(node, "ot-ctl rcp version")
        assert "SIMULATION" in version
