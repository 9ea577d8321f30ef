"""Project images on a real engine: their tools, their cache, their lock, their errors.

The project images are a machine-wide cache and stay; images these tests make from
temporary recipes are removed by the tests.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from pytest_cirque.core import identity
from pytest_cirque.core import images as image_builder
from pytest_cirque.core.docker_backend import as_backend
from pytest_cirque.core.errors import ImageError
from pytest_cirque.core.images import ensure_image
from pytest_cirque.core.waiting import wait_until


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    docker_client = docker.from_env(timeout=120)
    yield docker_client
    docker_client.close()


@pytest.fixture
def progress_lines() -> list[str]:
    return []


@pytest.fixture
def scratch_images(client: docker.DockerClient) -> Iterator[list[str]]:
    """Tags a test makes from temporary recipes; removed afterwards, pass or fail."""
    tags: list[str] = []
    yield tags
    for tag in tags:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(tag)


@pytest.fixture
def images_root(tmp_path: Path) -> Path:
    """A temporary images root holding a copy of the real base recipe."""
    root = tmp_path / "images"
    root.mkdir()
    shutil.copytree(image_builder.default_images_root() / "base", root / "base")
    return root


@contextlib.contextmanager
def running(client: docker.DockerClient, image: str, **options) -> Iterator:
    """A labelled container of the image, removed afterwards (the reaper knows its owner)."""
    run = identity.RunIdentity.create(worker="test-images")
    home_id = run.home_id("images")
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


def run_in(client: docker.DockerClient, image: str, command: str) -> str:
    """Output of a shell command in a fresh container of the image; fails on non-zero exit."""
    with running(client, image, entrypoint=["sh", "-c", command], command=[]) as container:
        status = container.wait(timeout=120)
        output = container.logs(stdout=True, stderr=True).decode(errors="replace")
    assert status["StatusCode"] == 0, f"{command!r} in {image} failed:\n{output}"
    return output


def add_recipe(root: Path, name: str, dockerfile: str) -> None:
    (root / name).mkdir()
    (root / name / "Dockerfile").write_text(textwrap.dedent(dockerfile).lstrip())


# --- the shipped images -------------------------------------------------------------------


def test_base_has_the_node_tools_and_tini_as_init(client: docker.DockerClient) -> None:
    tag = ensure_image(client, "base")
    assert tag.startswith("cirque/base:")
    labels = client.images.get(tag).labels
    assert labels["io.cirque.image"] == "base"
    assert tag.endswith(labels["io.cirque.recipe"])
    output = run_in(
        client,
        tag,
        "wpa_cli -v; ip -V; ping -V; dhclient --version; iptables --version; "
        "ps --version; python3 --version",
    )
    for expected in ("wpa_cli v", "iproute2", "iputils", "isc-dhclient", "iptables v", "procps"):
        assert expected in output
    assert "Python 3" in output


def test_base_node_stays_up_and_stops_on_sigterm(client: docker.DockerClient) -> None:
    with running(client, ensure_image(client, "base")) as node:
        init = as_backend(client).exec(node.id, ["cat", "/proc/1/comm"], node=node.name)
        assert init.stdout.strip() == "tini"
        node.reload()
        assert node.status == "running"
        node.stop(timeout=30)
        node.reload()
        # 137 would mean Docker had to SIGKILL it: SIGTERM was not acted on.
        assert node.attrs["State"]["ExitCode"] != 137


def test_wifi_ap_is_built_from_base_with_dnsmasq(client: docker.DockerClient) -> None:
    tag = ensure_image(client, "wifi-ap")
    base = client.images.get(ensure_image(client, "base"))
    history = {layer["Id"] for layer in client.images.get(tag).history()}
    assert base.id in history
    output = run_in(client, tag, "dnsmasq --version; iptables --version; wpa_cli -v")
    assert "Dnsmasq version" in output
    assert "wpa_cli v" in output


def test_mqtt_broker_accepts_anonymous_clients_on_1883(client: docker.DockerClient) -> None:
    import paho.mqtt.client as mqtt

    tag = ensure_image(client, "mqtt-broker")
    assert "mosquitto version" in run_in(client, tag, "mosquitto -h || true")
    with running(client, tag) as broker:
        broker.reload()
        address = broker.attrs["NetworkSettings"]["IPAddress"]
        received: list[bytes] = []
        subscriber = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        subscriber.on_message = lambda _c, _u, message: received.append(message.payload)

        def connected() -> bool:
            subscriber.connect(address, 1883)  # OSError until mosquitto listens
            return True

        wait_until(connected, f"mosquitto to accept on {address}:1883", 30)
        subscriber.loop_start()
        try:
            subscriber.subscribe("cirque/test", qos=1)
            publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
            publisher.connect(address, 1883)
            publisher.loop_start()

            def delivered() -> bool:
                publisher.publish("cirque/test", b"hello", qos=1).wait_for_publish(5)
                return b"hello" in received

            # Until the subscription holds; a publish that fails meanwhile is tried again.
            wait_until(delivered, "the subscriber to receive 'hello'", 30, ignore=(Exception,))
            publisher.loop_stop()
            publisher.disconnect()
        finally:
            subscriber.loop_stop()
            subscriber.disconnect()
        assert "New client connected" in broker.logs().decode(errors="replace")


# --- the cache ----------------------------------------------------------------------------


def test_unchanged_recipe_is_never_rebuilt(
    client: docker.DockerClient, progress_lines: list[str]
) -> None:
    tag = ensure_image(client, "base")
    image_id = client.images.get(tag).id
    again = ensure_image(client, "base", progress=progress_lines.append)
    built = image_builder.build_images(client, ["base"], progress=progress_lines.append)
    assert again == tag and built == {"base": tag}
    assert client.images.get(tag).id == image_id
    assert not any(line.startswith("building") for line in progress_lines)


def test_changed_recipe_gets_a_new_tag_and_so_do_its_children(
    client: docker.DockerClient, images_root: Path, scratch_images: list[str]
) -> None:
    marker = secrets.token_hex(4)
    add_recipe(images_root, "child", f"FROM cirque/base\nLABEL io.cirque.test-child={marker}\n")
    project_base = ensure_image(client, "base")
    assert ensure_image(client, "base", images_root=images_root) == project_base
    child = ensure_image(client, "child", images_root=images_root)
    scratch_images.append(child)

    dockerfile = images_root / "base" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + f"LABEL io.cirque.test-variant={marker}\n")
    changed = ensure_image(client, "base", images_root=images_root)
    scratch_images.insert(0, changed)
    changed_child = ensure_image(client, "child", images_root=images_root)
    scratch_images.insert(0, changed_child)

    assert changed != project_base
    assert client.images.get(changed).labels["io.cirque.test-variant"] == marker
    assert changed_child != child
    child_history = {layer["Id"] for layer in client.images.get(changed_child).history()}
    assert client.images.get(changed).id in child_history


def test_rebuild_builds_again_under_the_same_tag(
    client: docker.DockerClient, images_root: Path, scratch_images: list[str]
) -> None:
    add_recipe(images_root, "again", f"FROM cirque/base\nRUN echo {secrets.token_hex(4)} > /x\n")
    tag = ensure_image(client, "again", images_root=images_root)
    scratch_images.append(tag)
    first = client.images.get(tag).id
    assert ensure_image(client, "again", images_root=images_root, rebuild=True) == tag
    assert client.images.get(tag).id != first
    with pytest.raises(docker.errors.ImageNotFound):  # the replaced build is not left behind
        client.images.get(first)


CONCURRENT_WORKER = """
import json, sys
from pathlib import Path
import docker
from pytest_cirque.core.images import ensure_image
lines = []
tag = ensure_image(docker.from_env(timeout=300), "together", images_root=Path(sys.argv[1]),
                   progress=lines.append)
print(json.dumps({"tag": tag, "built": any(l.startswith("building") for l in lines)}))
"""


def test_four_processes_asking_at_once_build_once(
    client: docker.DockerClient, images_root: Path, scratch_images: list[str]
) -> None:
    ensure_image(client, "base")
    marker = secrets.token_hex(4)
    add_recipe(images_root, "together", f"FROM cirque/base\nRUN echo {marker} > /marker\n")
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_WORKER, str(images_root)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    tags = {r["tag"] for r in results}
    scratch_images.extend(tags)
    assert len(tags) == 1
    assert sum(r["built"] for r in results) == 1
    assert run_in(client, tags.pop(), "cat /marker").strip() == marker


# --- errors and users' images -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["absent", "invalid reference"])
def test_unknown_image_is_one_line_naming_it(client: docker.DockerClient, kind: str) -> None:
    name = f"cirque-test-no-such-image-{secrets.token_hex(4)}:1"
    if kind == "invalid reference":
        name = "Not A Valid Reference"
    with pytest.raises(ImageError) as caught:
        ensure_image(client, name, progress=lambda _line: None)
    message = str(caught.value)
    assert "\n" not in message
    assert name in message


def test_an_image_that_is_not_anywhere_says_how_to_get_it(client: docker.DockerClient) -> None:
    with pytest.raises(ImageError, match="build or load it"):
        ensure_image(client, f"cirque-test-absent-{secrets.token_hex(4)}", progress=print)


def test_unknown_project_name_in_build_images_lists_the_known_ones(
    client: docker.DockerClient,
) -> None:
    with pytest.raises(ImageError, match=r"not a project image; choose among: .*base"):
        image_builder.build_images(client, ["no-such-recipe"])


def test_a_users_local_image_is_used_as_it_is(client: docker.DockerClient) -> None:
    user_image = f"cirque-test-user-image-{secrets.token_hex(4)}"
    client.images.get(ensure_image(client, "base")).tag(user_image, "1")
    try:
        assert ensure_image(client, f"{user_image}:1") == f"{user_image}:1"
    finally:
        client.images.remove(f"{user_image}:1")


def test_failed_build_names_the_step_and_shows_the_output(
    client: docker.DockerClient, images_root: Path
) -> None:
    add_recipe(images_root, "broken", "FROM cirque/base\nRUN echo about-to-fail && false\n")
    with pytest.raises(ImageError) as caught:
        ensure_image(client, "broken", images_root=images_root, progress=lambda _line: None)
    summary, _, output = str(caught.value).partition("\n")
    assert "images/broken" in summary
    assert "Step 2/" in summary and "RUN echo about-to-fail" in summary
    assert "about-to-fail" in output
    assert not client.images.list(name="cirque/broken")


@pytest.mark.slow
def test_debian_base_bootstraps_from_the_machines_apt_sources(
    client: docker.DockerClient, scratch_images: list[str], progress_lines: list[str]
) -> None:
    """The path this project's machines take: no registry, so mmdebstrap + docker import."""
    if shutil.which("mmdebstrap") is None:
        pytest.skip("mmdebstrap is not installed")
    tag = f"cirque/debian:test-{secrets.token_hex(4)}"
    scratch_images.append(tag)
    image_builder._bootstrap_debian(client, tag, progress_lines.append)
    assert any(line.startswith("[mmdebstrap]") for line in progress_lines)
    assert client.images.get(tag).labels["io.cirque.image"] == "debian"
    output = run_in(client, tag, "cat /etc/debian_version; ls /var/cache/apt; apt-config dump")
    assert output.startswith("12.")
    assert 'Dir::Cache::pkgcache "";' in output
    assert "pkgcache.bin" not in output
