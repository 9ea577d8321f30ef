"""Memory per simulated device: N devices of the stock models in one process.

The transport here only counts (it stands in for a real one, whose connections are
measured by the transport benchmarks): what is measured is the simulator's own cost per
device, state, properties, schedule and share of the models' script contexts, after
every device has run its state scripts and sent its messages at least once. Also
reports how late telemetry ran against its schedule, and the CPU time per device tick.

    .venv/bin/python benchmarks/bench_device_memory.py [--devices 20000] [--seconds 15]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import resource
import statistics
import time
from collections.abc import Iterable

from machine import machine

from pytest_cirque.device_models.model import load_model, stock_models
from pytest_cirque.device_models.simulator import Simulation
from pytest_cirque.device_models.transports.base import (
    DeliveryCounts,
    Message,
    MethodHandler,
    Transport,
)


class CountingTransport(Transport):
    """Counts what it is handed and keeps nothing."""

    def __init__(self) -> None:
        self.counts = DeliveryCounts()
        self.bytes = 0

    async def start(self, device_ids: Iterable[str]) -> None:
        pass

    async def add_devices(self, device_ids: Iterable[str]) -> None:
        pass

    async def remove_devices(self, device_ids: Iterable[str]) -> None:
        pass

    async def send(self, message: Message) -> None:
        self.counts.sent += 1
        self.bytes += len(message.body)
        self.counts.delivered += 1

    async def report_properties(self, device_id: str, properties: dict) -> None:
        pass

    def on_method(self, handler: MethodHandler) -> None:
        pass

    async def stop(self) -> None:
        pass


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


async def measure(devices: int, seconds: float) -> dict:
    models = [load_model(path) for path in stock_models().values()]
    per_model = {m.id: devices // len(models) for m in models}
    per_model[models[0].id] += devices - sum(per_model.values())
    transport = CountingTransport()
    simulation = Simulation(models, per_model, transport, seed=1)

    # Baseline: the models compiled (one script context each), no device yet.
    for model in models:
        simulation._engine(model)
    gc.collect()
    baseline = rss_bytes()

    cpu_start = time.process_time()
    await simulation.start()
    await asyncio.sleep(seconds)  # the measured run: every device ticks and sends meanwhile
    gc.collect()
    loaded = rss_bytes()
    cpu = time.process_time() - cpu_start
    lateness = list(simulation.lateness)
    await simulation.stop()

    ticks = sum(seconds / m.state_interval * per_model[m.id] for m in models)
    return {
        "benchmark": "device_memory",
        "devices": devices,
        "models": sorted(per_model),
        "seconds": seconds,
        "rss_baseline_mib": round(baseline / 2**20, 1),
        "rss_with_devices_mib": round(loaded / 2**20, 1),
        "rss_peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "bytes_per_device": round((loaded - baseline) / devices),
        "messages": transport.counts.sent,
        "messages_per_s": round(transport.counts.sent / seconds, 1),
        "script_errors": simulation.error_count,
        "lateness_p50_ms": round(percentile(lateness, 0.50) * 1000, 2),
        "lateness_p99_ms": round(percentile(lateness, 0.99) * 1000, 2),
        "lateness_mean_ms": round(statistics.fmean(lateness) * 1000, 2) if lateness else 0,
        "cpu_s": round(cpu, 2),
        "cpu_us_per_state_tick_and_messages": round(cpu / ticks * 1e6, 1) if ticks else None,
        "machine": memory_machine(),
    }


def memory_machine() -> dict:
    """The machine block under the names device_memory.json has always used."""
    block = machine()
    return {
        "python": block["python"],
        "cpus": block["cores"],
        "processor": platform.processor() or platform.machine(),
        "kernel": block["kernel"],
        "load_average_1m_at_end": block["load_average_1m_at_end"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.devices, args.seconds)), indent=2))


if __name__ == "__main__":
    main()
