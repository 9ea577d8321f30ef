"""The radio medium on real Docker: RTT it adds, TCP throughput through it, and
configured versus measured latency.

Two plain nodes from the project base image get wlan0 on one medium (802.11g, airtime
budget on). They are also joined by a labelled internal bridge network, the kernel's own
path between the same two containers, which is the baseline the medium's added RTT is
measured against. Throughput is TCP from python3 sockets in the nodes, with and without
the airtime budget; the medium's CPU is its container's cgroup CPU time over the
transfer. Everything is labelled and removed at the end.

    .venv/bin/python benchmarks/bench_medium.py [--pings 300] [--seconds 8] [--out FILE]

Goals (issue 4): median RTT added < 1 ms with no latency configured; TCP >= 25 Mbit/s
with the medium under one core.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import docker.errors
import tenacity
from machine import machine

from pytest_cirque.core import identity
from pytest_cirque.core.docker_backend import Backend
from pytest_cirque.core.images import ensure_image
from pytest_cirque.radios.client.container import MediumContainer

WLAN = {"n1": "10.78.0.1", "n2": "10.78.0.2"}
PORT = 5001
LATENCIES_MS = (0, 1, 5, 10, 20, 50, 100)

SINK = """
import socket, sys, time
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((sys.argv[1], int(sys.argv[2])))
server.listen(1)
conn, _ = server.accept()
total, first = 0, None
while True:
    data = conn.recv(1 << 16)
    if not data:
        break
    first = first or time.monotonic()
    total += len(data)
print(total, time.monotonic() - first, flush=True)
"""

SOURCE = """
import socket, sys, time
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])))
chunk, end = b"x" * (1 << 16), time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    conn.sendall(chunk)
conn.close()
"""

def sh(container: Any, command: str) -> str:
    result = container.exec_run(["sh", "-c", command])
    return result.output.decode(errors="replace")


def ping_rtts(node: Any, address: str, count: int, interval: float = 0.01) -> list[float]:
    output = sh(node, f"ping -n -c {count} -i {interval} -W 2 {address}")
    return [float(value) for value in re.findall(r"time=([\d.]+) ms", output)]


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "count": len(values),
        "median": round(statistics.median(values), 3),
        "p10": round(ordered[len(ordered) // 10], 3),
        "p90": round(ordered[len(ordered) * 9 // 10], 3),
        "mean": round(statistics.fmean(values), 3),
    }


def configured_vs_measured(
    set_latency: Callable[[float], None],
    rtts: Callable[[int, float], list[float]],
    pings: int,
) -> list[dict[str, float]]:
    """Median RTT for each one-way latency of LATENCIES_MS set on both directions of a
    link (``set_latency``), measured by ``rtts(count, interval)``; latency 0 at the end."""
    rows = []
    for configured in LATENCIES_MS:
        set_latency(configured)
        measured = statistics.median(rtts(max(20, pings // 5), max(0.01, configured / 500)))
        rows.append(
            {
                "configured_one_way_ms": configured,
                "configured_rtt_ms": 2 * configured,
                "measured_rtt_median_ms": round(measured, 3),
                "error_ms": round(measured - 2 * configured, 3),
            }
        )
    set_latency(0)
    return rows


def tcp_throughput(
    medium: MediumContainer, nodes: dict[str, Any], seconds: float
) -> dict[str, float]:
    sink, source = nodes["n2"], nodes["n1"]
    sink.put_archive("/tmp", _script_archive({"sink.py": SINK, "source.py": SOURCE}))
    source.put_archive("/tmp", _script_archive({"sink.py": SINK, "source.py": SOURCE}))
    exec_id = sink.client.api.exec_create(
        sink.id, ["python3", "/tmp/sink.py", WLAN["n2"], str(PORT)]
    )["Id"]
    stream = sink.client.api.exec_start(exec_id, stream=True)
    for attempt in tenacity.Retrying(
        stop=tenacity.stop_after_delay(30), wait=tenacity.wait_fixed(0.05), reraise=True
    ):
        with attempt:  # the sink listens on its port
            assert f":{PORT} " in sh(sink, f"ss -Hltn 'sport = :{PORT}'")
    cpu_before = medium.cpu_seconds()
    started = time.monotonic()
    sh(source, f"python3 /tmp/source.py {WLAN['n2']} {PORT} {seconds}")
    wall = time.monotonic() - started
    cpu_after = medium.cpu_seconds()
    total, elapsed = (float(x) for x in b"".join(stream).decode().split())
    return {
        "mbit_per_s": round(total * 8 / elapsed / 1e6, 2),
        "megabytes": round(total / 1e6, 1),
        "medium_cpu_cores": round((cpu_after - cpu_before) / wall, 3),
    }


def _script_archive(files: dict[str, str]) -> bytes:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def run(pings: int, seconds: float) -> dict[str, Any]:
    client = docker.from_env()
    run_identity = identity.RunIdentity.create()
    home_id = run_identity.home_id("bench-medium")
    labels = {
        identity.RUN: run_identity.run_id,
        identity.HOME: home_id,
        identity.OWNER: run_identity.owner.label,
    }
    base = ensure_image(client, "base")
    medium = MediumContainer(
        Backend(client),
        name=identity.object_name(home_id, "wifi"),
        image=ensure_image(client, "medium"),
        labels=labels,
    )
    nodes: dict[str, Any] = {}
    network = None
    try:
        network = client.networks.create(
            identity.object_name(home_id, "wired"),
            internal=True,
            labels={**labels, identity.ROLE: identity.ROLE_NETWORK},
        )
        started = time.monotonic()
        medium.start()
        start_s = time.monotonic() - started
        attach_s = []
        for name, address in WLAN.items():
            nodes[name] = client.containers.run(
                base,
                name=identity.object_name(home_id, name),
                labels={**labels, identity.ROLE: identity.ROLE_NODE, identity.NODE: name},
                network=network.name,
                detach=True,
            )
            started = time.monotonic()
            medium.attach(nodes[name], name, addresses=[f"{address}/24"])
            attach_s.append(time.monotonic() - started)
        nodes["n1"].reload()
        nodes["n2"].reload()
        wired_n2 = nodes["n2"].attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]

        control_s = []
        for _ in range(10):
            started = time.monotonic()
            medium.move("n2", (1.0, 0.0))
            control_s.append(time.monotonic() - started)

        ping_rtts(nodes["n1"], WLAN["n2"], 3)  # resolve ARP on both paths first
        ping_rtts(nodes["n1"], wired_n2, 3)
        wired = summary(ping_rtts(nodes["n1"], wired_n2, pings))
        medium_rtt = summary(ping_rtts(nodes["n1"], WLAN["n2"], pings))

        latency = configured_vs_measured(
            lambda ms: medium.set_link("n1", "n2", latency_ms=ms),
            lambda count, interval: ping_rtts(nodes["n1"], WLAN["n2"], count, interval),
            pings,
        )

        throughput_airtime = tcp_throughput(medium, nodes, seconds)
        medium.set_medium(airtime=False)
        throughput_raw = tcp_throughput(medium, nodes, seconds)
        status = medium.status()
    finally:
        for node in nodes.values():
            with contextlib.suppress(docker.errors.NotFound):
                node.remove(force=True)
        medium.remove()
        if network is not None:
            network.remove()
        client.close()

    added = round(medium_rtt["median"] - wired["median"], 3)
    return {
        "benchmark": "medium",
        "host": medium_host(),
        "phy": "802.11g",
        "medium_start_s": round(start_s, 2),
        "attach_s": [round(s, 2) for s in attach_s],
        # One runtime change (move, cut, ...): a docker exec into the medium container.
        "control_request_median_s": round(statistics.median(control_s), 3),
        "ping_rtt_ms": {"bridge_baseline": wired, "through_medium": medium_rtt},
        "rtt_added_median_ms": added,
        "rtt_added_goal_ms": 1.0,
        "rtt_added_goal_met": added < 1.0,
        "latency": latency,
        "tcp": {
            "airtime_80211g": throughput_airtime,
            "airtime_off": throughput_raw,
            "goal_mbit_per_s": 25,
            # The relay's own capacity: what it carries under one core with no airtime model.
            "relay_goal_met": throughput_raw["mbit_per_s"] >= 25
            and throughput_raw["medium_cpu_cores"] < 1.0,
            # With the 802.11g airtime model every TCP segment and every TCP ACK pays its
            # DIFS, backoff, preamble and 802.11 ACK, as on a real 802.11g channel.
            "airtime_80211g_goal_met": throughput_airtime["mbit_per_s"] >= 25
            and throughput_airtime["medium_cpu_cores"] < 1.0,
        },
        "drops": dict(status.drops),
    }


def medium_host() -> dict[str, Any]:
    """The machine block under the name and keys medium.json has always used."""
    block = machine()
    return {
        "cpus": block["cores"],
        "load_average_1m": block["load_average_1m_at_end"],
        "kernel": block["kernel"],
        "python": block["python"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pings", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--out", type=Path, help="also write the JSON to this file")
    args = parser.parse_args()
    result = run(args.pings, args.seconds)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
