"""The simulator's own logic, over an in-memory transport that implements the seam.

The real transports and brokers have their own tests; here a fake carries messages so
that schedules, state, methods, failures and the runner can be checked without a peer.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from pytest_cirque.core import waiting
from pytest_cirque.core.errors import DeviceModelError, ScriptError, TransportError, WaitTimeout
from pytest_cirque.device_models import internal_scripts
from pytest_cirque.device_models.model import load_model
from pytest_cirque.device_models.simulator import Simulation, SimulationRunner
from pytest_cirque.device_models.transports.base import (
    DeliveryCounts,
    Message,
    MethodHandler,
    Transport,
)

DATA = Path(__file__).parent / "data"
STOCK_FIRMWARE = Path(load_model("elevator").methods["FirmwareUpdate"].file)


class MemoryTransport(Transport):
    """Keeps what a simulation hands over, in order, for tests to look at."""

    def __init__(self) -> None:
        self.counts = DeliveryCounts()
        self.events: list[tuple] = []  # ("message", Message) | ("properties", id, dict) | ...
        self.device_ids: set[str] = set()
        self.handler: MethodHandler | None = None
        self.started = False
        self.stopped = False
        self._lock = threading.Lock()

    async def start(self, device_ids: Iterable[str]) -> None:
        self.started = True
        self.device_ids |= set(device_ids)

    async def add_devices(self, device_ids: Iterable[str]) -> None:
        self.device_ids |= set(device_ids)

    async def remove_devices(self, device_ids: Iterable[str]) -> None:
        ids = set(device_ids)
        self.device_ids -= ids
        self._record(("removed", sorted(ids)))

    async def send(self, message: Message) -> None:
        if message.device_id not in self.device_ids:
            raise TransportError(f"device {message.device_id} is not connected")
        self.counts.sent += 1
        self._record(("message", message))
        self.counts.delivered += 1

    async def report_properties(self, device_id: str, properties: dict) -> None:
        self._record(("properties", device_id, dict(properties)))

    def on_method(self, handler: MethodHandler) -> None:
        self.handler = handler

    async def stop(self) -> None:
        self.stopped = True

    def _record(self, event: tuple) -> None:
        with self._lock:
            self.events.append(event)

    def messages(self, device_id: str | None = None, schema: str | None = None) -> list[Message]:
        with self._lock:
            events = list(self.events)
        return [
            e[1]
            for e in events
            if e[0] == "message"
            and (device_id is None or e[1].device_id == device_id)
            and (schema is None or e[1].schema == schema)
        ]

    def reported(self, device_id: str) -> list[dict]:
        with self._lock:
            return [e[2] for e in self.events if e[0] == "properties" and e[1] == device_id]


def wait_until(condition: Callable[[], object], what: str, timeout: float = 20) -> None:
    """The project's one wait, polling fast: the simulator's clock runs in milliseconds."""
    waiting.wait_until(condition, what, timeout, max_interval=0.02)


async def wait_async(condition: Callable[[], object], what: str, timeout: float = 20) -> None:
    """The same wait inside the simulation's own loop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise WaitTimeout(f"waited {timeout} s for {what}")
        await asyncio.sleep(0.02)


STATE_JS = """\
"use strict";
function main(context, previousState, previousProperties, params) {
    var update = { ticks: previousState.ticks + 1 };
    if (previousState.break_type) {
        update.ticks = 1.5;
    }
    updateState(update);
}
"""

SET_STATE_JS = """\
"use strict";
// Payload keys become state keys: {"online": false} takes a device offline.
function main(context, previousState, previousProperties) {
    var update = {};
    Object.keys(context).forEach(function (key) {
        if (["currentTime", "deviceId", "deviceModel"].indexOf(key) < 0) {
            update[key] = context[key];
        }
    });
    updateState(update);
    return { set: Object.keys(update).sort() };
}
"""


def write_model(
    folder: Path,
    model_id: str = "sim",
    state_script: str = STATE_JS,
    fast: str = "00:00:00.1",
    slow: str = "00:00:00.3",
) -> Path:
    """A small model whose intervals suit tests; returns its file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{model_id}-state.js").write_text(state_script)
    (folder / "set-state.js").write_text(SET_STATE_JS)
    shutil.copy(STOCK_FIRMWARE, folder / "firmware.js")
    shutil.copy(DATA / "scripts" / "throws.js", folder / "throws.js")
    document = {
        "SchemaVersion": "1.0.0",
        "Id": model_id,
        "Name": f"Model {model_id}",
        "Protocol": "MQTT",
        "Simulation": {
            "InitialState": {"online": True, "ticks": 0, "count": 0},
            "Interval": fast,
            "Scripts": [{"Type": "javascript", "Path": f"{model_id}-state.js"}],
        },
        "Properties": {"Firmware": "1.0", "FirmwareUpdateStatus": ""},
        "Telemetry": [
            {
                "Interval": fast,
                "MessageTemplate": '{"ticks":${ticks}}',
                "MessageSchema": {"Name": "fast;v1", "Fields": {"ticks": "integer"}},
            },
            {
                "Interval": slow,
                "MessageTemplate": '{"online":${online}}',
                "MessageSchema": {"Name": "slow;v1", "Fields": {"online": "boolean"}},
            },
        ],
        "CloudToDeviceMethods": {
            "SetState": {"Type": "javascript", "Path": "set-state.js"},
            "FirmwareUpdate": {"Type": "javascript", "Path": "firmware.js"},
            "Throw": {"Type": "javascript", "Path": "throws.js"},
        },
    }
    path = folder / f"{model_id}.json"
    path.write_text(json.dumps(document, indent=2))
    return path


@pytest.fixture
def model_file(tmp_path):
    return write_model(tmp_path / "model")


@pytest.fixture
def transport():
    return MemoryTransport()


@pytest.fixture
def run_simulation(transport):
    """Start simulations in runner threads; stop every one of them after the test."""
    runners: list[SimulationRunner] = []

    def start(models, count=2, **options) -> Simulation:
        simulation = Simulation(models, count, transport, seed=1, **options)
        runner = SimulationRunner(simulation)
        runners.append(runner)
        runner.start()
        simulation.runner = runner
        return simulation

    yield start
    for runner in runners:
        runner.stop()


def test_devices_send_each_message_on_its_own_interval_with_metadata(
    model_file, transport, run_simulation
):
    simulation = run_simulation(model_file, count=2)
    assert sorted(simulation.devices) == ["sim.0", "sim.1"]
    wait_until(lambda: len(transport.messages("sim.0", "slow;v1")) >= 4, "4 slow messages")
    simulation.runner.stop()
    fast = transport.messages("sim.0", "fast;v1")
    slow = transport.messages("sim.0", "slow;v1")
    assert len(fast) >= 2 * len(slow), (len(fast), len(slow))
    message = fast[-1]
    assert message.model_id == "sim"
    assert message.content_type == "application/json"
    assert message.created.endswith("+00:00")
    assert json.loads(message.body)["ticks"] >= 1
    assert json.loads(slow[0].body) == {"online": True}
    assert transport.stopped


def test_state_scripts_evolve_the_state_which_is_inspectable(model_file, transport, run_simulation):
    simulation = run_simulation(model_file, count=1)
    device = simulation.devices["sim.0"]
    wait_until(lambda: device.state["ticks"] >= 3, "three state ticks")
    assert device.state["count"] == 0  # keys the script leaves alone stay
    assert device.properties == {"Firmware": "1.0", "FirmwareUpdateStatus": ""}
    assert device.online
    assert transport.reported("sim.0")[0] == {"Firmware": "1.0", "FirmwareUpdateStatus": ""}


def test_offline_devices_send_nothing_until_back_online(model_file, transport, run_simulation):
    simulation = run_simulation(model_file, count=2)
    device = simulation.devices["sim.0"]
    wait_until(lambda: transport.messages("sim.0"), "a first message")
    status, response = simulation.runner.call_method("sim.0", "SetState", {"online": False})
    assert (status, response) == (200, {"set": ["online"]})
    assert not device.online
    sent_before = len(transport.messages("sim.0"))
    ticks = device.state["ticks"]
    wait_until(lambda: device.state["ticks"] >= ticks + 4, "four state ticks while offline")
    wait_until(lambda: len(transport.messages("sim.1")) > 10, "the other device sending")
    assert len(transport.messages("sim.0")) <= sent_before + 1  # one may have been in flight
    simulation.runner.call_method("sim.0", "SetState", {"online": True})
    wait_until(lambda: len(transport.messages("sim.0")) > sent_before + 2, "messages again")


def test_a_sleeping_method_holds_up_no_other_device(model_file, transport):
    async def scenario():
        simulation = Simulation(model_file, 2, transport, seed=3)
        await simulation.start()
        try:
            await wait_async(lambda: transport.messages("sim.1"), "a first message")
            before = len(transport.messages("sim.1"))
            status, response = await simulation.call_method(
                "sim.0", "FirmwareUpdate", {"Firmware": "2.0", "StepMilliseconds": 200}
            )
            during = len(transport.messages("sim.1")) - before
            return simulation, status, response, during
        finally:
            await simulation.stop()

    simulation, status, response, during = asyncio.run(scenario())
    assert (status, response) == (200, {"Firmware": "2.0"})
    assert during >= 3, "sim.1 kept sending while sim.0's method slept 600 ms"
    statuses = [p["FirmwareUpdateStatus"] for p in transport.reported("sim.0")]
    assert statuses == ["", "Downloading", "Applying", "Rebooting", "Completed"]
    device = simulation.devices["sim.0"]
    assert device.properties["Firmware"] == "2.0"
    assert device.online
    assert device.recent_log[-1] == "firmware update from 1.0 to 2.0"
    # While applying and rebooting the device was offline: nothing from it in between.
    order = [
        ("p", e[2]["FirmwareUpdateStatus"]) if e[0] == "properties" else ("m", None)
        for e in transport.events
        if (e[0] == "properties" and e[1] == "sim.0")
        or (e[0] == "message" and e[1].device_id == "sim.0")
    ]
    applying = order.index(("p", "Applying"))
    completed = order.index(("p", "Completed"))
    assert ("m", None) not in order[applying + 2 : completed]  # one send may be in flight


def test_method_answers(model_file, transport, run_simulation):
    simulation = run_simulation(model_file, count=1)
    runner = simulation.runner
    status, response = runner.call_method("sim.0", "Reboot")
    assert status == 404
    assert (
        "has no method 'Reboot'; its methods: FirmwareUpdate, SetState, Throw" in response["error"]
    )
    assert runner.call_method("sim.9", "SetState")[0] == 404
    assert runner.call_method("sim.0", "SetState", ["not", "an", "object"])[0] == 400
    status, response = runner.call_method("sim.0", "Throw")
    assert status == 500
    assert "sensor unplugged" in response["error"] and "device sim.0" in response["error"]
    assert simulation.errors[-1] == response["error"]
    assert transport.handler is not None  # methods from the peer reach the same code


def test_a_device_removed_while_its_method_sleeps_gets_410_and_no_more_updates(
    model_file, transport
):
    async def scenario():
        simulation = Simulation(model_file, 2, transport, seed=3)
        await simulation.start()
        try:
            method = asyncio.ensure_future(
                simulation.call_method(
                    "sim.0", "FirmwareUpdate", {"Firmware": "2.0", "StepMilliseconds": 300}
                )
            )
            await wait_async(
                lambda: any(p["FirmwareUpdateStatus"] for p in transport.reported("sim.0")),
                "the update to start",
            )
            await simulation.remove_devices(["sim.0"])
            return await method
        finally:
            await simulation.stop()

    status, response = asyncio.run(scenario())
    assert status == 410
    assert "device sim.0 left while FirmwareUpdate was running" in response["error"]
    statuses = [p["FirmwareUpdateStatus"] for p in transport.reported("sim.0")]
    assert statuses == ["", "Downloading"]


def test_methods_after_stop_are_refused(model_file, transport):
    runner = SimulationRunner(Simulation(model_file, 1, transport))
    runner.start()
    simulation = runner.simulation
    runner.run(simulation.stop())
    assert runner.call_method("sim.0", "SetState", {"x": 1})[0] == 503
    runner.stop()


def test_a_failing_script_stops_only_its_own_device(tmp_path, transport, run_simulation):
    script = (DATA / "scripts" / "throws.js").read_text()
    simulation = run_simulation(write_model(tmp_path, state_script=script), count=3)
    wait_until(lambda: simulation.error_count >= 3, "three failed ticks of sim.0")
    wait_until(
        lambda: all(simulation.devices[d].state["count"] >= 3 for d in ("sim.1", "sim.2")),
        "the other devices ticking",
    )
    assert simulation.devices["sim.0"].state["count"] == 0
    line = simulation.errors[0]
    assert line.startswith(f"{tmp_path / 'sim-state.js'}:5: device sim.0: exception in main")
    assert all("device sim.0" in e for e in simulation.errors)


def test_an_endless_loop_in_one_device_leaves_the_others_running(
    tmp_path, transport, run_simulation
):
    script = (DATA / "scripts" / "infinite_loop.js").read_text()
    simulation = run_simulation(write_model(tmp_path, state_script=script), count=3)
    wait_until(lambda: simulation.error_count >= 2, "two interrupted ticks of sim.0")
    wait_until(lambda: simulation.devices["sim.2"].state["count"] >= 3, "sim.2 ticking")
    wait_until(lambda: len(transport.messages("sim.1")) >= 3, "sim.1 sending")
    assert "time limit of 100 ms exceeded" in simulation.errors[0]
    assert "device sim.0" in simulation.errors[0]


def test_a_message_that_fails_its_schema_is_not_sent_and_is_reported(
    model_file, transport, run_simulation
):
    simulation = run_simulation(model_file, count=2)
    wait_until(lambda: transport.messages("sim.0", "fast;v1"), "a first message")
    simulation.runner.call_method("sim.0", "SetState", {"break_type": True})
    wait_until(lambda: simulation.error_count >= 2, "two failed messages")
    error = simulation.errors[0]
    assert error.startswith(f"{model_file}:")
    assert "model sim: device sim.0: message 'fast;v1': ticks: expected integer" in error
    sent = len(transport.messages("sim.0", "fast;v1"))
    wait_until(lambda: simulation.error_count >= 5, "more failed messages")
    assert len(transport.messages("sim.0", "fast;v1")) <= sent + 1
    assert transport.messages("sim.0", "slow;v1")  # the other message of the model still goes


def test_pause_holds_every_schedule_and_resume_goes_on(model_file, transport, run_simulation):
    simulation = run_simulation(model_file, count=2)
    runner = simulation.runner
    wait_until(lambda: len(transport.messages()) >= 4, "messages before the pause")
    runner.pause()
    assert simulation.paused
    held = len(transport.messages())
    ticks = simulation.devices["sim.0"].state["ticks"]
    time.sleep(0.5)  # the window in which nothing may happen (five intervals)
    assert len(transport.messages()) <= held + 2  # sends already handed over may land
    assert simulation.devices["sim.0"].state["ticks"] == ticks
    runner.resume()
    wait_until(lambda: len(transport.messages()) > held + 4, "messages after resume")


def test_devices_join_and_leave_a_running_simulation(
    model_file, tmp_path, transport, run_simulation
):
    simulation = run_simulation(model_file, count=1)
    runner = simulation.runner
    added = runner.add_devices(model_file, 2)
    assert added == ["sim.1", "sim.2"]
    other = runner.add_devices(write_model(tmp_path / "other", model_id="other"), 1)
    assert other == ["other.0"]
    wait_until(
        lambda: all(transport.messages(d) for d in ["sim.1", "sim.2", "other.0"]),
        "messages from the new devices",
    )
    runner.remove_devices(["sim.1"])
    assert "sim.1" not in simulation.devices
    assert ("removed", ["sim.1"]) in transport.events
    sent = len(transport.messages("sim.1"))
    wait_until(lambda: len(transport.messages("sim.2")) >= 10, "sim.2 sending on")
    assert len(transport.messages("sim.1")) <= sent + 1
    assert not [e for e in simulation.errors if "not connected" in e]
    with pytest.raises(Exception, match=r"unknown devices \['sim.7'\]"):
        runner.remove_devices(["sim.7"])


def test_start_jitter_spreads_the_first_messages(tmp_path, transport, run_simulation):
    model_file = write_model(tmp_path, fast="00:00:30", slow="00:00:30")
    arrivals: dict[str, float] = {}
    send = transport.send

    async def timed_send(message):
        arrivals.setdefault(message.device_id, time.monotonic())
        await send(message)

    transport.send = timed_send
    run_simulation(model_file, count=20, jitter=1.0)
    wait_until(lambda: len(arrivals) == 20, "a first message from each of 20 devices")
    spread = max(arrivals.values()) - min(arrivals.values())
    assert spread > 0.3, f"20 devices with 1 s of jitter all started within {spread:.3f} s"


def test_the_seeds_elevator_runs_unchanged(transport, run_simulation):
    simulation = run_simulation(DATA / "seed_elevator" / "elevator-01.json", count=3, jitter=0)
    wait_until(
        lambda: len({m.device_id for m in transport.messages()}) == 3,
        "a first message from each elevator",
    )
    for message in transport.messages():
        body = json.loads(message.body)
        assert message.schema == "elevator-floor;v1"
        assert isinstance(body["floor"], int)
        assert body["vibration_unit"] == "mm"
    device = simulation.devices["elevator-01.0"]
    assert device.state["temperature"] != 75.0  # the state script ran before the message
    status, _ = simulation.runner.call_method("elevator-01.0", "StartElevator")
    assert status == 200
    assert device.state["moving"] is True


@pytest.mark.parametrize(
    "name", ["elevator", "chiller", "truck", "thermostat", "door-lock", "light"]
)
def test_stock_models_run_and_update_firmware(name, transport, run_simulation):
    simulation = run_simulation(name, count=2, jitter=0)
    model = simulation.models[0]
    schemas = {t.schema.name for t in model.telemetry}
    wait_until(lambda: {m.schema for m in transport.messages()} >= schemas, f"{name} telemetry")
    device_id = f"{model.id}.0"
    status, response = simulation.runner.call_method(
        device_id, "FirmwareUpdate", {"Firmware": "9.9", "StepMilliseconds": 1}
    )
    assert (status, response) == (200, {"Firmware": "9.9"})
    assert simulation.devices[device_id].properties["FirmwareUpdateStatus"] == "Completed"
    assert not simulation.errors


def test_a_bad_script_fails_start_before_anything_connects(transport):
    simulation = Simulation(DATA / "syntax_error.json", 2, transport)
    with pytest.raises(ScriptError, match="SyntaxError"):
        SimulationRunner(simulation).start()
    assert not transport.started


def test_two_models_with_one_id_are_refused(model_file, tmp_path, transport):
    twin = write_model(tmp_path / "twin")
    with pytest.raises(DeviceModelError, match="model id 'sim' is also the id of"):
        Simulation([model_file, twin], 1, transport)


def test_runner_stop_is_safe_twice(model_file, transport):
    runner = SimulationRunner(Simulation(model_file, 1, transport))
    runner.start()
    runner.stop()
    runner.stop()
    assert transport.stopped


def test_internal_scripts_wrap_around():
    rng = random.Random(0)
    params = {"level": {"Min": 0, "Max": 10, "Step": 4}}
    assert internal_scripts.increasing({"level": 8}, params, rng) == {"level": 0}
    assert internal_scripts.increasing({"level": 2}, params, rng) == {"level": 6}
    assert internal_scripts.increasing({}, params, rng) == {"level": 4}
    assert internal_scripts.decreasing({"level": 2}, params, rng) == {"level": 10}
    assert internal_scripts.decreasing({"level": 9}, params, rng) == {"level": 5}
    values = [
        internal_scripts.within_range({}, {"t": {"Min": 5, "Max": 6}}, rng)["t"] for _ in range(200)
    ]
    assert all(5 <= v <= 6 for v in values)
    assert len(set(values)) > 100


def test_internal_scripts_run_in_the_simulation(transport, run_simulation):
    simulation = run_simulation("truck", count=1, jitter=0)
    device = simulation.devices["truck.0"]
    wait_until(lambda: device.state["fuel"] < 100, "fuel going down")
    assert device.state["fuel"] == pytest.approx(99.9)


def test_script_engines_live_and_die_on_the_loop_thread(model_file, transport):
    """QuickJS is not thread-safe: a context is built, used and freed on one thread."""
    simulation = Simulation(model_file, 2, transport, seed=1)
    runner = SimulationRunner(simulation).start()
    try:
        status, _ = runner.call_method("sim.0", "SetState", {"online": True})
        engines = list(simulation._engines.values())
        assert status == 200 and engines
        assert all(engine.owner is runner._thread for engine in engines)
    finally:
        runner.stop()
    assert all(engine.closed for engine in engines) and not simulation._engines
