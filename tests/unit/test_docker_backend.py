"""The backend's pure parts: image references, docker-py's failures as one-line
project errors, and how an exec's output is read (against a stand-in engine on a Unix
socket: no engine needed)."""

from __future__ import annotations

import json
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
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


# --- an exec's output, read off the engine's connection ---------------------------------

UPGRADED = (
    b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
    b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
)


def framed(stream: int, data: bytes) -> bytes:
    """Output as Docker frames it without a TTY: stream, three zero bytes, size, data."""
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


class StandInEngine:
    """Just enough of the Engine API on a Unix socket for execs: create, start attached,
    inspect. ``attached`` gets the connection of each start once the reply headers are
    due, and writes them itself, so a test decides what arrives together."""

    def __init__(self, path: str, attached: Callable[[socket.socket], None]) -> None:
        self._attached = attached
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(path)
        self._server.listen()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        reader = connection.makefile("rb")
        with connection, reader:
            while request := reader.readline():
                headers = {}
                while (line := reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                reader.read(int(headers.get("content-length", 0)))
                method, path = request.decode().split()[:2]
                if path.endswith("/start"):
                    self._attached(connection)
                    return
                if method == "POST" and path.endswith("/exec"):
                    self._reply(connection, 201, {"Id": "e1"})
                else:  # GET .../exec/e1/json
                    self._reply(connection, 200, {"Running": False, "ExitCode": 3, "Pid": 0})

    @staticmethod
    def _reply(connection: socket.socket, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        connection.sendall(
            b"HTTP/1.1 %d OK\r\nContent-Type: application/json\r\n" % status
            + b"Content-Length: %d\r\n\r\n" % len(data)
            + data
        )

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def engine_with() -> Iterator[Callable[..., Backend]]:
    """A backend on a stand-in engine that answers each attached start as told."""
    folder = tempfile.TemporaryDirectory(prefix="cirque-engine-")
    engines: list[StandInEngine] = []

    def start(attached: Callable[[socket.socket], None]) -> Backend:
        path = str(Path(folder.name) / "engine.sock")
        engines.append(StandInEngine(path, attached))
        return Backend(docker.DockerClient(base_url=f"unix://{path}", version="1.41"))

    yield start
    for engine in engines:
        engine.close()
    folder.cleanup()


def test_output_that_arrives_with_the_reply_headers_is_kept(engine_with) -> None:
    # A fast command on a loaded engine: headers and all its output in one read. docker-py's
    # own exec_start reads past the buffer that holds them, and returns nothing.
    backend = engine_with(
        lambda c: c.sendall(UPGRADED + framed(1, b"out\n") + framed(2, b"err\n") + framed(1, b"2"))
    )
    result = backend.exec("c1", ["true"], node="n1")
    assert (result.stdout, result.stderr, result.exit_code) == ("out\n2", "err\n", 3)
    assert list(backend.exec_stream("c1", ["true"], node="n1")) == [b"out\n", b"2"]
    background = backend.exec_background("c1", ["true"], node="n1").wait(timeout=10)
    assert (background.stdout, background.stderr) == ("out\n2", "err\n")


def test_an_exec_session_reads_stdout_lines_across_frames(engine_with) -> None:
    asked: list[bytes] = []

    def converse(connection: socket.socket) -> None:
        connection.sendall(UPGRADED + framed(1, b'{"ok": tr') + framed(2, b"noise\n"))
        stdin = connection.makefile("rb")
        asked.append(stdin.readline())
        connection.sendall(framed(1, b"ue}\n{"))
        asked.append(stdin.readline())
        connection.sendall(framed(1, b'"ok": false}\n'))
        stdin.readline()
        connection.shutdown(socket.SHUT_WR)  # the process in the container went away

    session = engine_with(converse).open_session("c1", ["relay"], timeout=5)
    try:
        assert session.ask('{"op": "ping"}') == '{"ok": true}'
        assert session.ask("again") == '{"ok": false}'
        assert asked == [b'{"op": "ping"}\n', b"again\n"]
        with pytest.raises(OSError, match="the session ended"):
            session.ask("more")
    finally:
        session.close()
