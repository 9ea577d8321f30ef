"""Node exec round-trip: ``node.exec`` against docker-py's ``exec_run`` on the same node.

Measures, interleaved so load drift hits all alike: ``node.exec(["true"])``,
``node.exec("true")`` (through ``sh -c``), raw ``container.exec_run(["true"])``, and a
put_file + get_file round trip of 4 KiB. Prints JSON and writes
benchmarks/results/bench_exec.json.

With ``--output-kept N``, it also counts commands whose output came back incomplete:
4 processes at once, each on a node of its own, N times ``echo out; echo err >&2``
through the backend's ``exec`` (what ``node.exec`` runs) and through docker-py's
``exec_start(demux=True)``, in turn, while 2 more processes keep both cores busy.
docker-py loses the output that arrives with the engine's reply headers
(docker/docker-py#3332); a fast command on a loaded engine is where that happens.

    .venv/bin/python benchmarks/bench_exec.py [--count 100] [--output-kept 500]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from bench_home import home_machine
from machine import write_result

from pytest_cirque.core import identity
from pytest_cirque.core.docker_backend import connect_backend
from pytest_cirque.homes.session import Cirque


def stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(1000 * statistics.median(ordered), 2),
        "mean_ms": round(1000 * statistics.fmean(ordered), 2),
        "p95_ms": round(1000 * ordered[int(0.95 * (len(ordered) - 1))], 2),
        "min_ms": round(1000 * ordered[0], 2),
    }


SPEAKER = ["sh", "-c", "echo out; echo err >&2"]


def speak(container_id: str, rounds: int, ours: bool) -> int:
    """In a process of its own: how many commands came back with incomplete output,
    through the backend or through docker-py's exec_start."""
    backend = connect_backend()
    incomplete = 0
    for _ in range(rounds):
        if ours:
            result = backend.exec(container_id, SPEAKER, node="n")
            output = (result.stdout.encode(), result.stderr.encode())
        else:
            exec_id = backend.api.exec_create(container_id, SPEAKER)["Id"]
            output = tuple(backend.api.exec_start(exec_id, demux=True))
        incomplete += output != (b"out\n", b"err\n")
    return incomplete


def output_kept(container_ids: list[str], rounds: int) -> dict[str, Any]:
    """Commands whose stdout or stderr came back incomplete, ours beside docker-py's:
    a process for each node (one process's threads take turns, and execs queued on one
    node start late, so both rarely hit it), the two in turn, in 5 alternating rounds
    under the same load."""
    per_round = max(1, rounds // 5)
    spin = [sys.executable, "-c", "while True: pass"]
    spinners = [subprocess.Popen(spin) for _ in range(2)]
    incomplete = {"ours": 0, "raw_exec_start": 0}
    try:
        with multiprocessing.get_context("spawn").Pool(len(container_ids)) as pool:
            for _ in range(5):
                for name, ours in (("ours", True), ("raw_exec_start", False)):
                    jobs = [(each, per_round, ours) for each in container_ids]
                    incomplete[name] += sum(pool.starmap(speak, jobs))
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    return {
        "commands_each": per_round * 5 * len(container_ids),
        "ours_incomplete": incomplete["ours"],
        "raw_exec_start_incomplete": incomplete["raw_exec_start"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument(
        "--output-kept",
        type=int,
        default=0,
        metavar="N",
        help="also count incomplete outputs under load, N commands a node",
    )
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
        if args.output_kept:
            speakers = service.create_home({f"s{i}": {} for i in range(1, 5)}, name="speakers")
            results["output_kept_under_load"] = output_kept(
                [speaker.container_id for speaker in speakers.nodes.values()], args.output_kept
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
