"""Test brokers: each on its own free loopback port, restartable in place, cleaned up."""

from __future__ import annotations

import socket

import pytest

from pytest_cirque.core.errors import CirqueError, WaitTimeout
from pytest_cirque.device_models.brokers import (
    MosquittoContainer,
    MosquittoProcess,
    RabbitMQProcess,
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
    broker = MosquittoContainer(nofile=16384, run_id="brokertest")
    try:
        broker.start(timeout=600)  # the first use builds images/mqtt-broker
        container = broker._container
        assert container.labels["io.cirque.run"] == "brokertest"
        assert {"io.cirque.home", "io.cirque.owner"} <= set(container.labels)
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
                out.write(mqtt_broker._container.name)
            device_simulation("light", 1, jitter=0)
            telemetry.wait_for(1, device="light.0")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    name = (pytester.path / "container-name").read_text()
    client = docker.from_env()
    assert not client.containers.list(all=True, filters={"name": name})
