"""Test brokers: each on its own free loopback port, restartable in place, cleaned up."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_cirque.core import identity
from pytest_cirque.core.docker_backend import connect_backend
from pytest_cirque.core.errors import CirqueError, WaitTimeout
from pytest_cirque.core.waiting import wait_until
from pytest_cirque.device_models.brokers import (
    MosquittoContainer,
    MosquittoProcess,
    RabbitMQProcess,
    free_port,
    mosquitto_config,
)
from pytest_cirque.device_models.recorders import MqttRecorder


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def publish_one(url: str, topic: str, payload: bytes) -> None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    from pytest_cirque.device_models.transports.mqtt import parse_mqtt_url

    host, port = parse_mqtt_url(url)
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    client.connect(host, port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def test_two_mosquittos_get_their_own_ports_and_directories():
    with MosquittoProcess() as first, MosquittoProcess() as second:
        assert first.port != second.port and first.workdir != second.workdir
        assert accepts(first.port) and accepts(second.port)
        assert first.url == f"mqtt://127.0.0.1:{first.port}"
    assert not accepts(first.port) and not accepts(second.port)
    assert not first.workdir.exists() and not second.workdir.exists()


def test_mosquitto_restarts_on_the_same_port_and_keeps_sessions(tmp_path):
    broker = MosquittoProcess()
    broker.start()
    try:
        recorder = MqttRecorder(broker.url)
        try:
            port = broker.port
            broker.stop()
            assert not accepts(port)
            broker.start()
            assert broker.port == port and accepts(port)
            # Published before the recorder is back: its saved session queues it.
            publish_one(broker.url, "devices/kept-1/messages/events", b'{"n":1}')
            recorder.wait_connected()
            assert recorder.wait_for(1, device="kept-1")[0].json == {"n": 1}
        finally:
            recorder.close()
    finally:
        broker.close()


def test_mosquitto_on_a_taken_port_is_refused():
    with MosquittoProcess() as running:
        clash = MosquittoProcess(port=running.port)  # the port is taken
        try:
            with pytest.raises(CirqueError, match="port is already in use") as error:
                clash.start(timeout=20)
            assert f"127.0.0.1:{running.port}" in str(error.value)
        finally:
            clash.close()


def test_mosquitto_that_exits_fails_with_its_log():
    broker = MosquittoProcess(binary="/bin/false")
    try:
        with pytest.raises(WaitTimeout, match="exited while starting"):
            broker.start(timeout=20)
    finally:
        broker.close()


def test_mosquitto_config_is_loopback_only_with_persistence():
    text = mosquitto_config(1888, "/data", "/data/log", user="tester")
    assert "listener 1888 127.0.0.1" in text.splitlines()
    assert "persistence true" in text and "persistence_location /data/" in text
    assert text.splitlines()[0] == "user tester"


@pytest.mark.skipif(not RabbitMQProcess.available(), reason="rabbitmq-server not installed")
def test_rabbitmq_node_starts_stops_and_restarts_on_its_port():
    broker = RabbitMQProcess()
    try:
        broker.start()
        assert accepts(broker.port)
        assert broker.url == f"amqp://guest:guest@127.0.0.1:{broker.port}/"
        broker.stop()
        assert not accepts(broker.port)
        broker.start()
        assert accepts(broker.port)
    finally:
        broker.close()
    assert not broker.workdir.exists()


def test_mosquitto_container_has_its_own_open_files_limit():
    """The container broker (used where the host has no mosquitto, and for 20,000
    connections) is labelled, gets its nofile limit, and is removed by stop."""
    import docker

    client = docker.from_env()
    broker = MosquittoContainer(nofile=16384, run_id="brkrtest")
    try:
        broker.start(timeout=600)  # the first use builds images/mqtt-broker
        container = client.containers.get(broker._container)
        assert container.name == broker.container_name
        assert container.labels[identity.RUN] == "brkrtest"
        assert container.labels[identity.ROLE] == identity.ROLE_MQTT_BROKER
        assert container.labels[identity.HOME] == broker.home_id
        # The owner is this process, in the form cleanup can judge.
        assert identity.Owner.from_label(container.labels[identity.OWNER]) == (
            identity.Owner.current()
        )
        limits = container.attrs["HostConfig"]["Ulimits"]
        assert {"Name": "nofile", "Soft": 16384, "Hard": 16384} in limits
        publish_one(broker.url, "devices/in-container/messages/events", b"{}")
        name = container.name
    finally:
        broker.close()
    assert not client.containers.list(all=True, filters={"name": name})


def test_session_broker_in_a_container_when_asked_and_removed_after(pytester, monkeypatch):
    """Where the host has no mosquitto the session broker is a container: forced here."""
    import docker

    monkeypatch.setenv("CIRQUE_MQTT_BROKER", "container")
    pytester.makepyfile(
        """
        from pytest_cirque.device_models.brokers import MosquittoContainer

        def test_fleet_on_a_container_broker(mqtt_broker, device_simulation, telemetry):
            assert isinstance(mqtt_broker, MosquittoContainer)
            with open("container-name", "w") as out:
                out.write(mqtt_broker.container_name)
            device_simulation("light", 1, jitter=0)
            telemetry.wait_for(1, device="light.0")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    name = (pytester.path / "container-name").read_text()
    client = docker.from_env()
    assert not client.containers.list(all=True, filters={"name": name})


BROKER_VICTIM = """
import sys
import threading

from pytest_cirque.device_models.brokers import MosquittoContainer

broker = MosquittoContainer(run_id=sys.argv[1])
broker.start(timeout=600)
with open(sys.argv[2], "w") as ready:
    ready.write(broker.container_name)
threading.Event().wait()  # until killed
"""


def test_a_container_broker_left_by_kill_9_is_reaped(tmp_path: Path) -> None:
    """A process that started a container broker and was killed (-9) leaves it running
    with an owner label of a dead process: `cirque reap` removes it."""
    backend = connect_backend()
    run_id = identity.new_run_id()
    selector = [f"{identity.RUN}={run_id}"]
    ready = tmp_path / "ready"
    script = tmp_path / "broker_victim.py"
    script.write_text(BROKER_VICTIM)
    errors = tmp_path / "stderr"
    with errors.open("w") as stderr:
        victim = subprocess.Popen(
            [sys.executable, str(script), run_id, str(ready)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )

    def started() -> str | bool:
        if victim.poll() is not None:
            raise AssertionError(f"the broker's process exited: {errors.read_text()[-2000:]}")
        return ready.exists() and ready.read_text().strip()

    try:
        name = wait_until(started, "the child process to start its broker", 600)
        [container] = backend.containers(selector)
        assert (container.name, container.state) == (name, "running")
        owner = identity.Owner.from_label(container.labels[identity.OWNER])
        assert owner is not None and owner.pid == victim.pid and owner.is_alive()
        victim.kill()  # SIGKILL: the broker's stop never runs
        victim.wait()
        assert not owner.is_alive()
        assert backend.containers(selector) != []  # left behind, until reaped

        started = time.time()
        result = subprocess.run(
            [sys.executable, "-m", "pytest_cirque.cli", "reap"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        ended = time.time()
        assert result.returncode == 0, result.stderr
        assert backend.containers(selector) == []
        # Another session starting on this host reaps dead runs too, and may get there
        # first, before or while ours lists what is dead: then the engine's own record says
        # it was destroyed before our reap ended. Otherwise our reap must have removed it.
        if f"removed {name}" not in result.stdout.splitlines():
            destroyed = [
                event["timeNano"] / 1e9
                for event in backend.client.events(
                    since=int(started) - 60,
                    until=int(ended) + 1,
                    filters={"container": container.id, "event": "destroy"},
                    decode=True,
                )
            ]
            assert destroyed and destroyed[0] < ended, result.stdout
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
        for leftover in backend.containers(selector):
            backend.remove_container(leftover.id)


PROCESS_VICTIM = """
import sys
import threading

from pytest_cirque.device_models.brokers import MosquittoProcess

broker = MosquittoProcess()
broker.start()
with open(sys.argv[1], "w") as ready:
    ready.write(f"{broker._process.pid} {broker.port} {broker.workdir}")
threading.Event().wait()  # until killed
"""


def private_tmp(tmp_path: Path) -> dict[str, str]:
    """An environment whose temporary folder is this test's own: run folders made there
    are seen by no other session's reap (which would end the broker first)."""
    folder = tmp_path / "tmp"
    folder.mkdir(exist_ok=True)
    return {**os.environ, "TMPDIR": str(folder), "CIRQUE_NO_WATCHDOG": "1"}


def start_victim(
    tmp_path: Path, source: str, *args: str
) -> tuple[subprocess.Popen[bytes], list[str]]:
    """A child process running ``source`` that writes what it started to a ready file."""
    ready = tmp_path / "ready"
    script = tmp_path / "victim.py"
    script.write_text(source)
    victim = subprocess.Popen(
        [sys.executable, str(script), *args, str(ready)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Not the watchdog's business here: the test checks what reap does on its own.
        env=private_tmp(tmp_path),
    )

    def started() -> list[str] | None:
        if victim.poll() is not None:
            raise AssertionError(f"the child exited with {victim.returncode}")
        return ready.read_text().split() if ready.exists() and ready.read_text() else None

    return victim, wait_until(started, "the child process to start its broker", 120)


def alive(pid: int) -> bool:
    return identity.process_start_time(pid) is not None


def test_a_host_broker_left_by_kill_9_is_ended_and_its_folder_removed(tmp_path: Path) -> None:
    """A run killed (-9) during a simulation leaves its mosquitto with parent 1 and its
    folder in /tmp: `cirque reap` ends that process, by pid and start time, and removes
    the folder; nothing of a live run is touched."""
    victim, (pid, port, workdir) = start_victim(tmp_path, PROCESS_VICTIM)
    try:
        assert alive(int(pid)) and accepts(int(port)) and Path(workdir).is_dir()
        victim.kill()
        victim.wait()
        assert alive(int(pid)), "mosquitto outlives its killed owner until reaped"
        result = subprocess.run(
            [sys.executable, "-m", "pytest_cirque.cli", "reap"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=private_tmp(tmp_path),
        )
        assert result.returncode == 0, result.stderr
        assert f"removed process {pid}" in result.stdout.splitlines()
        wait_until(lambda: not alive(int(pid)), f"mosquitto {pid} to be gone", 30)
        assert not accepts(int(port)) and not Path(workdir).exists()
    finally:
        if victim.poll() is None:
            victim.kill()
        if alive(int(pid)):
            os.kill(int(pid), signal.SIGKILL)


def test_sigterm_of_the_broker_command_stops_its_broker(tmp_path: Path) -> None:
    """`cirque devices broker` ends on SIGTERM as on Ctrl-C: its mosquitto goes too."""
    port = str(free_port())
    command = subprocess.Popen(
        [sys.executable, "-m", "pytest_cirque.cli", "devices", "broker", "--port", port],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert command.stdout is not None
        assert command.stdout.readline().strip() == f"broker ready: mqtt://127.0.0.1:{port}"
        assert accepts(int(port))
        command.send_signal(signal.SIGTERM)
        assert command.wait(timeout=60) == 0
        # A mosquitto left running would still accept on its port.
        wait_until(lambda: not accepts(int(port)), f"port {port} to be closed", 30)
    finally:
        if command.poll() is None:
            command.kill()
