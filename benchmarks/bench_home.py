"""Home bring-up and teardown, ours against raw docker-py, side by side in one run.

For 1, 5 and 20 nodes without capabilities, each round measures:

* ours: ``Cirque.create_home`` (spec check, image lookup, subnet choice, the isolated LAN
  bridge, containers created and started) then ``home.destroy()``;
* raw-serial: docker-py as a user would write it: one network, then
  ``containers.create`` + ``start`` per container, then ``remove(force=True)`` each and
  the network;
* raw-parallel: the same calls on a pool of 8 threads, as ours does.

Rounds alternate between the three so drift on the shared machine hits all alike. The
overhead is ours vs the faster raw variant (the stricter comparison). Goal: at most 15%
at 5 and 20 nodes. Prints JSON and writes benchmarks/results/bench_home.json.

    .venv/bin/python benchmarks/bench_home.py [--rounds 5] [--sizes 1,5,20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from machine import machine, write_result

from pytest_cirque.core import identity
from pytest_cirque.core.docker_backend import Backend, StaleNetwork
from pytest_cirque.homes.session import Cirque

GOAL_OVERHEAD = 0.15


def home_machine(client: Any) -> dict[str, Any]:
    """The machine block under the names bench_home.json and bench_exec.json have always
    used, with the Docker Engine's version and the load when the run started."""
    block = machine()
    return {
        "cpu_model": block["cpu"],
        "cores": block["cores"],
        "memory_gib": block["memory_gib"],
        "kernel": block["kernel"],
        "docker_version": client.version().get("Version"),
        "python_version": block["python"],
        "load_average_at_start": os.getloadavg(),
    }


class RawDocker:
    """The baseline: plain docker-py, the same containers on one network."""

    def __init__(self, service: Cirque, image: str, command: list[str] | None) -> None:
        self.client = service.client
        self.image = image
        self.command = command
        self.service = service
        self.counter = 0
        #: Networks the engine left with a stale endpoint (a Docker bug), reported.
        self.stale_networks: list[str] = []

    def labels(self, name: str) -> dict[str, str]:
        # Labelled like every object of ours, so the watchdog removes it if we die.
        return self.service.identity.labels(name, "bench-raw")

    def round(self, nodes: int, parallel: bool) -> tuple[float, float]:
        self.counter += 1
        name = f"cirque-{self.service.run_id}-raw{self.counter}"
        pool = ThreadPoolExecutor(8) if parallel else None

        def each(function: Any, items: list[Any]) -> list[Any]:
            if pool is None:
                return [function(item) for item in items]
            return list(pool.map(function, items))

        start = time.perf_counter()
        network = self.client.networks.create(name, driver="bridge", labels=self.labels(name))

        def bring_up(i: int) -> Any:
            container = self.client.containers.create(
                self.image,
                command=self.command,
                name=f"{name}-n{i}",
                hostname=f"n{i}",
                network=network.name,
                labels=self.labels(name),
                detach=True,
                init=self.command is not None,
            )
            container.start()
            return container

        containers = each(bring_up, list(range(nodes)))
        up = time.perf_counter() - start
        start = time.perf_counter()
        each(lambda c: c.remove(force=True), containers)
        try:
            # network.remove(), retried while Docker still counts endpoints of removed
            # containers, as any careful docker-py user has to.
            Backend(self.client).remove_network(network.id)
        except StaleNetwork:
            self.stale_networks.append(network.name)
        down = time.perf_counter() - start
        if pool is not None:
            pool.shutdown()
        return up, down


def ours_round(service: Cirque, nodes: int) -> tuple[float, float]:
    spec = {f"n{i}": {} for i in range(nodes)}
    start = time.perf_counter()
    home = service.create_home(spec, name="bench")
    up = time.perf_counter() - start
    start = time.perf_counter()
    home.destroy()
    down = time.perf_counter() - start
    return up, down


def summarise(samples: list[tuple[float, float]]) -> dict[str, float]:
    ups = [s[0] for s in samples]
    downs = [s[1] for s in samples]
    totals = [a + b for a, b in samples]
    return {
        "up_median_s": round(statistics.median(ups), 4),
        "down_median_s": round(statistics.median(downs), 4),
        "total_median_s": round(statistics.median(totals), 4),
        "total_min_s": round(min(totals), 4),
        "total_max_s": round(max(totals), 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", default="1,5,20")
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    service = Cirque(run_id=identity.new_run_id(), worker="bench")
    try:
        image = service.resolve_image("base")
        command = ["sleep", "infinity"] if service.needs_idle_command(image) else None
        raw = RawDocker(service, image, command)
        results: dict[str, Any] = {}
        for nodes in sizes:
            # One warm-up of each, discarded: first use of an image and of a code path.
            ours_round(service, nodes)
            raw.round(nodes, parallel=False)
            raw.round(nodes, parallel=True)
            samples: dict[str, list[tuple[float, float]]] = {
                "ours": [],
                "raw_serial": [],
                "raw_parallel": [],
            }
            for _ in range(args.rounds):
                samples["ours"].append(ours_round(service, nodes))
                samples["raw_serial"].append(raw.round(nodes, parallel=False))
                samples["raw_parallel"].append(raw.round(nodes, parallel=True))
            entry = {variant: summarise(values) for variant, values in samples.items()}
            best_raw = min(
                entry["raw_serial"]["total_median_s"], entry["raw_parallel"]["total_median_s"]
            )
            overhead = entry["ours"]["total_median_s"] / best_raw - 1
            entry["ratio_vs_best_raw"] = round(1 + overhead, 3)
            entry["overhead_vs_best_raw_pct"] = round(100 * overhead, 1)
            entry["ratio_vs_raw_serial"] = round(
                entry["ours"]["total_median_s"] / entry["raw_serial"]["total_median_s"], 3
            )
            entry["goal_met"] = nodes < 5 or overhead <= GOAL_OVERHEAD
            results[f"{nodes}_nodes"] = entry
        report = {
            "benchmark": "bench_home",
            "what": "home bring-up + teardown, nodes without capabilities, median of rounds",
            "goal": f"overhead vs raw docker-py at most {GOAL_OVERHEAD:.0%} at 5 and 20 nodes",
            "rounds": args.rounds,
            "image": image,
            "machine": home_machine(service.client),
            "results": results,
            "raw_networks_left_stale_by_docker": raw.stale_networks,
        }
    finally:
        service.close()
    text = json.dumps(report, indent=2)
    print(text)
    if not args.no_save:
        write_result("bench_home", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
