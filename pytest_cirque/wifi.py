"""WiFi provisioning in tests: scan, associate, DHCP, ping, and all four as ``provision``.

Each helper waits on a condition with a deadline and fails with one line that names the
station, the step and what was seen instead, with the station's control-interface log
and a capture of the air attached (``ProvisioningError.log``, ``.capture``).

The helpers speak to the station's control interface through the medium (the same
interface the node's wpa_cli reaches at /var/run/wpa_supplicant/wlan0), so they work
with any image; DHCP and ping run the node's own client and ``ping``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_cirque.capabilities.model.wifi import WiFiAP
from pytest_cirque.capabilities.runtime.wifi import AccessPointDriver
from pytest_cirque.core import ownership
from pytest_cirque.core.errors import CirqueError, NodeError, ProvisioningError, WaitTimeout
from pytest_cirque.core.waiting import wait_until
from pytest_cirque.homes.ping import PingResult
from pytest_cirque.homes.ping import ping as node_ping
from pytest_cirque.radios.relay.protocol import WIFI_INTERFACE as INTERFACE
from pytest_cirque.radios.relay.protocol import WIFI_MEDIUM as MEDIUM

if TYPE_CHECKING:
    from pytest_cirque.homes.node import Node
    from pytest_cirque.radios.client.container import MediumContainer
    from pytest_cirque.radios.client.wifi import WifiClient

SCAN_TIMEOUT_S = 10.0
ASSOCIATE_TIMEOUT_S = 15.0
DHCP_TIMEOUT_S = 30.0
#: Lines of the control log attached to a failure.
CONTROL_LOG_TAIL = 60


@dataclass
class AccessPoint:
    """An access point node of a home, as tests use it."""

    node: Node
    ssid: str
    psk: str | None
    bssid: str
    #: The AP's address on its WiFi subnet (router mode), where stations' pings go.
    address: str | None
    subnet: str | None
    hidden: bool = False

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def lan_ip(self) -> str | None:
        """The AP's address on the home's wired LAN (its "LAN side")."""
        return self.node.ip


@dataclass
class ProvisionReport:
    """What ``provision`` did: each step's duration in seconds, and where it ended."""

    station: str
    ssid: str
    bssid: str
    ip_address: str
    steps: dict[str, float] = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        return sum(self.steps.values())


# --- the station's control interface ----------------------------------------------------


def medium_of(node: Node) -> MediumContainer:
    return node.medium(MEDIUM)


def wifi_of(node: Node) -> WifiClient:
    """The typed WiFi ops of the node's home's WiFi medium."""
    return medium_of(node).as_wifi()


def ctrl(station: Node, command: str) -> str:
    """Send one control-interface command to the station (as wpa_cli would)."""
    return wifi_of(station).ctrl(station.name, command)


def status(station: Node) -> dict[str, str]:
    """The station's STATUS as a dict (wpa_state, bssid, ssid, ip_address, ...)."""
    return dict(line.split("=", 1) for line in ctrl(station, "STATUS").splitlines() if "=" in line)


def control_log(station: Node, tail: int = CONTROL_LOG_TAIL) -> str:
    """The station's recent control-interface log: commands, replies and events."""
    try:
        lines = wifi_of(station).log(station.name)
    except CirqueError as exc:
        return f"(control log unavailable: {exc})"
    return "\n".join(lines[-tail:])


def access_point(node: Node) -> AccessPoint:
    """The access point behind a node with the WiFiAP capability."""
    driver = node.driver(WiFiAP)
    if not isinstance(driver, AccessPointDriver):
        raise NodeError(f"node {node.name} is not an access point; give it the WiFiAP capability")
    info = wifi_of(node).status().aps.get(node.name)
    if info is None:
        raise NodeError(f"node {node.name}: its access point is not on the WiFi medium")
    wanted = driver.capability
    return AccessPoint(
        node=node,
        ssid=wanted.ssid,
        psk=wanted.psk,
        bssid=info.bssid,
        address=driver.address,
        subnet=None if driver.network is None else str(driver.network),
        hidden=wanted.hidden,
    )


def _failure(station: Node, step: str, message: str) -> ProvisioningError:
    """The error of a failed step, with the station's control log and the air so far."""
    try:
        # In the run's folder (core.ownership): gone with the run, unless the failure
        # report moves it into the test's log folder.
        target = ownership.temp_dir("cirque-air-") / f"{station.name}-{step}.pcap"
        saved = medium_of(station).save_capture(target)
    except (CirqueError, OSError):
        saved = None
    log = f"--- control interface of {station.name} ---\n{control_log(station)}"
    return ProvisioningError(
        f"station {station.name}: {step}: {message}", step=step, log=log, capture=saved
    )


# --- the four steps ---------------------------------------------------------------------


def scan(station: Node, ssid: str, timeout: float = SCAN_TIMEOUT_S) -> dict[str, Any]:
    """Scan until ``ssid`` is among the results; returns its best entry (bssid,
    frequency, signal, flags, ssid)."""

    def found() -> dict[str, Any] | None:
        if ctrl(station, "SCAN").strip() not in ("OK", "FAIL-BUSY"):
            return None
        return best_result(ctrl(station, "SCAN_RESULTS"), ssid)

    try:
        # ignore=(): an error of ctrl() is no "not yet"; it ends the wait and is raised.
        return wait_until(found, f"SSID {ssid!r}", timeout, ignore=(), max_interval=0.15)
    except WaitTimeout:
        seen = sorted({r["ssid"] for r in parse_scan_results(ctrl(station, "SCAN_RESULTS"))})
        raise _failure(
            station,
            "scan",
            f"SSID {ssid!r} not found within {timeout:g} s (heard: {', '.join(seen) or 'nothing'})",
        ) from None


def parse_scan_results(text: str) -> list[dict[str, Any]]:
    results = []
    for line in text.splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) >= 4:
            bssid, frequency, signal, flags = parts[:4]
            results.append(
                {
                    "bssid": bssid,
                    "frequency": int(frequency),
                    "signal": int(signal),
                    "flags": flags,
                    "ssid": parts[4] if len(parts) > 4 else "",
                }
            )
    return results


def best_result(text: str, ssid: str) -> dict[str, Any] | None:
    matches = [r for r in parse_scan_results(text) if r["ssid"] == ssid]
    return max(matches, key=lambda r: r["signal"]) if matches else None


def configure_network(station: Node, ssid: str, psk: str | None, hidden: bool = False) -> int:
    """Add a network block for ``ssid`` (WPA2-PSK, or open without ``psk``); its id."""
    network_id = ctrl(station, "ADD_NETWORK").strip()
    if not network_id.isdigit():
        raise NodeError(f"station {station.name}: ADD_NETWORK failed: {network_id!r}")
    settings = [("ssid", _quoted(ssid))]
    settings.append(("psk", _quoted(psk)) if psk is not None else ("key_mgmt", "NONE"))
    if hidden:
        settings.append(("scan_ssid", "1"))
    for name, value in settings:
        reply = ctrl(station, f"SET_NETWORK {network_id} {name} {value}").strip()
        if reply != "OK":
            shown = "***" if name == "psk" else value
            raise NodeError(
                f"station {station.name}: SET_NETWORK {network_id} {name} {shown} refused "
                f"({reply}); check the value"
            )
    return int(network_id)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def associate(
    station: Node,
    ap: AccessPoint | str,
    psk: str | None = None,
    timeout: float = ASSOCIATE_TIMEOUT_S,
    network_id: int | None = None,
) -> dict[str, str]:
    """Configure and select the network and wait for COMPLETED; returns STATUS. A wrong key
    fails at once, as wpa_supplicant reports it (reason=WRONG_KEY)."""
    ssid = ap.ssid if isinstance(ap, AccessPoint) else ap
    if isinstance(ap, AccessPoint) and psk is None:
        psk = ap.psk
    hidden = ap.hidden if isinstance(ap, AccessPoint) else False
    if network_id is None:
        network_id = configure_network(station, ssid, psk, hidden)
    ctrl(station, f"SELECT_NETWORK {network_id}")

    def done() -> dict[str, str] | str | None:
        now = status(station)
        if now.get("wpa_state") == "COMPLETED" and now.get("ssid") == ssid:
            return now
        # A failed handshake disables the network for a while: LIST_NETWORKS shows it.
        for line in ctrl(station, "LIST_NETWORKS").splitlines()[1:]:
            if line.split("\t", 1)[0] == str(network_id) and "[TEMP-DISABLED]" in line:
                return "wrong key"
        return None

    try:
        result = wait_until(done, f"{ssid!r} COMPLETED", timeout, ignore=(), max_interval=0.1)
    except WaitTimeout:
        result = None
    if result == "wrong key":
        raise _failure(
            station,
            "associate",
            f"the AP of {ssid!r} refused the key (CTRL-EVENT-SSID-TEMP-DISABLED reason=WRONG_KEY)",
        )
    if not isinstance(result, dict):
        state = status(station).get("wpa_state", "?")
        raise _failure(
            station,
            "associate",
            f"not associated with {ssid!r} within {timeout:g} s (wpa_state={state})",
        )
    return result


def dhcp(station: Node, timeout: float = DHCP_TIMEOUT_S) -> str:
    """Run the station's own DHCP client on wlan0 until it has a lease; its address."""
    script = (
        f"if command -v dhclient >/dev/null; then "
        f"dhclient -4 -1 -v -pf /run/dhclient.{INTERFACE}.pid "
        f"-lf /run/dhclient.{INTERFACE}.leases {INTERFACE}; "
        f"elif command -v udhcpc >/dev/null; then udhcpc -i {INTERFACE} -n -q -t 10; "
        f"else echo 'no DHCP client (dhclient or udhcpc) in the node image' >&2; exit 3; fi"
    )
    try:
        result = station.exec(["sh", "-c", script], timeout=timeout)
    except CirqueError as exc:
        raise _failure(station, "dhcp", f"no lease within {timeout:g} s ({exc})") from None
    address = wifi_address(station)
    if result.exit_code != 0 or address is None:
        output = (result.stdout + result.stderr).strip().splitlines()
        raise _failure(
            station,
            "dhcp",
            f"no lease (exit {result.exit_code}: {output[-1] if output else 'no output'})",
        )
    return address


def wifi_address(station: Node) -> str | None:
    """The station's IPv4 address on wlan0, or None."""
    result = station.exec(["ip", "-4", "-o", "addr", "show", "dev", INTERFACE])
    match = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", result.stdout)
    return match.group(1) if match else None


def ping(
    station: Node,
    target: str,
    count: int = 3,
    max_loss: float = 0.0,
    interval: float = 0.2,
    deadline_s: float | None = None,
) -> PingResult:
    """Ping ``target`` from the station; fails when more than ``max_loss`` (0..1) is lost."""
    outcome = node_ping(station, target, count, interval, deadline_s=deadline_s)
    if outcome.loss > max_loss:
        raise _failure(
            station,
            "ping",
            f"{outcome.received}/{outcome.sent} replies from {target} "
            f"(loss {outcome.loss:.0%} > {max_loss:.0%})",
        )
    return outcome


def provision(
    station: Node,
    ap: AccessPoint,
    psk: str | None = None,
    ping_target: str | None = None,
    max_loss: float = 0.0,
) -> ProvisionReport:
    """Scan, associate, DHCP, ping: what a device does when it joins a network. Returns
    each step's duration; a failure names its step (ProvisioningError)."""
    report = ProvisionReport(station.name, ap.ssid, "", "")
    started = time.monotonic()
    network_id = configure_network(station, ap.ssid, psk if psk is not None else ap.psk, ap.hidden)
    scan(station, ap.ssid)
    report.steps["scan"] = time.monotonic() - started
    started = time.monotonic()
    state = associate(station, ap, psk=psk, network_id=network_id)
    report.bssid = state.get("bssid", "")
    report.steps["associate"] = time.monotonic() - started
    started = time.monotonic()
    report.ip_address = dhcp(station)
    report.steps["dhcp"] = time.monotonic() - started
    target = ping_target or ap.address or ap.lan_ip
    if target is None:
        raise NodeError(f"station {station.name}: nothing to ping; give ping_target")
    started = time.monotonic()
    ping(station, target, max_loss=max_loss)
    report.steps["ping"] = time.monotonic() - started
    return report
