"""What the 802.11 capture costs the WiFi medium: frames/s through the relay with the
capture off (the baseline) and on, side by side in one run, as a ratio; and, to tell the
translation from the writing, the former capture (the Ethernet frames as they are).

The relay runs in this process as it runs in its container (the same WifiMedium), its
TAPs stood in for by socket pairs: an AP and a station that joined over WPA2-PSK, so
with the capture on every data frame is translated to 802.11 and CCMP-protected with
the real temporal key before it is written. The airtime budget is off, so the numbers are
the relay's own CPU cost per frame. Rounds alternate off and on, so the load of a shared
machine hits both alike; the medians are compared.

    .venv/bin/python benchmarks/bench_wifi_capture.py [--frames 20000] [--rounds 5]
        [--sizes 100,1500] [--no-save]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import tempfile
import time
import types
from pathlib import Path
from typing import Any

from machine import machine, write_result

from pytest_cirque.radios.relay.link_model import LinkModel
from pytest_cirque.radios.relay.medium import Medium
from pytest_cirque.radios.relay.protocol import (
    Attach,
    CaptureStart,
    CaptureStop,
    R,
    Request,
    StartAccessPoint,
    StartStation,
    StationCtrl,
)
from pytest_cirque.radios.relay.wifi import WifiMedium

AP_MAC = "02:00:00:00:00:01"
STA_MAC = "02:00:00:00:00:02"
SSID, PSK = "bench", "correct horse battery"
TOKEN = "0123456789abcdef" * 2
#: Frames a node hands the relay at once (its TAP queue), then the relay drains them.
BURST = 64


class Clock:
    """The relay's clock, moved by hand to run the association's timers."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Bench:
    """A WifiMedium with an AP and an associated station on socket pairs."""

    def __init__(self, folder: Path) -> None:
        self.clock = Clock()
        self.medium = WifiMedium(
            LinkModel(airtime=False),
            str(folder / "control.sock"),
            clock=self.clock,
            log=lambda _line: None,
            switch_carrier=lambda _fd, _on: None,
        )
        self.nodes: dict[str, socket.socket] = {}
        self.fds: dict[str, int] = {}
        for name, position in (("ap", [0.0, 0.0]), ("sta", [5.0, 0.0])):
            node, relay = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            node.setblocking(False)
            self.nodes[name], self.fds[name] = node, relay.fileno()
            self.call(Attach(name=name, position=position), [relay.detach()])
        self.call(StartAccessPoint(name="ap", mac=AP_MAC, ssid=SSID, psk=PSK))
        self.call(StartStation(name="sta", mac=STA_MAC, token=TOKEN))
        network = self.ctrl("ADD_NETWORK").strip()
        self.ctrl(f'SET_NETWORK {network} ssid "{SSID}"')
        self.ctrl(f'SET_NETWORK {network} psk "{PSK}"')
        self.ctrl(f"SELECT_NETWORK {network}")
        for _ in range(400):  # two seconds of the relay's timers, 5 ms apart
            self.clock.now += 0.005
            self.medium._deliver_due()
            self.medium._run_timers()
        state = self.ctrl("STATUS")
        if "wpa_state=COMPLETED" not in state:
            raise SystemExit(f"the station did not join: {state!r}")

    def call(self, request: Request[R], fds: list[int] | None = None) -> R:
        reply = self.medium.handle(request.encode(), fds)
        if not reply["ok"]:
            raise SystemExit(f"{request.OP} refused: {reply['error']}")
        return request.decode_reply(reply)

    def ctrl(self, command: str) -> str:
        return self.call(StationCtrl(name="sta", command=command)).reply

    def frames_per_s(self, count: int, size: int) -> float:
        """Send ``count`` frames of ``size`` bytes from the station to the AP's node."""
        mac = bytes.fromhex
        frame = mac(AP_MAC.replace(":", "")) + mac(STA_MAC.replace(":", "")) + b"\x08\x00"
        frame += bytes(size - len(frame))
        sta, ap = self.nodes["sta"], self.nodes["ap"]
        received = 0
        started = time.perf_counter()
        for _ in range(count // BURST):
            for _ in range(BURST):
                sta.send(frame)
            self.medium._on_readable(self.fds["sta"])
            while True:
                try:
                    ap.recv(65536)
                except BlockingIOError:
                    break
                received += 1
        elapsed = time.perf_counter() - started
        if received != count // BURST * BURST:
            raise SystemExit(f"{received} of {count // BURST * BURST} frames arrived")
        return received / elapsed

    def close(self) -> None:
        self.medium.close()
        for node in self.nodes.values():
            node.close()


def run(frames: int, rounds: int, sizes: list[int]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="cq-bench-", dir="/tmp") as folder:
        bench = Bench(Path(folder))
        try:
            bench.frames_per_s(BURST * 20, 1500)  # warm-up
            medium = bench.medium
            dot11 = medium.capture_frame
            ethernet = types.MethodType(Medium.capture_frame, medium)
            for size in sizes:
                speeds: dict[str, list[float]] = {"off": [], "ethernet": [], "dot11": []}
                for index in range(rounds):
                    speeds["off"].append(bench.frames_per_s(frames, size))
                    for variant, writer in (("ethernet", ethernet), ("dot11", dot11)):
                        medium.capture_frame = writer  # type: ignore[method-assign]
                        bench.call(CaptureStart(path=f"{folder}/{variant}-{size}-{index}.pcap"))
                        speeds[variant].append(bench.frames_per_s(frames, size))
                        written = bench.call(CaptureStop()).frames
                        if written < frames // BURST * BURST:
                            raise SystemExit(f"the capture holds {written} frames, too few")
                median = {variant: statistics.median(v) for variant, v in speeds.items()}
                results[f"{size}_bytes"] = {
                    "capture_off_frames_per_s": round(median["off"]),
                    "capture_ethernet_frames_per_s": round(median["ethernet"]),
                    "capture_802_11_frames_per_s": round(median["dot11"]),
                    "802_11_vs_off_ratio": round(median["dot11"] / median["off"], 3),
                    "802_11_vs_ethernet_ratio": round(median["dot11"] / median["ethernet"], 3),
                    "802_11_capture_us_per_frame": round(
                        (1 / median["dot11"] - 1 / median["off"]) * 1e6, 1
                    ),
                    "rounds": {v: [round(x) for x in s] for v, s in speeds.items()},
                }
        finally:
            bench.close()
    return {
        "benchmark": "wifi_capture",
        "what": "frames/s through the WiFi relay (station to AP, WPA2, airtime off): no "
        "capture, the former Ethernet capture, the 802.11 capture with CCMP",
        "frames_per_round": frames // BURST * BURST,
        "machine": machine(),
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", default="100,1500")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    result = run(args.frames, args.rounds, [int(s) for s in args.sizes.split(",")])
    print(json.dumps(result, indent=2))
    if not args.no_save:
        write_result("wifi_capture", result)


if __name__ == "__main__":
    main()
