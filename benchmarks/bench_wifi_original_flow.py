"""The original system's WiFi flow, per station, as its clients ran it in a node:

    wpa_passphrase SSID PSK >> /etc/wpa_supplicant/wpa_supplicant.conf
    killall wpa_supplicant
    wpa_supplicant -B -i wlan0 -c /etc/wpa_supplicant/wpa_supplicant.conf -f LOG -t -dd
    (until `wpa_cli -i wlan0 status` shows COMPLETED)
    dhcpcd wlan0

One home per round and size: an access point (image wifi-ap, WPA2-PSK, router mode) and
1 or 5 stations running the flow at once, one thread each. Each step is a `docker exec`
timed from the host, so exec latency is part of every number. "ours" is the flow up to
COMPLETED (what the simulation does); the original slept a fixed 5 s after starting
wpa_supplicant instead of waiting for COMPLETED, so its "ours" was at least 5 s.

dhcpcd is reported apart: `dhcpcd wlan0` as the user runs it (with its ARP probe of the
offered address, on by default), then, after `dhcpcd -k wlan0` released that lease,
`dhcpcd -A wlan0` (no ARP probe) on the same station; the difference is what dhcpcd's
own probing costs, which the simulation does not control.

Every Docker object is labelled and removed with its home. Prints JSON and writes
benchmarks/results/wifi_original_flow.json.

    .venv/bin/python benchmarks/bench_wifi_original_flow.py [--rounds 3] [--sizes 1,5]
        [--no-save]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from machine import machine, write_result

from pytest_cirque.core.waiting import wait_until
from pytest_cirque.homes.node import Node
from pytest_cirque.homes.session import Cirque

SSID = "bench"
PSK = "correct horse battery"
CONF = "/etc/wpa_supplicant/wpa_supplicant.conf"
LOG = "/var/log/wpa_supplicant.log"
#: The original slept this long after starting wpa_supplicant, before using the link.
BASELINE_SLEEP_S = 5.0
#: The goal for "ours" (median per station, dhcpcd apart).
GOAL_S = 1.5
STEPS = ("wpa_passphrase", "killall", "start", "until_completed")
COMPLETED_TIMEOUT_S = 60.0


def timed_sh(node: Node, script: str, timeout: float = 60) -> tuple[float, str]:
    start = time.perf_counter()
    result = node.exec(["sh", "-c", script], timeout=timeout)
    elapsed = time.perf_counter() - start
    output = result.stdout + result.stderr
    if result.exit_code != 0:
        raise RuntimeError(f"{script!r} in node {node.name}: exit {result.exit_code}: {output}")
    return elapsed, output


def completed(node: Node) -> bool:
    status = node.exec(["wpa_cli", "-i", "wlan0", "status"]).stdout
    return "wpa_state=COMPLETED" in status


def flow(node: Node) -> dict[str, float]:
    """One station's run of the original flow: seconds per step."""
    times: dict[str, float] = {}
    times["wpa_passphrase"], _ = timed_sh(node, f"wpa_passphrase {SSID} '{PSK}' >> {CONF}")
    times["killall"], _ = timed_sh(node, "killall wpa_supplicant")
    times["start"], _ = timed_sh(node, f"wpa_supplicant -B -i wlan0 -c {CONF} -f {LOG} -t -dd")
    start = time.perf_counter()
    wait_until(
        lambda: completed(node),
        f"node {node.name}'s wpa_cli status to show COMPLETED",
        COMPLETED_TIMEOUT_S,
        max_interval=0.05,
    )
    times["until_completed"] = time.perf_counter() - start
    times["ours"] = sum(times[step] for step in STEPS)
    times["dhcpcd"], output = timed_sh(node, "dhcpcd wlan0")
    if "leased" not in output:
        raise RuntimeError(f"node {node.name}: dhcpcd printed no lease: {output}")
    timed_sh(node, "dhcpcd -k wlan0")
    times["dhcpcd_no_arp_probe"], output = timed_sh(node, "dhcpcd -A wlan0")
    if "leased" not in output:
        raise RuntimeError(f"node {node.name}: dhcpcd -A printed no lease: {output}")
    times["dhcpcd_arp_probe"] = times["dhcpcd"] - times["dhcpcd_no_arp_probe"]
    return times


def one_round(service: Cirque, size: int, index: int) -> list[dict[str, float]]:
    spec: dict[str, Any] = {
        "ap": {"image": "wifi-ap", "capabilities": [{"WiFiAP": {"ssid": SSID, "psk": PSK}}]}
    }
    for n in range(size):
        spec[f"sta{n}"] = {"capabilities": [{"WiFi": {"position": [1 + n % 5, n // 5]}}]}
    home = service.create_home(spec, name=f"bench-flow-{size}-{index}")
    try:
        stations = [home[f"sta{n}"] for n in range(size)]
        with ThreadPoolExecutor(max_workers=size) as pool:
            return list(pool.map(flow, stations))
    finally:
        home.destroy()


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered), 3),
        "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 3),
        "max": round(ordered[-1], 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="1,5")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    service = Cirque(worker="bench")
    results: dict[str, Any] = {}
    try:
        for size in sizes:
            runs: list[dict[str, float]] = []
            for index in range(args.rounds):
                runs += one_round(service, size, index)
            keys = [*STEPS, "ours", "dhcpcd", "dhcpcd_no_arp_probe", "dhcpcd_arp_probe"]
            per_step = {key: summary([run[key] for run in runs]) for key in keys}
            median_ours = per_step["ours"]["median"]
            results[f"{size}_stations"] = {
                "stations_measured": len(runs),
                "seconds": per_step,
                "original_fixed_sleep_s": BASELINE_SLEEP_S,
                "ours_vs_original_sleep": round(BASELINE_SLEEP_S / median_ours, 1),
                "goal_s": GOAL_S,
                "goal_met": median_ours < GOAL_S,
            }
    finally:
        service.close()
    report = {
        "benchmark": "wifi_original_flow",
        "rounds": args.rounds,
        "results": results,
        "machine": machine(),
    }
    print(json.dumps(report, indent=2))
    if not args.no_save:
        write_result("wifi_original_flow", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
