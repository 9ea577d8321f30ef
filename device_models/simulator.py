"""The simulator: many devices of some models, on schedules, in one asyncio loop.

One task drives every device: a schedule of (due time, device, timer) entries, where a
timer is the model's state scripts or one of its telemetry messages, each on its own
interval. That keeps a device down to its state, its properties and a few entries (no task,
thread or connection of its own here), so 20,000 devices fit in one process (see
benchmarks/bench_device_memory.py). Schedules do not drift: the next run is due one
interval after the previous due time, not after the previous run. Each device starts
at a random offset within its model's shortest interval (or ``jitter`` seconds), so a
fleet does not fire all at once.

A device whose state has ``online`` false keeps running its state scripts but sends no
telemetry until a script or method sets it true again. Script failures never stop the
simulation: each is recorded in ``errors`` as one line and that device goes on at its
next tick. Sends never hold up the schedule: a transport that only queues takes each
message at once (``Transport.send_now``), any other gets it in a task; either way the
transport counts every message as delivered or failed.

The schedule keeps its entries in buckets of one millisecond (``_Schedule``), so a
timer costs a list append and no heap operation of its own: with tens of thousands of
entries, a heap's pop alone cost more than rendering the message. A timer fires at the
end of its millisecond, never early. The loop sleeps until the next bucket is due (one
timer handle per wake-up, not a ``wait_for`` per timer), then fires what is due in one
pass, yielding to the transport's I/O every ``_FIRE_BATCH`` timers. CPU per message is
what limits a simulator process (see benchmarks/bench_simulator_cpu.py).

``SimulationRunner`` hosts a simulation's loop in a thread, for synchronous pytest code
and the command line.

The script engines (one QuickJS context per model) live and die on the loop's thread:
they are built there on first use, and ``stop`` closes them there. QuickJS is not
thread-safe, even for a runtime touched by different threads at different times, so a
context must never be freed by whichever thread's garbage collection finds it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import heapq
import logging
import random
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pytest_cirque.core.errors import CirqueError, DeviceModelError, ScriptError, TelemetryProblem
from pytest_cirque.device_models import internal_scripts, telemetry
from pytest_cirque.device_models.engine import ModelEngine, ScriptLimits
from pytest_cirque.device_models.model import DeviceModel, ProtoSources, load_model, proto_catalog
from pytest_cirque.device_models.telemetry import ProtoCatalog
from pytest_cirque.device_models.transports.base import Message, Transport

log = logging.getLogger(__name__)
script_log = logging.getLogger("pytest_cirque.device_models.script")

_STATE_TIMER = -1  # heap timer index of the state scripts; 0.. are telemetry messages
_RECENT_LOG_LINES = 20
_MAX_ERRORS_KEPT = 1000
_LATENESS_SAMPLES = 100_000
_STOP_FLUSH_SECONDS = 10.0
_FIRE_BATCH = 256  # timers fired between two yields to the loop's I/O

ModelSource = DeviceModel | str | Path


class Device:
    """One simulated device: its model, state and properties, inspectable while it runs."""

    __slots__ = ("alive", "id", "model", "properties", "recent_log", "state")

    def __init__(self, device_id: str, model: DeviceModel) -> None:
        self.id = device_id
        self.model = model
        self.state: dict[str, Any] = dict(model.initial_state)
        self.properties: dict[str, Any] = dict(model.properties)
        self.recent_log: collections.deque[str] | None = None  # created on first log line
        self.alive = True

    @property
    def online(self) -> bool:
        """Whether the device sends telemetry (the state's ``online`` flag; true if absent)."""
        return self.state.get("online", True) is not False

    def __repr__(self) -> str:
        return f"Device({self.id!r}, model={self.model.id!r}, online={self.online})"


def _as_models(
    models: ModelSource | Iterable[ModelSource], proto: ProtoSources | ProtoCatalog = None
) -> list[DeviceModel]:
    if isinstance(models, DeviceModel | str | Path):
        models = [models]
    catalog = proto_catalog(proto)  # loaded once for every model
    loaded = [m if isinstance(m, DeviceModel) else load_model(m, proto=catalog) for m in models]
    seen: dict[str, DeviceModel] = {}
    for model in loaded:
        other = seen.setdefault(model.id, model)
        if other is not model:
            raise DeviceModelError(
                f"{model.source}: model id {model.id!r} is also the id of {other.source}; "
                "give each model of a simulation its own Id"
            )
    return loaded


class _Schedule:
    """Timer entries (due, device, timer) in buckets of one millisecond, in order.

    A bucket is ready at the end of its millisecond; the heap holds one key per bucket,
    not one per entry. Within a bucket, entries keep the order they were pushed in.
    """

    __slots__ = ("_buckets", "_ticks")

    def __init__(self) -> None:
        self._buckets: dict[int, list[tuple[float, Device, int]]] = {}
        self._ticks: list[int] = []  # heap of the buckets' keys (milliseconds)

    def __bool__(self) -> bool:
        return bool(self._ticks)

    def push(self, due: float, device: Device, timer: int) -> None:
        tick = int(due * 1000) + 1  # ready once the millisecond ``due`` falls in is over
        bucket = self._buckets.get(tick)
        if bucket is None:
            self._buckets[tick] = [(due, device, timer)]
            heapq.heappush(self._ticks, tick)
        else:
            bucket.append((due, device, timer))

    def next_ready(self) -> float:
        """When the earliest bucket is ready (loop time, seconds); call only when not empty."""
        return self._ticks[0] / 1000

    def pop_ready(self, now: float, limit: int) -> list[tuple[float, Device, int]]:
        """Take up to ``limit`` entries of the buckets ready by ``now``, earliest first."""
        ready: list[tuple[float, Device, int]] = []
        ticks, buckets = self._ticks, self._buckets
        while ticks and ticks[0] <= now * 1000 and len(ready) < limit:
            bucket = buckets[ticks[0]]
            room = limit - len(ready)
            if len(bucket) <= room:
                ready += bucket
                del buckets[heapq.heappop(ticks)]
            else:
                ready += bucket[:room]
                del bucket[:room]
        return ready

    def shift(self, seconds: float) -> None:
        """Move every entry later by ``seconds`` (after a pause), keeping their order."""
        entries = [e for tick in sorted(self._buckets) for e in self._buckets[tick]]
        self._buckets, self._ticks = {}, []
        for due, device, timer in entries:
            self.push(due + seconds, device, timer)


class Simulation:
    """Devices of some models, sending telemetry through one transport.

    ``count`` is the number of devices per model, or a mapping of model id to count.
    ``jitter`` bounds each device's random start offset in seconds (default: its model's
    shortest interval). ``seed`` makes the offsets and the scripts' random numbers
    repeatable. ``proto`` gives the schemas of Protobuf messages of models given by path
    or name (.proto files, _pb2 modules; see ``model.proto_catalog``).

    To look at while it runs: ``devices`` (id -> Device), ``errors`` (the last script and
    message failures, one line each; ``error_count`` counts them all),
    ``transport.counts`` (sent, delivered, failed), ``messages_rendered``, and
    ``lateness`` (seconds each recent message ran behind its schedule).
    """

    def __init__(
        self,
        models: ModelSource | Iterable[ModelSource],
        count: int | Mapping[str, int],
        transport: Transport,
        *,
        jitter: float | None = None,
        seed: int | None = None,
        limits: ScriptLimits | None = None,
        proto: ProtoSources | ProtoCatalog = None,
    ) -> None:
        self.proto = proto_catalog(proto)
        self.models = _as_models(models, self.proto)
        counts = count if isinstance(count, Mapping) else {m.id: count for m in self.models}
        unknown = set(counts) - {m.id for m in self.models}
        if unknown:
            raise CirqueError(f"device counts name unknown model ids {sorted(unknown)}")
        if any(not isinstance(n, int) or n < 0 for n in counts.values()):
            raise CirqueError(f"device counts must be whole numbers >= 0 (got {dict(counts)})")
        self._initial_counts = dict(counts)
        self.transport = transport
        self.jitter = jitter
        self.limits = limits or ScriptLimits()
        self.devices: dict[str, Device] = {}
        self.errors: collections.deque[str] = collections.deque(maxlen=_MAX_ERRORS_KEPT)
        self.error_count = 0
        self.messages_rendered = 0
        self.lateness: collections.deque[float] = collections.deque(maxlen=_LATENESS_SAMPLES)
        self._rng = random.Random(seed)
        self._engines: dict[str, ModelEngine] = {}
        self._next_index: dict[str, int] = collections.defaultdict(int)
        self._schedule = _Schedule()
        self._tasks: set[asyncio.Task] = set()
        self._scheduler: asyncio.Task | None = None
        self._wakeup: asyncio.Event | None = None
        self._created_ms = -1  # the millisecond _created_text was formatted for
        self._created_text = ""
        self._running: asyncio.Event | None = None
        self._paused_at: float | None = None
        self._started = False
        self._stopped = False

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Compile the scripts, connect the devices and start their schedules."""
        if self._started:
            raise CirqueError("this simulation was already started; build a new Simulation")
        for model in self.models:
            self._engine(model)  # a script error stops here, before anything connects
        self._started = True
        self._wakeup = asyncio.Event()
        self._running = asyncio.Event()
        self._running.set()
        devices = [
            self._new_device(model)
            for model in self.models
            for _ in range(self._initial_counts.get(model.id, 0))
        ]
        self.transport.on_method(self.call_method)
        try:
            await self.transport.start([d.id for d in devices])
        except BaseException:
            with contextlib.suppress(Exception):
                await self.transport.stop()  # whatever did connect is closed again
            self._stopped = True
            raise
        await self._join(devices)
        self._scheduler = asyncio.create_task(self._schedule_loop(), name="cirque-simulation")

    async def stop(self) -> None:
        """Stop the schedules, then the transport, which flushes (bounded) what is pending."""
        if self._stopped or not self._started:
            self._stopped = True
            self.close_engines()  # a failed start may have built some
            return
        self._stopped = True
        if self._scheduler:
            self._scheduler.cancel()
            await asyncio.gather(self._scheduler, return_exceptions=True)
        # Let every send already scheduled reach the transport, so it is counted there,
        # then let the transport flush (bounded) and settle what it could not deliver.
        for _ in range(2):
            await asyncio.sleep(0)
        await self.transport.stop()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=_STOP_FLUSH_SECONDS)
            for task in self._tasks:
                task.cancel()
        self.close_engines()

    def close_engines(self) -> None:
        """Free every model's script engine; call it on the loop's thread (``stop`` does)."""
        engines, self._engines = self._engines, {}
        for engine in engines.values():
            engine.close()

    def pause(self) -> None:
        """Hold every schedule; nothing runs or is sent until ``resume``."""
        if self._running is None or self._paused_at is not None:
            return
        self._running.clear()
        self._paused_at = asyncio.get_running_loop().time()

    def resume(self) -> None:
        """Go on where the schedules stopped, shifted by the time spent paused."""
        if self._running is None or self._paused_at is None:
            return
        shift = asyncio.get_running_loop().time() - self._paused_at
        self._paused_at = None
        self._schedule.shift(shift)
        self._running.set()
        if self._wakeup:
            self._wakeup.set()  # the earliest due time moved

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    async def add_devices(self, model: ModelSource, n: int) -> list[str]:
        """Add ``n`` devices of a model (new or already simulated); return their ids."""
        (model,) = _as_models([model], self.proto)
        known = next((m for m in self.models if m.id == model.id), None)
        if known is None:
            self._engine(model)
            self.models.append(model)
        else:
            model = known
        devices = [self._new_device(model) for _ in range(n)]
        await self.transport.add_devices([d.id for d in devices])
        await self._join(devices)
        return [d.id for d in devices]

    async def remove_devices(self, device_ids: Iterable[str]) -> None:
        """Remove devices: they stop at once and are disconnected."""
        ids = list(device_ids)
        missing = [i for i in ids if i not in self.devices]
        if missing:
            raise CirqueError(f"cannot remove unknown devices {missing}; see simulation.devices")
        for device_id in ids:
            self.devices.pop(device_id).alive = False  # its schedule entries are skipped
        await self.transport.remove_devices(ids)

    # -- methods ----------------------------------------------------------------------

    async def call_method(
        self, device_id: str, method: str, payload: Mapping[str, Any] | None = None
    ) -> tuple[int, dict]:
        """Run a device's method script to its end; return (status, response).

        200 with what main returned (an object, or ``{}``); 404 for an unknown device or
        method; 400 for a payload that is not an object; 500 when the script fails; 410
        when the device was removed while its method slept; 503 once the simulation is
        stopped. A method that sleeps holds up only its caller, never the other devices.
        """
        if self._stopped:
            return 503, {"error": "the simulation is stopped; methods need a running one"}
        device = self.devices.get(device_id)
        if device is None:
            return 404, {"error": f"no device {device_id!r} in this simulation"}
        ref = device.model.methods.get(method)
        if ref is None:
            known = ", ".join(sorted(device.model.methods)) or "none"
            return 404, {
                "error": f"device {device_id} (model {device.model.id}) has no method "
                f"{method!r}; its methods: {known}"
            }
        if payload is None:
            payload = {}
        if not isinstance(payload, Mapping):
            return 400, {"error": f"method {method} payload must be a JSON object"}
        context = {**payload, **self._context(device)}
        state, properties = dict(device.state), dict(device.properties)
        seed, start_ms = self._rng.getrandbits(32), time.time() * 1000
        engine = self._engine(device.model)
        resume = applied = 0
        while True:
            try:
                step = engine.run(
                    ref,
                    device_id=device_id,
                    context=context,
                    state=state,
                    properties=properties,
                    method=True,
                    resume=resume,
                    skip=applied,
                    seed=seed,
                    start_ms=start_ms,
                )
            except ScriptError as exc:
                self._record(str(exc))
                return 500, {"error": str(exc)}
            self._apply(device, step.updates)
            applied += len(step.updates)
            if step.sleep_ms is None:
                break
            await asyncio.sleep(max(step.sleep_ms, 0) / 1000)
            if not device.alive or self._stopped:
                return 410, {"error": f"device {device_id} left while {method} was running"}
            resume += 1
        if step.result is None:
            return 200, {}
        return 200, step.result if isinstance(step.result, dict) else {"result": step.result}

    # -- inside ---------------------------------------------------------------------

    def _engine(self, model: DeviceModel) -> ModelEngine:
        engine = self._engines.get(model.id)
        if engine is None:
            engine = self._engines[model.id] = ModelEngine(model, self.limits)
        return engine

    def _new_device(self, model: DeviceModel) -> Device:
        index = self._next_index[model.id]
        self._next_index[model.id] = index + 1
        device = Device(f"{model.id}.{index}", model)
        self.devices[device.id] = device
        return device

    async def _join(self, devices: list[Device]) -> None:
        """Report each device's initial properties, then put its timers on the schedule."""
        for device in devices:  # as tasks: a slow or absent peer must not hold up the start
            self._spawn(self.transport.report_properties(device.id, dict(device.properties)))
        now = asyncio.get_running_loop().time()
        for device in devices:
            model = device.model
            shortest = min([model.state_interval, *(t.interval for t in model.telemetry)])
            offset = self._rng.uniform(0, shortest if self.jitter is None else self.jitter)
            if model.scripts:
                self._push(now + offset, device, _STATE_TIMER)
            for timer in range(len(model.telemetry)):
                self._push(now + offset, device, timer)
        if self._wakeup:
            self._wakeup.set()

    def _push(self, due: float, device: Device, timer: int) -> None:
        self._schedule.push(due, device, timer)

    async def _schedule_loop(self) -> None:
        assert self._wakeup is not None and self._running is not None
        loop = asyncio.get_running_loop()
        wakeup = self._wakeup
        while True:
            await self._running.wait()
            if not self._schedule:
                wakeup.clear()
                await wakeup.wait()
                continue
            due = self._schedule.next_ready()
            if due > loop.time():
                # Sleep until the earliest due time, or until devices join or a resume
                # moves the schedule (both set the event).
                wakeup.clear()
                timer = loop.call_at(due, wakeup.set)
                try:
                    await wakeup.wait()
                finally:
                    timer.cancel()
                continue
            self._fire_due(loop)
            await asyncio.sleep(0)  # let sends, methods and the transport's I/O run

    def _fire_due(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run up to ``_FIRE_BATCH`` timers that are due, each rescheduled first."""
        for due, device, timer in self._schedule.pop_ready(loop.time(), _FIRE_BATCH):
            if not device.alive:
                continue
            model = device.model
            try:
                if timer == _STATE_TIMER:
                    self._push(due + model.state_interval, device, timer)
                    self._run_state_scripts(device)
                else:
                    self._push(due + model.telemetry[timer].interval, device, timer)
                    self.lateness.append(loop.time() - due)
                    self._send_telemetry(device, timer)
            except Exception as exc:  # a bug must not end every device's schedule
                log.exception("device %s: timer %s failed", device.id, timer)
                self._record(f"device {device.id}: internal error: {exc!r}")

    def _context(self, device: Device) -> dict[str, str]:
        return {
            "currentTime": telemetry.current_time(),
            "deviceId": device.id,
            "deviceModel": device.model.name,
        }

    def _run_state_scripts(self, device: Device) -> None:
        """Run the model's state scripts in order, each seeing the state the last one left."""
        context = None
        for ref in device.model.scripts:
            if ref.type == "internal":
                script = internal_scripts.INTERNAL_SCRIPTS[ref.path.lower()]
                device.state.update(script(device.state, ref.params or {}, self._rng))
                continue
            context = context or self._context(device)
            try:
                step = self._engine(device.model).run(
                    ref,
                    device_id=device.id,
                    context=context,
                    state=device.state,
                    properties=device.properties,
                    seed=self._rng.getrandbits(32),
                    start_ms=time.time() * 1000,
                )
            except ScriptError as exc:
                self._record(str(exc))
                continue
            self._apply(device, step.updates)
            if isinstance(step.result, dict):  # older scripts return their state
                device.state.update(step.result)

    def _apply(self, device: Device, updates: list[tuple]) -> None:
        """Apply a script's updates in order: logs, state merges, property changes."""
        changed = False
        for update in updates:
            kind = update[0]
            if kind == "state":
                device.state.update(update[1])
            elif kind == "property":
                if device.properties.get(update[1], _MISSING) != update[2]:
                    device.properties[update[1]] = update[2]
                    changed = True
            elif kind == "log":
                if device.recent_log is None:
                    device.recent_log = collections.deque(maxlen=_RECENT_LOG_LINES)
                device.recent_log.append(update[1])
                script_log.debug("%s: %s", device.id, update[1])
        if changed:
            self._spawn(self.transport.report_properties(device.id, dict(device.properties)))

    def _send_telemetry(self, device: Device, timer: int) -> None:
        if not device.online:
            return
        spec = device.model.telemetry[timer]
        schema = spec.schema
        try:
            text = telemetry.render(spec.template, device.state)
            checked = telemetry.check(schema.fields, text)
            body = text.encode() if schema.proto is None else schema.proto.encode(checked)
        except TelemetryProblem as exc:
            self._record(
                f"{spec.where}: model {device.model.id}: device {device.id}: "
                f"message {spec.schema.name!r}: {exc}"
            )
            return
        self.messages_rendered += 1
        message = Message(
            device_id=device.id,
            schema=spec.schema.name,
            content_type=schema.content_type,
            created=self._created(),
            body=body,
            model_id=device.model.id,
        )
        try:
            if self.transport.send_now(message):
                return
        except CirqueError as exc:  # misuse, e.g. a device the transport does not know
            self._record(f"transport: {exc}")
            return
        self._spawn(self.transport.send(message))

    def _created(self) -> str:
        """Now, to the millisecond, in ISO-8601 UTC; formatted once per millisecond."""
        now_ms = int(time.time() * 1000)
        if now_ms != self._created_ms:
            now = dt.datetime.fromtimestamp(now_ms // 1000, dt.timezone.utc)
            now = now.replace(microsecond=now_ms % 1000 * 1000)
            self._created_text = now.isoformat(timespec="milliseconds")
            self._created_ms = now_ms
        return self._created_text

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._record(f"transport: {task.exception()}")

    def _record(self, line: str) -> None:
        self.error_count += 1
        self.errors.append(line)
        log.debug("%s", line)


_MISSING = object()


async def _cancel_leftover_tasks() -> None:
    """Cancel what is still pending on the loop (e.g. after a failed start) and wait for it."""
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _on_loop(function, *args) -> Any:
    return function(*args)


class SimulationRunner:
    """Runs a simulation's asyncio loop in a thread, for synchronous callers.

    Usable as a context manager; ``stop`` always ends the thread.
    """

    def __init__(self, simulation: Simulation) -> None:
        self.simulation = simulation
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float | None = 120) -> SimulationRunner:
        """Start the loop thread and the simulation; raise what ``start`` raised."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="cirque-simulation", daemon=True
        )
        self._thread.start()
        try:
            self.run(self.simulation.start(), timeout)
        except BaseException:
            self._end_thread()
            raise
        return self

    def run(self, coroutine, timeout: float | None = None) -> Any:
        """Run a coroutine on the simulation's loop and return its result."""
        if self._loop is None:
            coroutine.close()
            raise CirqueError("the simulation runner is not started; call start() first")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def call(self, function, *args) -> Any:
        """Call a plain function on the loop's thread (e.g. pause, resume) and return its result."""

        return self.run(_on_loop(function, *args))

    def call_method(
        self,
        device_id: str,
        method: str,
        payload: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> tuple[int, dict]:
        return self.run(self.simulation.call_method(device_id, method, payload), timeout)

    def pause(self) -> None:
        self.call(self.simulation.pause)

    def resume(self) -> None:
        self.call(self.simulation.resume)

    def add_devices(self, model: ModelSource, n: int) -> list[str]:
        return self.run(self.simulation.add_devices(model, n))

    def remove_devices(self, device_ids: Iterable[str]) -> None:
        self.run(self.simulation.remove_devices(device_ids))

    @property
    def devices(self) -> dict[str, Device]:
        return self.simulation.devices

    def stop(self, timeout: float | None = 60) -> None:
        """Stop the simulation and end the loop thread (safe to call twice)."""
        if self._loop is None:
            return
        try:
            self.run(self.simulation.stop(), timeout)
        finally:
            self._end_thread()

    def _end_thread(self) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_cancel_leftover_tasks(), loop).result(30)
        with contextlib.suppress(Exception):  # the engines die on the thread they ran on
            self.call(self.simulation.close_engines)
        self._loop = None
        loop.call_soon_threadsafe(loop.stop)
        if self._thread:
            self._thread.join()
        loop.close()

    def __enter__(self) -> SimulationRunner:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
