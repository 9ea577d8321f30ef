"""A WiFi link end to end: RTT the medium adds, TCP throughput, configured vs measured
latency, between an associated station and its access point.

A home of one AP (router mode) and one station, both also on the home's LanAccess
segment, so the same two containers have two paths: the kernel's bridge (the baseline)
and the WiFi medium after a real association (802.11g airtime model, capture on, as a
test gets it). TCP runs from python3 sockets in the nodes; the medium's CPU is its
container's cgroup CPU time over the transfer. Everything is removed at the end.

    .venv/bin/python benchmarks/bench_wifi_link.py [--pings 300] [--seconds 8]

Goals (issue 4): median RTT added < 1 ms with no latency configured; TCP >= 25 Mbit/s
(the practical rate of a real 802.11g link) with the medium under one core.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from typing import Any

from bench_medium import PORT, SINK, SOURCE, configured_vs_measured, summary
from machine import machine, write_result

from pytest_cirque import wifi
from pytest_cirque.homes.session import Cirque

SPEC = {
    "ap": {
        "image": "wifi-ap",
        "capabilities": ["LanAccess", {"WiFiAP": {"ssid": "bench", "psk": "correct horse"}}],
    },
    "sta": {"capabilities": ["LanAccess", {"WiFi": {"lan": True, "position": [5, 0]}}]},
}


def ping_rtts(node: Any, address: str, count: int, interval: float = 0.01) -> list[float]:
    command = ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", "2", address]
    output = node.exec(command, timeout=600).stdout
    return [float(value) for value in re.findall(r"time=([\d.]+) ms", output)]


def tcp(home: Any, target: str, seconds: float) -> dict[str, float]:
    """TCP from the station to ``target`` on the AP; the medium's CPU over the transfer."""
    ap, sta, medium = home["ap"], home["sta"], home.media["wifi"]
    for node in (ap, sta):
        node.put_file("/tmp/sink.py", SINK)
        node.put_file("/tmp/source.py", SOURCE)
    sink = ap.exec_background(["python3", "/tmp/sink.py", target, str(PORT)])
    ap.wait_until(
        lambda: f":{PORT} " in ap.exec(["ss", "-Hltn", f"sport = :{PORT}"]).stdout, "the sink"
    )
    cpu_before = medium.cpu_seconds()
    started = time.monotonic()
    sta.exec(["python3", "/tmp/source.py", target, str(PORT), str(seconds)], timeout=seconds + 60)
    wall = time.monotonic() - started
    cpu_after = medium.cpu_seconds()
    total, elapsed = (float(x) for x in sink.wait(timeout=60).stdout.split())
    return {
        "mbit_per_s": round(total * 8 / elapsed / 1e6, 2),
        "megabytes": round(total / 1e6, 1),
        "medium_cpu_cores": round((cpu_after - cpu_before) / wall, 3),
    }


def run(pings: int, seconds: float) -> dict[str, Any]:
    with Cirque() as service:
        home = service.create_home(SPEC, name="bench-wifi-link")
        try:
            ap_info = wifi.access_point(home["ap"])
            report = wifi.provision(home["sta"], ap_info)
            sta, medium = home["sta"], home.media["wifi"]
            over_air, over_wire = ap_info.address, home["ap"].ip
            ping_rtts(sta, over_air, 3)
            ping_rtts(sta, over_wire, 3)
            wired = summary(ping_rtts(sta, over_wire, pings))
            air = summary(ping_rtts(sta, over_air, pings))

            latency = configured_vs_measured(
                lambda ms: medium.set_link("sta", "ap", latency_ms=ms),
                lambda count, interval: ping_rtts(sta, over_air, count, interval),
                pings,
            )

            with_airtime = tcp(home, over_air, seconds)
            medium.set_medium(airtime=False)
            without_airtime = tcp(home, over_air, seconds)
            drops = medium.status().drops
        finally:
            home.destroy()
    added = round(air["median"] - wired["median"], 3)
    return {
        "benchmark": "wifi_link",
        "machine": machine(),
        "provisioning_s": {k: round(v, 3) for k, v in report.steps.items()},
        "ping_rtt_ms": {"kernel_bridge_baseline": wired, "over_wifi": air},
        "rtt_added_median_ms": added,
        "rtt_added_goal_ms": 1.0,
        "rtt_added_goal_met": added < 1.0,
        "latency": latency,
        "tcp": {
            "airtime_80211g": with_airtime,
            "airtime_off": without_airtime,
            "goal_mbit_per_s": 25,
            "airtime_80211g_goal_met": with_airtime["mbit_per_s"] >= 25
            and with_airtime["medium_cpu_cores"] < 1.0,
            "airtime_off_goal_met": without_airtime["mbit_per_s"] >= 25
            and without_airtime["medium_cpu_cores"] < 1.0,
        },
        "drops": drops,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pings", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    result = run(args.pings, args.seconds)
    print(json.dumps(result, indent=2))
    write_result("wifi_link", result)


if __name__ == "__main__":
    main()
