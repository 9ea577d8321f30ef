"""The most telemetry per second a simulator sustains over pooled MQTT connections.

Steps up the offered rate (devices x 1 message/s, state by an internal script each
second) against a real mosquitto. A step is sustained when nothing is lost (the broker's
own count of PUBLISH packets received, from $SYS, covers every telemetry message the
simulator handed over), nothing failed,
the simulator kept up (sent >= 97% of the offered rate) and its p99 lateness against
the schedule stayed under one second.

    .venv/bin/python benchmarks/bench_devices_throughput.py [--rates 5000,10000,15000]
        [--seconds 20] [--processes 1] [--qos 1] [--pool-size 4]

Prints one JSON object and writes benchmarks/results/devices_throughput.json.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
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

from pytest_cirque.device_models.brokers import MosquittoProcess


async def shard(url: str, index: int, devices: int, seconds: float, qos: int, pool: int) -> dict:
    """One simulator process: ``devices`` devices over ``pool`` connections for ``seconds``."""
    from pytest_cirque.device_models.simulator import Simulation
    from pytest_cirque.device_models.transports.base import make_transport

    folder = Path(tempfile.mkdtemp(prefix="cirque-bench-"))
    atexit.register(shutil.rmtree, folder, True)
    model = write_model(folder, f"tput-s{index}", "00:00:01", script="internal")
    transport = make_transport("mqtt", url, pooled=True, pool_size=pool, qos=qos)
    simulation = Simulation([model], devices, transport, seed=index)
    rss_before = rss_bytes()
    started = time.monotonic()
    await simulation.start()
    start_s = time.monotonic() - started
    first_sent, cpu_start = transport.counts.sent, time.process_time()
    await asyncio.sleep(seconds)  # the measured window: the fleet runs meanwhile
    window_sent = transport.counts.sent - first_sent
    cpu = time.process_time() - cpu_start
    rss_running = rss_bytes()
    lateness = list(simulation.lateness)
    await simulation.stop()
    counts = transport.counts
    return {
        "devices": devices,
        "start_s": round(start_s, 2),
        "sent": counts.sent,
        "delivered": counts.delivered,
        "failed": counts.failed,
        "property_reports": transport.property_counts.sent,
        "window_msg_per_s": round(window_sent / seconds, 1),
        # CPU per message (state tick included) is what a shared machine cannot distort.
        "cpu_us_per_message": round(cpu / max(window_sent, 1) * 1e6, 1),
        "lateness_p50_ms": ms(percentile(lateness, 0.5)),
        "lateness_p99_ms": ms(percentile(lateness, 0.99)),
        "cpu_fraction": round(cpu / seconds, 2),
        "rss_mib": round(rss_running / 2**20, 1),
        "rss_per_device_bytes": round((rss_running - rss_before) / devices),
        "script_errors": simulation.error_count,
    }


async def flood(url: str, index: int, seconds: float, qos: int, pool: int) -> dict:
    """The transport alone: messages of 1,000 devices as fast as the broker takes them."""
    from pytest_cirque.device_models.transports.base import Message, make_transport

    transport = make_transport("mqtt", url, pooled=True, pool_size=pool, qos=qos)
    devices = [f"flood-s{index}.{i}" for i in range(1000)]
    await transport.start(devices)
    body = b'{"temperature":20.5,"ticks":1}'
    deadline = time.monotonic() + seconds
    cpu_start, n = time.process_time(), 0
    while time.monotonic() < deadline:
        for _ in range(100):
            created = f"2026-01-01T00:00:00.{n % 1000:03d}+00:00"
            await transport.send(
                Message(devices[n % 1000], "flood;v1", "application/json", created, body)
            )
            n += 1
        while transport.counts.pending > 5000:  # keep a bounded window, like a real source
            await asyncio.sleep(0.001)
    delivered_in_window = transport.counts.delivered
    cpu = time.process_time() - cpu_start
    await transport.stop()
    counts = transport.counts
    return {
        "devices": len(devices),
        "sent": counts.sent,
        "delivered": counts.delivered,
        "failed": counts.failed,
        "property_reports": 0,
        "window_msg_per_s": round(delivered_in_window / seconds, 1),
        "cpu_us_per_message": round(cpu / max(delivered_in_window, 1) * 1e6, 1),
        "lateness_p99_ms": 0.0,
        "cpu_fraction": round(cpu / seconds, 2),
    }


def step(broker, counter, rate: int, args) -> dict:
    per = rate // args.processes
    baseline = counter.value
    load_at_start = os.getloadavg()[0]
    shards = run_shards(
        __file__,
        [
            [
                broker.url,
                str(i),
                str(per),
                str(args.seconds),
                str(args.qos),
                str(args.pool_size),
                args.mode,
            ]
            for i in range(args.processes)
        ],
    )
    sent = sum(s["sent"] for s in shards)
    delivered = sum(s["delivered"] for s in shards)
    expected = sent  # mosquitto's $SYS count leaves out retained publishes (property reports)
    received = counter.wait_at_least(baseline + expected) - baseline
    achieved = sum(s["window_msg_per_s"] for s in shards)
    p99 = max(s["lateness_p99_ms"] for s in shards)
    result = {
        "offered_msg_per_s": per * args.processes,
        "achieved_msg_per_s": round(achieved, 1),
        "sent": sent,
        "delivered_by_transport": delivered,
        "failed": sum(s["failed"] for s in shards),
        "broker_received_publishes": received,
        "expected_publishes": expected,
        "lost": max(0, expected - received),
        "schedule_lateness_p99_ms": p99,
        # The machine is shared: other work competing for the two cores lowers the rate.
        "load_average_1m_at_start": round(load_at_start, 2),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "shards": shards,
    }
    if args.mode == "transport":
        result["offered_msg_per_s"] = "as fast as possible"
        result["sustained"] = result["lost"] == 0 and result["failed"] == 0
        return result
    result["sustained"] = (
        result["lost"] == 0
        and result["failed"] == 0
        and achieved >= 0.97 * per * args.processes
        and p99 < 1000
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="5000,10000,15000")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--qos", type=int, default=1, choices=[0, 1])
    parser.add_argument("--pool-size", type=int, default=4)
    parser.add_argument("--out", default="devices_throughput")
    parser.add_argument(
        "--mode",
        choices=["simulator", "transport"],
        default="simulator",
        help="a simulated fleet at the offered rate, or the transport alone at full speed",
    )
    parser.add_argument("--shard", nargs=7, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.shard:
        url, index, devices, seconds, qos, pool, mode = args.shard
        if mode == "transport":
            result = asyncio.run(flood(url, int(index), float(seconds), int(qos), int(pool)))
        else:
            result = asyncio.run(
                shard(url, int(index), int(devices), float(seconds), int(qos), int(pool))
            )
        print(json.dumps(result))
        return

    broker = MosquittoProcess()
    broker.start()
    counter = BrokerCounter(broker.url)
    steps = []
    try:
        for rate in (int(r) for r in args.rates.split(",")):
            steps.append(step(broker, counter, rate, args))
            print(
                json.dumps({k: v for k, v in steps[-1].items() if k != "shards"}), file=sys.stderr
            )
        info = machine(broker)
    finally:
        counter.close()
        broker.close()
    sustained = [s["achieved_msg_per_s"] for s in steps if s["sustained"]]
    result = {
        "benchmark": "devices_throughput",
        "connections": f"pooled: {args.pool_size} per simulator process",
        "simulator_processes": args.processes,
        "qos": args.qos,
        "mode": args.mode,
        "seconds_per_step": args.seconds,
        "max_sustained_msg_per_s": max(sustained) if sustained else 0,
        "goal_msg_per_s": 10_000,
        "steps": steps,
        "machine": info,
    }
    write_result(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
