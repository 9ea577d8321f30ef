"""CPU time per telemetry message of the whole simulator path, independent of machine load.

A simulator (one process) runs ``--devices`` devices of the throughput benchmark's model
(one message and one internal state script per device each second) over pooled MQTT
connections to a real mosquitto, until ``--messages`` messages have been acknowledged
(QoS 1) or written (QoS 0). What is measured is the process's CPU time
(``time.process_time``) over that fixed number of messages: scheduler, state script,
template render and check, publish and acknowledgement accounting. Other work on a
shared machine slows the run down but does not change its CPU per message much, so
this is the number to compare between versions; wall-clock rates belong to
bench_devices_throughput.py.

    .venv/bin/python benchmarks/bench_simulator_cpu.py [--devices 12000] [--messages 40000]
        [--repeat 3] [--qos 1] [--pool-size 4] [--script internal|javascript] [--profile 25]

The default fleet offers more messages per second than one process can send, so the
simulator is always behind and fires full batches: the cost measured is the path's
own, not that of waking up for a few messages (which a process with CPU to spare does
not mind). Runs ``--repeat`` times and reports each run and the median. ``--profile N``
prints the N costliest functions instead (cProfile, one run). Prints one JSON object
and writes benchmarks/results/simulator_cpu.json (``--out`` to rename).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from device_bench_support import BrokerCounter, write_model
from machine import machine, write_result

from pytest_cirque.device_models.brokers import MosquittoProcess
from pytest_cirque.device_models.simulator import Simulation
from pytest_cirque.device_models.transports.base import make_transport


async def measure(url: str, args, profiler: cProfile.Profile | None) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="cirque-bench-"))
    try:
        model = write_model(folder, "cpu-bench", "00:00:01", script=args.script)
        transport = make_transport("mqtt", url, pooled=True, pool_size=args.pool_size, qos=args.qos)
        simulation = Simulation([model], args.devices, transport, seed=1)
        await simulation.start()
        await _until(lambda: transport.counts.delivered >= args.devices)  # warmed up
        first, cpu_start, started = (
            transport.counts.delivered,
            time.process_time(),
            time.monotonic(),
        )
        if profiler:
            profiler.enable()
        await _until(lambda: transport.counts.delivered - first >= args.messages)
        if profiler:
            profiler.disable()
        cpu = time.process_time() - cpu_start
        wall = time.monotonic() - started
        measured = transport.counts.delivered - first
        await simulation.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    counts = transport.counts
    return {
        "devices": args.devices,
        "qos": args.qos,
        "script": args.script,
        "measured_messages": measured,
        "cpu_s": round(cpu, 3),
        "cpu_us_per_message": round(cpu / measured * 1e6, 1),
        # What one core would sustain at this CPU cost (the process is single-threaded).
        "one_core_msg_per_s_at_this_cost": round(measured / cpu),
        "wall_s": round(wall, 2),
        "cpu_fraction": round(cpu / wall, 2),
        "sent": counts.sent,
        "delivered": counts.delivered,
        "failed": counts.failed,
        "script_errors": simulation.error_count,
    }


async def _until(condition) -> None:
    """Poll a counter the simulation advances (a benchmark, not a test: no deadline)."""
    while not condition():
        await asyncio.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=12_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--label", default="", help="what code was measured, e.g. a commit")
    parser.add_argument("--messages", type=int, default=40_000)
    parser.add_argument("--qos", type=int, default=1, choices=[0, 1])
    parser.add_argument("--pool-size", type=int, default=4)
    parser.add_argument("--script", choices=["internal", "javascript"], default="internal")
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    parser.add_argument("--out", default="simulator_cpu")
    args = parser.parse_args()

    broker = MosquittoProcess()
    broker.start()
    counter = BrokerCounter(broker.url)
    profiler = cProfile.Profile() if args.profile else None
    runs = []
    try:
        for _ in range(1 if profiler else args.repeat):
            baseline = counter.value
            run = asyncio.run(measure(broker.url, args, profiler))
            received = counter.wait_at_least(baseline + run["sent"]) - baseline
            run["broker_received_publishes"] = received
            run["lost"] = max(0, run["sent"] - received)
            run["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
            runs.append(run)
            print(json.dumps(run), file=sys.stderr)
        info = machine(broker)
    finally:
        counter.close()
        broker.close()
    costs = sorted(r["cpu_us_per_message"] for r in runs)
    result = {
        "benchmark": "simulator_cpu",
        "label": args.label,
        "devices": args.devices,
        "qos": args.qos,
        "script": args.script,
        "median_cpu_us_per_message": costs[len(costs) // 2],
        "lost": sum(r["lost"] for r in runs),
        "failed": sum(r["failed"] for r in runs),
        "runs": runs,
        "machine": info,
    }
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(args.profile)
        print(out.getvalue(), file=sys.stderr)
    else:
        write_result(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
