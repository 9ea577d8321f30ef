"""The backend's pure parts: image references, and docker-py's failures as one-line
project errors (no engine needed)."""

from __future__ import annotations

import docker.errors
import pytest
import requests.exceptions

from pytest_cirque.core import docker_backend
from pytest_cirque.core.docker_backend import Backend, _engine, _split_reference, as_backend
from pytest_cirque.core.errors import (
    CirqueError,
    DockerUnavailable,
    EngineError,
    ImageError,
    StaleNetwork,
    SubnetTaken,
)


@pytest.mark.parametrize(
    ("ref", "parts"),
    [
        ("debian:bookworm-slim", ("debian", "bookworm-slim")),
        ("cirque/base:0123456789ab", ("cirque/base", "0123456789ab")),
        ("busybox", ("busybox", "latest")),
        ("registry.local:5000/team/app", ("registry.local:5000/team/app", "latest")),
        ("registry.local:5000/team/app:1.2", ("registry.local:5000/team/app", "1.2")),
    ],
)
def test_references_split_into_repository_and_tag(ref: str, parts: tuple[str, str]) -> None:
    assert _split_reference(ref) == parts


def test_a_refusal_is_one_line_of_the_kind_asked_for() -> None:
    refusal = docker.errors.APIError("500", explanation="no space left on device\ntrace...")
    with pytest.raises(ImageError) as caught, _engine("building cirque/x:1", ImageError):
        raise refusal
    assert str(caught.value) == (
        "Docker refused the request while building cirque/x:1: no space left on device"
    )
    with pytest.raises(EngineError), _engine("listing containers"):
        raise refusal


def test_a_lost_engine_is_docker_unavailable_in_one_line() -> None:
    lost = requests.exceptions.ConnectionError("Connection refused\nmore")
    with pytest.raises(DockerUnavailable) as caught, _engine("looking for image x"):
        raise lost
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("Docker engine unreachable while looking for image x")
    assert message.endswith("start Docker or set DOCKER_HOST")


def test_other_errors_pass_through_untouched() -> None:
    with pytest.raises(KeyError), _engine("anything"):
        raise KeyError("x")


def test_a_backend_is_made_without_asking_the_engine() -> None:
    backend = Backend(None)
    assert as_backend(backend) is backend
    with pytest.raises(AttributeError):
        backend.api  # noqa: B018 (asking needs a client)


def test_network_errors_are_project_errors_still_importable_from_the_backend() -> None:
    assert docker_backend.SubnetTaken is SubnetTaken
    assert docker_backend.StaleNetwork is StaleNetwork
    assert issubclass(SubnetTaken, CirqueError) and issubclass(StaleNetwork, EngineError)
