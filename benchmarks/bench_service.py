"""`cirque serve` against the library it serves, side by side in one run.

a. A command's round trip: ``GET /device_cmd/HOME/NODE/true?stream=False`` from an httpx
   client (keep-alive, as a test suite's client is) and gRPC ``ExecuteDeviceCommand``,
   against ``node.exec("true")`` on the same node, which is what both end in. Calls are
   interleaved so load drift hits all alike. Goal: REST adds under 10 ms (median).
b. A 3-node home of the original's examples (two generic nodes with WiFi, Thread and
   Interactive, and a ``wifi_ap``) created and destroyed through REST (``POST
   /create_home``, ``GET /destroy_home/ID``) against ``Cirque.create_home`` and
   ``home.destroy()`` (what ``home_factory`` calls) for the same spec; rounds alternate.

The service runs in this process, on threads, as the ``cirque_service`` fixture runs it;
its client shares the process (and its GIL) with it. Every Docker object is labelled and
removed with its home. Prints JSON and writes benchmarks/results/service.json.

    .venv/bin/python benchmarks/bench_service.py [--count 100] [--rounds 5] [--no-save]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import grpc
import httpx
import yaml
from machine import machine, write_result

from pytest_cirque import topology
from pytest_cirque.homes.session import Cirque
from pytest_cirque.service.proto import service_pb2, service_pb2_grpc
from pytest_cirque.service.server import Service, ServiceOptions

#: The original's example topology: what a client of the original service sends.
ORIGINAL_TOPOLOGY = yaml.safe_load(
    (Path(__file__).parents[1] / "examples" / "cirque_original_topology.yaml").read_text()
)
COMMAND = "true"
#: The goal for what REST adds to a command (median).
GOAL_ADDED_MS = 10.0
#: A safety net against a hung service, far above any round trip.
CLIENT_TIMEOUT_S = 300.0


def summary_ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(1000 * statistics.median(ordered), 2),
        "p90_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 2),
        "min_ms": round(1000 * ordered[0], 2),
    }


def summary_s(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_s": round(statistics.median(ordered), 3),
        "min_s": round(ordered[0], 3),
        "max_s": round(ordered[-1], 3),
    }


def interleaved(variants: dict[str, Callable[[], Any]], count: int) -> dict[str, list[float]]:
    """Seconds per call of each variant, one call of each in turn, after a warm-up."""
    for call in variants.values():
        call()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(count):
        for name, call in variants.items():
            start = time.perf_counter()
            call()
            samples[name].append(time.perf_counter() - start)
    return samples


def command_round_trip(service: Service, http: httpx.Client, count: int) -> dict[str, Any]:
    """(a): one command in one node, through REST, through gRPC and through node.exec."""
    assert service.homes is not None and service.grpc_target is not None
    home_id = http.post("/create_home", json={"n": {"type": "generic_node_image"}}).json()
    home = next(h for h in service.homes.cirque.homes() if h.name == home_id)
    node = home["n"]
    path = f"/device_cmd/{home_id}/n/{quote(COMMAND, safe='')}"

    def rest() -> None:
        reply = http.get(path, params={"stream": "False"}).json()
        if reply["return_code"] != "0":
            raise RuntimeError(f"REST {COMMAND!r}: {reply}")

    def exec_in_node() -> None:
        if node.exec(COMMAND, timeout=CLIENT_TIMEOUT_S).exit_code != 0:
            raise RuntimeError(f"node.exec {COMMAND!r} failed")

    try:
        with grpc.insecure_channel(service.grpc_target) as channel:
            stub = service_pb2_grpc.CirqueServiceStub(channel)
            request = service_pb2.ExecuteDeviceCommandRequest(
                home_id=home_id, device_id="n", command=COMMAND
            )
            samples = interleaved(
                {
                    "node_exec": exec_in_node,
                    "rest_device_cmd": rest,
                    "grpc_execute": lambda: stub.ExecuteDeviceCommand(
                        request, timeout=CLIENT_TIMEOUT_S
                    ),
                },
                count,
            )
    finally:
        http.get(f"/destroy_home/{home_id}")
    results: dict[str, Any] = {name: summary_ms(values) for name, values in samples.items()}
    base = results["node_exec"]
    for variant in ("rest_device_cmd", "grpc_execute"):
        entry = results[variant]
        entry["added_median_ms"] = round(entry["median_ms"] - base["median_ms"], 2)
        entry["added_p90_ms"] = round(entry["p90_ms"] - base["p90_ms"], 2)
        entry["ratio_vs_node_exec"] = round(entry["median_ms"] / base["median_ms"], 3)
    added = results["rest_device_cmd"]["added_median_ms"]
    results["goal"] = f"REST adds under {GOAL_ADDED_MS:g} ms (median)"
    results["goal_met"] = added < GOAL_ADDED_MS
    return {"count": count, "command": COMMAND, "results": results}


def home_round_trip(service: Service, http: httpx.Client, rounds: int) -> dict[str, Any]:
    """(b): the original's 3-node home, created and destroyed through REST and directly."""
    assert service.homes is not None
    cirque = service.homes.cirque

    def rest() -> tuple[float, float]:
        start = time.perf_counter()
        reply = http.post("/create_home", json=ORIGINAL_TOPOLOGY)
        up = time.perf_counter() - start
        if reply.status_code != 200:
            raise RuntimeError(f"POST /create_home: {reply.status_code} {reply.text}")
        start = time.perf_counter()
        http.get(f"/destroy_home/{reply.json()}").raise_for_status()
        return up, time.perf_counter() - start

    def direct() -> tuple[float, float]:
        start = time.perf_counter()
        # The spec the service builds from the topology (the AP's SSID and PSK made up).
        spec = topology.translate(ORIGINAL_TOPOLOGY).parse(allow_host_mounts=False)
        home = cirque.create_home(spec, name="bench-direct")
        up = time.perf_counter() - start
        start = time.perf_counter()
        home.destroy()
        return up, time.perf_counter() - start

    rest()  # warm-up of both: first use of the images and code paths
    direct()
    samples: dict[str, list[tuple[float, float]]] = {"rest": [], "create_home": []}
    for _ in range(rounds):
        samples["rest"].append(rest())
        samples["create_home"].append(direct())
    results: dict[str, Any] = {}
    for variant, pairs in samples.items():
        results[variant] = {
            "create": summary_s([up for up, _ in pairs]),
            "destroy": summary_s([down for _, down in pairs]),
            "total": summary_s([up + down for up, down in pairs]),
        }
    rest_total = results["rest"]["total"]["median_s"]
    direct_total = results["create_home"]["total"]["median_s"]
    results["rest_vs_create_home_ratio"] = round(rest_total / direct_total, 3)
    results["rest_added_s"] = round(rest_total - direct_total, 3)
    return {"rounds": rounds, "topology": ORIGINAL_TOPOLOGY, "results": results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100, help="calls per variant in (a)")
    parser.add_argument("--rounds", type=int, default=5, help="homes per variant in (b)")
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()
    cirque = Cirque(worker="bench")
    service = Service(ServiceOptions(port=0, grpc_port=0), cirque=cirque)
    try:
        service.start()
        with httpx.Client(base_url=service.url, timeout=CLIENT_TIMEOUT_S) as http:
            commands = command_round_trip(service, http, args.count)
            homes = home_round_trip(service, http, args.rounds)
        docker_version = cirque.client.version().get("Version")
    finally:
        service.stop()
    report = {
        "benchmark": "service",
        "what": "cirque serve (in-process, as the cirque_service fixture) against the library",
        "command_round_trip": commands,
        "home_create_destroy": homes,
        "machine": {**machine(), "docker": docker_version},
    }
    print(json.dumps(report, indent=2))
    if not args.no_save:
        write_result("service", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
