"""pytest fixtures of the device-model simulator: real brokers, fleets and recorders.

- ``mqtt_broker``, ``amqp_broker``: a real mosquitto / RabbitMQ per session (so per
  xdist worker) on a free loopback port. ``broker.stop()`` and ``broker.start()`` play
  a broker outage on the same port.
- ``http_endpoint``: a real local HTTP server recording every POST (a recorder too).
- ``telemetry`` (MQTT) and ``amqp_telemetry``: recorders subscribed before the test's
  devices start, with waiting assertions (``telemetry.wait_for(3, schema=...,
  device=..., where={...})``).
- ``device_simulation``: a factory ``device_simulation(models, count, protocol=...,
  broker=...)`` returning a started SimulationRunner, stopped after the test.
- ``assert_method``: call a device method (API or MQTT request topic) and assert on its
  status, its response and the state it left.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from pytest_cirque.core.errors import CirqueError, WaitTimeout
from pytest_cirque.core.waiting import wait_until

from .brokers import Broker, start_amqp_broker, start_mqtt_broker
from .recorders import AmqpRecorder, HttpEndpoint, MqttRecorder, TelemetryRecorder, _matches


@pytest.fixture(scope="session")
def mqtt_broker() -> Iterator[Broker]:
    """A real mosquitto for this session (one per xdist worker) on a free loopback port."""
    broker = start_mqtt_broker()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture(scope="session")
def amqp_broker() -> Iterator[Broker]:
    """A real RabbitMQ node for this session (one per xdist worker) on a free loopback port."""
    broker = start_amqp_broker()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def http_endpoint() -> Iterator[HttpEndpoint]:
    """A real local HTTP server that records the POSTs and PUTs it receives."""
    endpoint = HttpEndpoint()
    try:
        yield endpoint
    finally:
        endpoint.close()


@pytest.fixture
def telemetry(mqtt_broker: Broker) -> Iterator[MqttRecorder]:
    """A recorder subscribed to every device topic of the session's MQTT broker."""
    recorder = MqttRecorder(mqtt_broker.url)
    recorder.explain_with(lambda: _broker_log(mqtt_broker))
    try:
        yield recorder
    finally:
        recorder.close()


@pytest.fixture
def amqp_telemetry(amqp_broker: Broker) -> Iterator[AmqpRecorder]:
    """A recorder with its own queue bound to the devices' exchange of the session's RabbitMQ."""
    recorder = AmqpRecorder(amqp_broker.url)
    try:
        yield recorder
    finally:
        recorder.close()


def _broker_log(broker: Broker) -> str:
    log = broker.log(10)
    return f"broker {broker.url} log:\n{log}" if log.strip() else ""


#: Recorder fixtures whose failed waits should tell about the test's simulations.
_RECORDERS = ("telemetry", "amqp_telemetry", "http_endpoint")


def describe_simulation(runner: Any) -> str:
    """A simulation in a few lines: devices, delivery counts, the last transport error and
    the latest script errors; what a failed wait for telemetry needs to be understood."""
    simulation = runner.simulation
    transport = simulation.transport
    counts = transport.counts
    devices = list(simulation.devices.values())
    models = ", ".join(sorted({d.model.id for d in devices})) or "no devices"
    lines = [
        f"simulation of {models}: {len(devices)} device(s), "
        f"{sum(d.online for d in devices)} online; transport {transport.url}: "
        f"sent {counts.sent}, delivered {counts.delivered}, failed {counts.failed}, "
        f"reconnects {counts.reconnects}"
    ]
    last_error = getattr(transport, "last_error", "")
    if last_error:
        lines.append(f"last transport error: {last_error}")
    if simulation.error_count:
        lines.append(f"script errors: {simulation.error_count}, latest:")
        lines.extend(f"  {line}" for line in list(simulation.errors)[-3:])
    return "\n".join(lines)


_DEFAULT_PEERS = {"mqtt": "mqtt_broker", "amqp": "amqp_broker", "http": "http_endpoint"}


def _peer_url(peer: Any) -> str:
    if isinstance(peer, str):
        return peer
    url = getattr(peer, "url", None)
    if not isinstance(url, str):
        raise CirqueError(f"broker {peer!r} has no url: pass a URL, a broker or an endpoint")
    return url


@pytest.fixture
def device_simulation(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """Factory of running simulations, each stopped (and its retained state cleared) after
    the test.

    ``device_simulation(models, count=1, protocol=None, broker=None, *, jitter=None,
    seed=None, proto=None, **transport_options)``: models are stock names, files or
    DeviceModel objects; ``protocol`` defaults to the models' Protocol; ``broker`` is a
    URL, a broker or an endpoint, by default the session's broker of that protocol (or
    the test's ``http_endpoint``); ``proto`` gives the schemas of Protobuf messages (a
    .proto file, a _pb2.py file, a module name or an imported _pb2 module, or a list).
    """
    from .model import DeviceModel, load_model, proto_catalog
    from .simulator import Simulation, SimulationRunner
    from .transports.base import make_transport

    runners: list[Any] = []

    def make(
        models: Any,
        count: int | Mapping[str, int] = 1,
        protocol: str | None = None,
        broker: Any = None,
        *,
        jitter: float | None = None,
        seed: int | None = None,
        proto: Any = None,
        **transport_options: Any,
    ) -> SimulationRunner:
        sources = models if isinstance(models, list | tuple) else [models]
        catalog = proto_catalog(proto)
        loaded = [
            m if isinstance(m, DeviceModel) else load_model(m, proto=catalog) for m in sources
        ]
        if protocol is None:
            protocols = sorted({m.protocol for m in loaded})
            if len(protocols) != 1:
                raise CirqueError(
                    f"the models speak {', '.join(protocols)}: pass protocol= to choose one"
                )
            protocol = protocols[0]
        name = protocol.lower()
        if name not in _DEFAULT_PEERS:
            raise CirqueError(f"unknown protocol {protocol!r}: use one of MQTT, HTTP, AMQP")
        peer = broker if broker is not None else request.getfixturevalue(_DEFAULT_PEERS[name])
        if name == "mqtt" and runners:
            # A second fleet of the same models has the same device ids: distinct client
            # ids keep the broker from disconnecting one fleet's device for the other's.
            transport_options.setdefault("client_id_prefix", f"sim{len(runners)}-")
        transport = make_transport(name, _peer_url(peer), **transport_options)
        simulation = Simulation(loaded, count, transport, jitter=jitter, seed=seed, proto=catalog)
        runner = SimulationRunner(simulation)
        runner.start()
        runners.append(runner)
        for name in _RECORDERS:
            if name in request.fixturenames:
                request.getfixturevalue(name).explain_with(lambda: describe_simulation(runner))
        return runner

    try:
        yield make
    finally:
        for runner in reversed(runners):
            with contextlib.suppress(Exception):
                runner.stop()
            _clear_retained(runner)


def _clear_retained(runner: Any) -> None:
    """Remove the retained property reports of an MQTT simulation's devices.

    The session broker outlives the test; without this the next test's recorder would see
    the last test's device properties.
    """
    transport = runner.simulation.transport
    topic_template = getattr(transport, "properties_topic", None)
    if topic_template is None:
        return
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    try:
        client.connect(transport.host, transport.port)
    except OSError:
        return  # the broker is down (a test stopped it): nothing retained can be cleared now
    client.loop_start()
    try:
        infos = [
            client.publish(topic_template.format(device_id=d), b"", qos=1, retain=True)
            for d in runner.simulation.devices
        ]
        for info in infos:
            info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def check_method(
    runner: Any,
    device_id: str,
    method: str,
    payload: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    response: Mapping[str, Any] | None = None,
    state: Mapping[str, Any] | None = None,
    via: MqttRecorder | None = None,
    timeout: float = 30.0,
) -> dict:
    """Call a method and assert on what it answered and the state it left; return the answer.

    ``via`` calls over the MQTT request topic (a ``telemetry`` recorder) instead of the
    API. ``response`` and ``state`` map keys to expected values or predicates; the state
    is waited for (up to ``timeout``), since a method may finish changing it after it
    answered.
    """
    if via is not None:
        got_status, got = via.call_method(device_id, method, payload, timeout=timeout)
    else:
        got_status, got = runner.call_method(device_id, method, payload, timeout=timeout)
    where = f"method {method} on {device_id}"
    assert got_status == status, f"{where} answered {got_status} {got}, expected {status}"
    for key, expected in (response or {}).items():
        assert key in got, f"{where} answered {got}: no {key!r}"
        assert _matches(got[key], expected), (
            f"{where} answered {key}={got[key]!r}: not {expected!r}"
        )
    if state:
        _wait_for_state(runner, device_id, state, where, timeout)
    return got


def _wait_for_state(runner, device_id, expected: Mapping[str, Any], where: str, timeout) -> None:
    def snapshot() -> dict:
        return runner.call(lambda: dict(runner.simulation.devices[device_id].state))

    def reached() -> bool:
        current = snapshot()
        return all(k in current and _matches(current[k], v) for k, v in expected.items())

    try:
        wait_until(reached, f"state {dict(expected)!r}", timeout, ignore=())
    except WaitTimeout as exc:
        raise WaitTimeout(
            f"{exc.args[0]}; the state is {snapshot()!r} after {where}", log=exc.log
        ) from None


@pytest.fixture
def assert_method() -> Callable[..., dict]:
    """``assert_method(sim, device_id, method, payload, status=200, response={...},
    state={...}, via=telemetry)``: see ``check_method``."""
    return check_method


__all__ = [
    "TelemetryRecorder",
    "amqp_broker",
    "amqp_telemetry",
    "assert_method",
    "check_method",
    "device_simulation",
    "http_endpoint",
    "mqtt_broker",
    "telemetry",
]
