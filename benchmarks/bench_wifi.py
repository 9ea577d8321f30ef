"""WiFi provisioning on the simulated medium: scan, associate, DHCP and ping per station.

One home per round, size and mode: one access point (image wifi-ap, WPA2-PSK, router
mode) and 1, 5 or 20 stations. ``create_home`` is timed on its own (bring-up: the medium,
the AP's dnsmasq and NAT, every station's wlan0 and control interface). Then every
station runs ``wifi.provision`` (scan, associate, dhcp, ping), either all at once on one
thread each (a fleet joining together) or one after another. Per mode and size: median,
p90 and max of each step and of the total, and the time from the home being up to each
station being associated.

The original system (mac80211_hwsim + hostapd + wpa_supplicant) slept fixed times before
a station could scan at all: 5 s after loading the radio module, 2 s after starting the
AP, 5 s after starting the supplicant. That 12 s stands beside our measured time from
home-up to associated as a ratio; it is a lower bound on the difference, since the old
system still had its scan, association and DHCP to do after the 12 s.

The medium's CPU time is its container's cgroup CPU usage (as bench_medium.py reads
it), sampled around bring-up and around provisioning. The helpers poll the station's
control interface through the medium, so part of that CPU is the polling itself.

Every Docker object is labelled and removed with its home. Prints JSON and writes
benchmarks/results/wifi_provisioning.json.

    .venv/bin/python benchmarks/bench_wifi.py [--rounds 3] [--sizes 1,5,20]
        [--modes concurrent,sequential] [--no-save]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from machine import machine, write_result

from pytest_cirque import wifi
from pytest_cirque.capabilities.runtime.wifi import DNSMASQ_LOG
from pytest_cirque.core import identity
from pytest_cirque.core.errors import CirqueError
from pytest_cirque.homes.home import Home
from pytest_cirque.homes.session import Cirque

SSID = "bench"
PSK = "correct horse battery"
STEPS = ("scan", "associate", "dhcp", "ping")
MODES = ("concurrent", "sequential")
#: The original system's fixed sleeps before a station could scan (seconds).
BASELINE_WAITS_S = {
    "after_loading_mac80211_hwsim": 5.0,
    "after_starting_hostapd": 2.0,
    "after_starting_wpa_supplicant": 5.0,
}
BASELINE_FIXED_WAIT_S = sum(BASELINE_WAITS_S.values())
MEDIUM_LOG_TAIL = 40
#: A step slower than this gets its evidence recorded (dnsmasq's and the control log).
SLOW_STEP_S = 5.0


def spec(stations: int) -> dict[str, Any]:
    nodes: dict[str, Any] = {
        "ap": {"image": "wifi-ap", "capabilities": [{"WiFiAP": {"ssid": SSID, "psk": PSK}}]}
    }
    for i in range(stations):
        nodes[f"sta{i}"] = {"capabilities": ["WiFi"]}
    return nodes


def medium_cpu_s(home: Home) -> float:
    """CPU seconds the home's WiFi medium container has used so far."""
    return home.medium("wifi").cpu_seconds()


def provision_one(home: Home, ap: wifi.AccessPoint, name: str, home_up: float) -> dict[str, Any]:
    """Provision one station; its step durations and when it was associated, or its failure."""
    started, started_wall = time.monotonic(), time.time()
    try:
        report = wifi.provision(home[name], ap)
    except CirqueError as exc:
        return {
            "station": name,
            "failed_step": getattr(exc, "step", None),
            "error": str(exc),
            "log_tail": getattr(exc, "log", "").splitlines()[-15:],
        }
    steps = {step: report.steps[step] for step in STEPS}
    return {
        "station": name,
        "started_at": time.strftime("%H:%M:%S", time.localtime(started_wall))
        + f".{int(started_wall % 1 * 1000):03d}",
        "steps": steps,
        "total_s": report.total_s,
        "own_start_to_associated_s": steps["scan"] + steps["associate"],
        "home_up_to_associated_s": started - home_up + steps["scan"] + steps["associate"],
    }


def evidence(home: Home, result: dict[str, Any]) -> dict[str, Any]:
    """What the AP's dnsmasq and the station's control interface saw of a slow station."""
    station = home[result["station"]]
    mac = wifi.status(station).get("address", "")
    dnsmasq = home["ap"].exec(["sh", "-c", f"grep -i '{mac}' {DNSMASQ_LOG} || true"]).stdout
    return {
        **result,
        "mac": mac,
        "dnsmasq": dnsmasq.splitlines()[-20:],
        "control_log": wifi.control_log(station, tail=25).splitlines(),
    }


def one_home(service: Cirque, stations: int, mode: str) -> dict[str, Any]:
    """Bring a home up, provision its stations in ``mode``, tear it down."""
    started = time.monotonic()
    home = service.create_home(spec(stations), name=f"wifi{stations}{mode[0]}")
    bring_up = time.monotonic() - started
    try:
        cpu_after_up = medium_cpu_s(home)
        # Home-up for the stations: after the benchmark's own CPU reading, so that the exec
        # it costs is not counted as time to associated.
        home_up = time.monotonic()
        ap = wifi.access_point(home["ap"])
        names = [f"sta{i}" for i in range(stations)]
        provision_started = time.monotonic()
        if mode == "concurrent":
            with ThreadPoolExecutor(max_workers=stations) as pool:
                results = list(pool.map(lambda n: provision_one(home, ap, n, home_up), names))
        else:
            results = [provision_one(home, ap, n, home_up) for n in names]
        wall = time.monotonic() - provision_started
        cpu = medium_cpu_s(home) - cpu_after_up
        failures = [r for r in results if "error" in r]
        slow = [
            evidence(home, r)
            for r in results
            if "steps" in r and max(r["steps"].values()) > SLOW_STEP_S
        ]
        medium_log = home.medium("wifi").log(tail=MEDIUM_LOG_TAIL) if failures or slow else ""
        status = home.medium("wifi").status()
    finally:
        home.destroy()
    for failure in failures:
        print(f"{stations} stations, {mode}: {failure['error']}", file=sys.stderr)
    for station in slow:
        print(f"{stations} stations, {mode}: slow: {json.dumps(station)}", file=sys.stderr)
    if medium_log:
        print(f"--- medium log tail ---\n{medium_log}", file=sys.stderr)
    return {
        "bring_up_s": bring_up,
        "medium_cpu_s_bring_up": cpu_after_up,
        "provision_wall_s": wall,
        "medium_cpu_s_provisioning": cpu,
        "medium_cpu_cores_provisioning": cpu / wall if wall else 0.0,
        "stations": [r for r in results if "error" not in r],
        "failures": failures,
        "slow_stations": slow,
        "medium_log_tail": medium_log.splitlines(),
        "drops": dict(status.drops),
    }


def stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    return {
        "count": len(values),
        "median": round(statistics.median(ordered), 3),
        "p90": round(ordered[math.ceil(0.9 * len(ordered)) - 1], 3),
        "max": round(ordered[-1], 3),
    }


def summarise(runs: list[dict[str, Any]], stations: int) -> dict[str, Any]:
    done = [s for run in runs for s in run["stations"]]
    associated = stats([s["home_up_to_associated_s"] for s in done])
    own = stats([s["own_start_to_associated_s"] for s in done])
    cpu = [run["medium_cpu_s_provisioning"] for run in runs]
    return {
        "homes": len(runs),
        "stations_provisioned": len(done),
        "stations_failed": sum(len(run["failures"]) for run in runs),
        "steps_s": {step: stats([s["steps"][step] for s in done]) for step in STEPS},
        "total_s": stats([s["total_s"] for s in done]),
        # Every station of the fleet starts at home-up; one after another, station k waits
        # for the k before it, so its own start is the fairer point there.
        "home_up_to_associated_s": associated,
        "own_start_to_associated_s": own,
        "provision_wall_s": stats([run["provision_wall_s"] for run in runs]),
        "medium_cpu_s": stats(cpu),
        "medium_cpu_cores": stats([run["medium_cpu_cores_provisioning"] for run in runs]),
        "medium_cpu_ms_per_station": round(statistics.median(cpu) * 1000 / stations, 1)
        if cpu
        else None,
        "failures": [f for run in runs for f in run["failures"]],
        "slow_stations": [s for run in runs for s in run["slow_stations"]],
        "drops": [run["drops"] for run in runs],
        "medium_log_tails": [run["medium_log_tail"] for run in runs if run["medium_log_tail"]],
    }


def baseline(results: dict[str, Any]) -> dict[str, Any]:
    """The original system's fixed waits beside our median time to associated."""
    rows = {}
    for size, by_mode in results.items():
        rows[size] = {}
        for mode, summary in by_mode.items():
            key = "home_up_to_associated_s" if mode == "concurrent" else (
                "own_start_to_associated_s"
            )
            median = summary[key].get("median")
            rows[size][mode] = {
                "our_median_to_associated_s": median,
                "measured_as": key,
                "ratio": round(BASELINE_FIXED_WAIT_S / median, 1) if median else None,
            }
    return {
        "system": "mac80211_hwsim + hostapd + wpa_supplicant",
        "fixed_waits_s": BASELINE_WAITS_S,
        "baseline_fixed_wait_s": BASELINE_FIXED_WAIT_S,
        "note": "the baseline is the wait before a station could even scan; the ratio is "
        "baseline_fixed_wait_s / our median to associated, from home-up for the fleet (every "
        "station starts then) and from the station's own start one after another",
        "by_size": rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="1,5,20")
    parser.add_argument("--modes", default=",".join(MODES), help="concurrent, sequential")
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    chosen = tuple(m for m in args.modes.split(",") if m)
    if not chosen or set(chosen) - set(MODES):
        parser.error(f"--modes: give one or both of {', '.join(MODES)} (got {args.modes!r})")

    load_at_start = [round(x, 2) for x in os.getloadavg()]
    runs: dict[int, dict[str, list[dict[str, Any]]]] = {
        size: {mode: [] for mode in chosen} for size in sizes
    }
    bring_up_failures: list[dict[str, Any]] = []
    started = time.monotonic()
    with Cirque(run_id=identity.new_run_id(), worker="bench") as service:
        docker_version = service.client.version().get("Version")
        # Warm-up: images resolved and page cache filled, not counted.
        one_home(service, 1, "sequential")
        for round_number in range(args.rounds):
            # Alternate the order so drift on a shared machine hits both modes alike.
            modes = chosen if round_number % 2 == 0 else chosen[::-1]
            for size in sizes:
                for mode in modes:
                    try:
                        run = one_home(service, size, mode)
                    except CirqueError as exc:  # the home did not come up: say so, go on
                        print(f"{size} stations, {mode}: bring-up: {exc}", file=sys.stderr)
                        bring_up_failures.append(
                            {"stations": size, "mode": mode, "error": str(exc)}
                        )
                        continue
                    runs[size][mode].append(run)
                    print(
                        f"round {round_number + 1}: {size} stations {mode}: up "
                        f"{run['bring_up_s']:.2f} s, provisioned {len(run['stations'])}/"
                        f"{size} in {run['provision_wall_s']:.2f} s",
                        file=sys.stderr,
                    )

    results = {
        str(size): {mode: summarise(runs[size][mode], size) for mode in chosen}
        for size in sizes
    }
    bring_up = {
        str(size): stats([run["bring_up_s"] for mode in chosen for run in runs[size][mode]])
        for size in sizes
    }
    largest = max(sizes)
    data = {
        "benchmark": "wifi_provisioning",
        "machine": {
            **machine(),
            "docker_version": docker_version,
            "load_average_at_start": load_at_start,
        },
        "rounds": args.rounds,
        "wall_s": round(time.monotonic() - started, 1),
        "ap": {"image": "wifi-ap", "security": "WPA2-PSK", "mode": "router"},
        "bring_up_s": bring_up,
        "bring_up_failures": bring_up_failures,
        "provisioning": results,
        "baseline": baseline(results),
    }
    data["medium_cpu_at_largest"] = {
        "stations": largest,
        **{
            mode: {
                "cpu_s": results[str(largest)][mode]["medium_cpu_s"],
                "cores": results[str(largest)][mode]["medium_cpu_cores"],
                "bring_up_cpu_s": stats(
                    [run["medium_cpu_s_bring_up"] for run in runs[largest][mode]]
                ),
            }
            for mode in chosen
        },
    }
    print(json.dumps(data, indent=2))
    if not args.no_save:
        path = write_result("wifi_provisioning", data)
        print(f"written: {path}", file=sys.stderr)
    failed = sum(r[m]["stations_failed"] for r in results.values() for m in chosen)
    return 1 if failed or bring_up_failures else 0


if __name__ == "__main__":
    sys.exit(main())
