"""20,000 devices, each with its own MQTT connection, against real mosquitto brokers.

Each device runs a JavaScript state script every 10 s and sends one message every 10 s,
for 60 s. One process may hold at most 20,000 open files on the project's machines, and
Docker cannot give a container more (its daemon has the same hard limit), so neither one
simulator nor one broker can hold 20,000 connections: the devices are sharded over
several simulator processes and several brokers. Reported: connection set-up time,
lateness against the schedule (p50/p99), messages lost (the brokers' own $SYS count of
PUBLISH packets received against what the simulators sent), failures, and memory per
device including its connection.

    .venv/bin/python benchmarks/bench_devices_scale.py [--devices 20000] [--seconds 60]
        [--processes 4] [--brokers 2] [--broker-kind process|container]

Prints one JSON object and writes benchmarks/results/devices_scale.json.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from device_bench_support import (
    BrokerCounter,
    ms,
    percentile,
    rss_bytes,
    run_shards,
    write_model,
)
from machine import machine, write_result

from pytest_cirque.device_models.brokers import MosquittoContainer, MosquittoProcess


async def shard(url: str, index: int, devices: int, seconds: float) -> dict:
    """One simulator process: ``devices`` devices, one connection each, for ``seconds``."""
    from pytest_cirque.device_models.simulator import Simulation
    from pytest_cirque.device_models.transports.base import make_transport

    folder = Path(tempfile.mkdtemp(prefix="cirque-bench-"))
    atexit.register(shutil.rmtree, folder, True)
    model = write_model_for(folder, index)
    transport = make_transport("mqtt", url, connect_timeout=120, keepalive=300)
    simulation = Simulation([model], devices, transport, seed=index)
    rss_before = rss_bytes()
    started = time.monotonic()
    await simulation.start()
    start_s = time.monotonic() - started
    cpu_start = time.process_time()
    await asyncio.sleep(seconds)  # the measured run: the fleet ticks and sends meanwhile
    cpu = time.process_time() - cpu_start
    rss_running = rss_bytes()
    lateness = list(simulation.lateness)
    connected = transport.connected_devices
    await simulation.stop()
    counts = transport.counts
    return {
        "devices": devices,
        "connected_at_end": connected,
        "start_s": round(start_s, 2),
        "sent": counts.sent,
        "delivered": counts.delivered,
        "failed": counts.failed,
        "reconnects": counts.reconnects,
        "lateness_samples": lateness,
        "cpu_fraction": round(cpu / seconds, 2),
        "rss_mib": round(rss_running / 2**20, 1),
        "rss_per_device_bytes": round((rss_running - rss_before) / devices),
        "script_errors": simulation.error_count,
    }


def write_model_for(folder: Path, index: int) -> Path:
    return write_model(folder, f"scale-s{index}", "00:00:10", script="javascript")


def start_brokers(count: int, kind: str) -> list:
    brokers = []
    try:
        for _ in range(count):
            broker = MosquittoProcess() if kind == "process" else MosquittoContainer(nofile=20000)
            broker.start(timeout=600)
            brokers.append(broker)
    except BaseException:
        for broker in brokers:
            broker.close()
        raise
    return brokers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--brokers", type=int, default=2)
    parser.add_argument("--broker-kind", choices=["process", "container"], default="process")
    parser.add_argument("--out", default="devices_scale")
    parser.add_argument("--shard", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.shard:
        url, index, devices, seconds = args.shard
        print(json.dumps(asyncio.run(shard(url, int(index), int(devices), float(seconds)))))
        return

    brokers = start_brokers(args.brokers, args.broker_kind)
    counters = []
    try:
        counters = [BrokerCounter(b.url) for b in brokers]
        baselines = [c.value for c in counters]
        per = args.devices // args.processes
        shard_brokers = [i % len(brokers) for i in range(args.processes)]
        began = time.monotonic()
        shards = run_shards(
            __file__,
            [
                [brokers[b].url, str(i), str(per), str(args.seconds)]
                for i, b in enumerate(shard_brokers)
            ],
        )
        wall_s = time.monotonic() - began
        received = 0
        for b, (counter, baseline) in enumerate(zip(counters, baselines, strict=True)):
            expected = sum(
                s["sent"] for s, sb in zip(shards, shard_brokers, strict=True) if sb == b
            )
            received += counter.wait_at_least(baseline + expected) - baseline
        info = machine(brokers[0] if isinstance(brokers[0], MosquittoProcess) else None)
    finally:
        for counter in counters:
            counter.close()
        for broker in brokers:
            broker.close()

    lateness = [x for s in shards for x in s.pop("lateness_samples")]
    sent = sum(s["sent"] for s in shards)
    devices = per * args.processes
    result = {
        "benchmark": "devices_scale",
        "devices": devices,
        "connections": "one MQTT connection per device (client id = device id), QoS 1",
        "simulator_processes": args.processes,
        "brokers": f"{args.brokers} mosquitto ({args.broker_kind})",
        "state_script_and_message_interval_s": 10,
        "seconds": args.seconds,
        "wall_s": round(wall_s, 1),
        "slowest_start_s": max(s["start_s"] for s in shards),
        "sent": sent,
        "delivered_by_transport": sum(s["delivered"] for s in shards),
        "failed": sum(s["failed"] for s in shards),
        "broker_received_publishes": received,
        "lost": max(0, sent - received),
        "schedule_lateness_p50_ms": ms(percentile(lateness, 0.5)),
        "schedule_lateness_p99_ms": ms(percentile(lateness, 0.99)),
        "rss_per_device_bytes_with_connection": round(
            sum(s["rss_per_device_bytes"] * s["devices"] for s in shards) / devices
        ),
        "script_errors": sum(s["script_errors"] for s in shards),
        "shards": shards,
        "machine": info,
    }
    write_result(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
