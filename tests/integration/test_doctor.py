"""`cirque doctor` on a real engine: versions, images, kernel features tried in a helper."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from pytest_cirque import doctor
from pytest_cirque.core import identity
from pytest_cirque.core import images as image_builder


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    docker_client = docker.from_env(timeout=120)
    image_builder.ensure_image(docker_client, "base")  # the helper container's image
    yield docker_client
    docker_client.close()


@pytest.fixture(scope="module")
def checks(client: docker.DockerClient) -> dict[str, doctor.Check]:
    return {check.name: check for check in doctor.run_checks(client)}


def test_docker_check_names_engine_and_client_versions(
    client: docker.DockerClient, checks: dict[str, doctor.Check]
) -> None:
    check = checks["docker"]
    assert check.status == doctor.OK
    assert f"engine {client.version()['Version']}" in check.detail
    assert f"docker-py {docker.__version__}" in check.detail


def test_every_project_image_is_reported(checks: dict[str, doctor.Check]) -> None:
    for name in image_builder.project_images():
        assert f"image {name}" in checks
    assert checks["image base"].status == doctor.OK
    assert checks["image base"].detail.startswith("cirque/base:")


def test_every_kernel_feature_is_reported_with_its_meaning_and_method(
    checks: dict[str, doctor.Check],
) -> None:
    for feature in doctor.KERNEL_FEATURES:
        check = checks[feature.name]
        assert check.status in (doctor.OK, doctor.MISSING, doctor.WARN)
        assert check.meaning == feature.if_present or feature.if_missing in check.meaning
        if feature.probe:
            assert "helper container" in check.method
    # Docker runs here, so containers get veth pairs on bridges: both must be found.
    assert checks["veth"].status == doctor.OK
    assert checks["bridge"].status == doctor.OK


@pytest.mark.parametrize(
    ("feature", "command"),
    [
        ("netem", "tc qdisc add dev lo root netem delay 1ms"),
        ("tbf", "tc qdisc add dev lo root tbf rate 1mbit burst 32kbit latency 400ms"),
        (
            "ipvlan",
            "ip link add d0 type dummy || ip link add d0 type veth peer name d1; "
            "ip link add link d0 name i0 type ipvlan mode l2",
        ),
    ],
)
def test_probe_verdicts_agree_with_trying_the_feature_directly(
    client: docker.DockerClient, checks: dict[str, doctor.Check], feature: str, command: str
) -> None:
    run = identity.RunIdentity.create(worker="test-doctor")
    home_id = run.home_id("doctor-direct")
    container = client.containers.create(
        image_builder.ensure_image(client, "base"),
        entrypoint=["sh", "-c", command],
        command=[],
        labels=run.labels(home_id, identity.ROLE_NETADMIN),
        network_mode="none",
        cap_add=["NET_ADMIN"],
    )
    try:
        container.start()
        works = container.wait(timeout=60)["StatusCode"] == 0
    finally:
        container.remove(force=True)
    assert (checks[feature].status == doctor.OK) == works


def test_doctor_leaves_no_helper_container(client: docker.DockerClient) -> None:
    doctor.run_checks(client)
    owner = identity.Owner.current().label
    leftovers = client.containers.list(
        all=True, filters={"label": [f"{identity.OWNER}={owner}", f"{identity.WORKER}=doctor"]}
    )
    assert leftovers == []


def test_a_failing_helper_is_reported_and_host_files_still_judge(
    client: docker.DockerClient,
) -> None:
    def broken_probe(_client: object, _image: str) -> dict[str, tuple[bool, str]]:
        raise RuntimeError("helper could not start")

    checks = {c.name: c for c in doctor.run_checks(client, probe=broken_probe)}
    assert checks["kernel probes"].status == doctor.WARN
    assert "helper could not start" in checks["kernel probes"].detail
    assert "helper container" not in checks["netem"].method
    assert "tun" in checks


def test_a_changed_recipe_shows_as_not_built_and_doctor_builds_nothing(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    root = tmp_path / "images"
    shutil.copytree(image_builder.default_images_root() / "base", root / "base")
    dockerfile = root / "base" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "LABEL io.cirque.test=doctor\n")
    [check] = doctor.image_checks(client, root)
    assert check.status == doctor.MISSING
    assert "not built" in check.detail
    assert image_builder.ensure_image(client, "base") in check.detail  # an older build
    assert "cirque images build" in check.meaning
    # Doctor built nothing: the changed recipe's own tag does not exist. (Only that tag is
    # looked at: another session on this host may build other images meanwhile.)
    status = image_builder.image_status(client, "base", images_root=root)
    assert status.tag and status.tag in check.detail and not status.present
    assert client.images.list(name=status.tag) == []


def test_cli_prints_the_report() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest_cirque.cli", "doctor"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "cirque doctor"
    assert lines[-1].startswith("summary: ")
    assert any(line.split()[1:2] == ["netem"] for line in lines if line.startswith("  "))


def test_a_broken_recipe_is_an_error_line_not_a_crash(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    root = tmp_path / "images"
    for name, parent in (("loop-a", "loop-b"), ("loop-b", "loop-a")):
        (root / name).mkdir(parents=True)
        (root / name / "Dockerfile").write_text(f"FROM cirque/{parent}\n")
    checks = doctor.image_checks(client, root)
    assert [c.status for c in checks] == [doctor.ERROR, doctor.ERROR]
    assert "FROM cycle" in checks[0].detail


def test_the_engine_can_run_a_wifi_medium(checks: dict[str, doctor.Check]) -> None:
    check = checks["wifi-medium"]
    assert (check.status, check.detail) == (
        doctor.OK,
        "a medium hands nodes its relay on a read-only volume",
    )
    assert "a medium with no capabilities" in check.method


def test_thread_is_reported_available_once_its_image_is_built(
    client: docker.DockerClient,
) -> None:
    image_builder.ensure_image(client, "thread")
    check = {c.name: c for c in doctor.run_checks(client)}["thread"]
    assert check.status == doctor.OK, check
    # The daemon really ran: the version is what ot-ctl answered.
    assert check.detail.startswith("available: OPENTHREAD/openthread-sys-0.4.0; POSIX")
