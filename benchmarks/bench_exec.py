"""Node exec round-trip: ``node.exec`` against docker-py's ``exec_run`` on the same node.

Measures, interleaved so load drift hits all alike: ``node.exec(["true"])``,
``node.exec("true")`` (through ``sh -c``), raw ``container.exec_run(["true"])``, and a
put_file + get_file round trip of 4 KiB. Prints JSON and writes
benchmarks/results/bench_exec.json.

    .venv/bin/python benchmarks/bench_exec.py [--count 100]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench_home import home_machine
from machine import write_result

from pytest_cirque.core import identity
from pytest_cirque.homes.session import Cirque


def stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(1000 * statistics.median(ordered), 2),
        "mean_ms": round(1000 * statistics.fmean(ordered), 2),
        "p95_ms": round(1000 * ordered[int(0.95 * (len(ordered) - 1))], 2),
        "min_ms": round(1000 * ordered[0], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()

    service = Cirque(run_id=identity.new_run_id(), worker="bench")
    try:
        home = service.create_home({"n": {}}, name="exec-bench")
        node = home["n"]
        container = service.client.containers.get(node.container_id)
        payload = bytes(4096)

        def file_round_trip() -> None:
            node.put_file("/tmp/bench.bin", payload)
            node.get_file("/tmp/bench.bin")

        variants: dict[str, Callable[[], Any]] = {
            "ours_argv": lambda: node.exec(["true"]),
            "ours_shell": lambda: node.exec("true"),
            "raw_exec_run": lambda: container.exec_run(["true"]),
            "ours_put_get_4k": file_round_trip,
        }
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for call in variants.values():
            call()  # warm-up
        for _ in range(args.count):
            for name, call in variants.items():
                start = time.perf_counter()
                call()
                samples[name].append(time.perf_counter() - start)
        results = {name: stats(values) for name, values in samples.items()}
        results["ours_vs_raw_median_ratio"] = round(
            results["ours_argv"]["median_ms"] / results["raw_exec_run"]["median_ms"], 3
        )
        report = {
            "benchmark": "bench_exec",
            "what": "round trip of one command in a running node",
            "count": args.count,
            "machine": home_machine(service.client),
            "results": results,
        }
    finally:
        service.close()
    text = json.dumps(report, indent=2)
    print(text)
    if not args.no_save:
        write_result("bench_exec", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
