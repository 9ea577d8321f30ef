"""The WiFi layer of a medium: access points, stations and the air between them.

A WiFi medium is the relay of ``medium`` plus what a WiFi chip and its
firmware would do, for every endpoint given a WiFi role:

- an access point beacons its SSID, answers probes, authenticates and associates
  stations, and runs the authenticator side of WPA2's 4-way handshake; only stations it
  has authorized exchange data with its node, and it forwards between its stations;
- a station scans (probe requests, beacons heard), associates with the best BSS of an
  enabled network, runs the supplicant side of the handshake, roams to a stronger AP of
  the same network, and loses its association (and its carrier) when the AP's beacons no
  longer reach it. Its node drives it through the wpa_supplicant control interface
  (``ctrl_iface``) at /var/run/wpa_supplicant/wlan0 inside the node, which the node's own
  relay (cirque-wpa-ctrl) serves: it reaches the medium over the stations socket of the
  home's radio volume and must present the station's token, so a node drives its own
  station and nothing else (no other station, none of the medium's control ops).

Management frames travel as Ethernet frames of the local experimental ethertype 0x88B5
(an 802.11 management subtype, a status and the SSID, channel and RSN elements) and the
handshake as standard EAPOL-Key frames (0x888E): both cross the link model like data,
so range, loss and latency apply to them. Nodes never see them: their wlan0 carries data
frames only, after association.

The capture is 802.11 with radiotap all the same: each transmission is translated as it
is captured (``dot11``) into the frame a real radio would have sent, data protected by
CCMP with the keys the handshake installed, so Wireshark decodes and decrypts it.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import os
import selectors
import shutil
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from pytest_cirque.core.errors import SpecError
from pytest_cirque.radios.relay.ctrl_iface import (
    EV_PSK_MAY_BE_INCORRECT,
    EV_SCAN_RESULTS,
    EV_SCAN_STARTED,
    FRAME_ACCEPTED,
    FRAME_HELLO,
    MSG_DEBUG,
    ControlSocket,
    CtrlInterface,
    Frame,
    FrameReader,
    LinkStatus,
    Network,
    ScanResult,
    ev_assoc_reject,
    ev_associated,
    ev_connected,
    ev_disconnected,
    ev_key_negotiation_completed,
    ev_sme_authenticating,
    ev_trying_to_associate,
)
from pytest_cirque.radios.relay.dot11 import (
    FROM_DS,
    LINKTYPE_IEEE802_11_RADIOTAP,
    TO_DS,
    Air,
    Key,
    Signal,
    frequency_mhz,
    llc,
    management_body,
)
from pytest_cirque.radios.relay.medium import Endpoint, Handler, Medium, Timer
from pytest_cirque.radios.relay.protocol import (
    WPA_CTRL_DIR,
    ApStarted,
    ApStatus,
    CtrlReply,
    Done,
    GetWifiStatus,
    LogLines,
    Request,
    StartAccessPoint,
    StartStation,
    StationCtrl,
    StationLog,
    StationStatus,
    WifiStatus,
)
from pytest_cirque.radios.relay.wpa import (
    EAPOL_ETHERTYPE,
    GTK_KEY_ID,
    Authenticator,
    HandshakeError,
    Supplicant,
    passphrase_error,
    pmk,
    rsn_ie,
    ssid_error,
)

#: IEEE Std 802 local experimental ethertype 1: our management frames.
MGMT_ETHERTYPE = 0x88B5
MGMT_VERSION = 1
IPV4_ETHERTYPE = 0x0800
ARP_ETHERTYPE = 0x0806
BROADCAST = b"\xff" * 6
#: The channel a capture gives a frame that no AP's channel places (an AP's default).
DEFAULT_CHANNEL = 6

BEACON_INTERVAL_S = 0.1024
#: A station that hears no beacon of its AP for this long has lost it.
BEACON_LOSS_S = 1.0
#: How long a scan listens for probe responses.
SCAN_DWELL_S = 0.12
#: A BSS last heard longer ago than this is no longer a scan result.
SCAN_RESULT_AGE_S = 10.0
#: When no BSS of an enabled network was found, scan again after this long.
RESCAN_S = 2.0
#: Authentication and association: time per attempt, and attempts.
MLME_TIMEOUT_S = 0.3
MLME_ATTEMPTS = 3
#: The AP's EAPOL timeout per message and how many times it sends one (hostapd's
#: dot11RSNAConfigPairwiseUpdateCount is 4) before it gives up with reason 15.
EAPOL_TIMEOUT_S = 0.25
EAPOL_ATTEMPTS = 4
#: A station whose handshake makes no progress for this long gives up.
HANDSHAKE_TIMEOUT_S = 3.0
#: A station roams to a BSS of its network this much stronger than its own.
ROAM_MARGIN_DB = 10.0
#: How often a connected station checks its link (beacon loss, roaming).
LINK_CHECK_S = 0.25
#: A connection to the stations socket must present its token within this long.
HELLO_TIMEOUT_S = 10.0
#: Connections waiting to present a token; beyond, the oldest is closed.
MAX_HELLOS = 32
#: A station's token: what the driver makes (secrets.token_hex) and the relay can read.
TOKEN_LENGTHS = range(16, 129)
#: Where the medium image keeps the node relay it hands out (images/medium/Dockerfile).
WPA_CTRL_SOURCE = "/usr/local/lib/cirque/cirque-wpa-ctrl"
#: The names under which the node relay program is a station node's WiFi tools.
WIFI_TOOLS = ("wpa_supplicant", "iw", "iwlist")

#: IEEE 802.11 reason codes used here.
REASON_UNSPECIFIED = 1
REASON_DEAUTH_LEAVING = 3
REASON_INACTIVITY = 4
REASON_4WAY_TIMEOUT = 15
#: IEEE 802.11 status codes used here.
STATUS_SUCCESS = 0
STATUS_UNSPECIFIED = 1
STATUS_INVALID_AKMP = 43


class Subtype(IntEnum):
    """802.11 management frame subtypes."""

    ASSOC_REQ = 0
    ASSOC_RESP = 1
    PROBE_REQ = 4
    PROBE_RESP = 5
    BEACON = 8
    DISASSOC = 10
    AUTH = 11
    DEAUTH = 12


ELEMENT_SSID = 0
ELEMENT_DS_PARAMS = 3
ELEMENT_RSN = 48


@dataclass
class Mgmt:
    """A management frame's body: subtype, status (or reason) and elements."""

    subtype: Subtype
    status: int = 0
    ssid: bytes = b""
    channel: int = 0
    rsn: bytes = b""

    def encode(self) -> bytes:
        elements = bytes([ELEMENT_SSID, len(self.ssid)]) + self.ssid
        if self.channel:
            elements += bytes([ELEMENT_DS_PARAMS, 1, self.channel])
        if self.rsn:
            elements += self.rsn  # already a whole element (id, length, body)
        return struct.pack("!BBH", MGMT_VERSION, self.subtype, self.status) + elements

    @classmethod
    def decode(cls, body: bytes) -> Mgmt:
        if len(body) < 4 or body[0] != MGMT_VERSION:
            raise ValueError("not a management frame of this medium")
        _version, subtype, status = struct.unpack("!BBH", body[:4])
        frame = cls(Subtype(subtype), status)
        at = 4
        while at + 2 <= len(body):
            element, size = body[at], body[at + 1]
            value = body[at + 2 : at + 2 + size]
            if len(value) != size:
                raise ValueError("truncated element")
            if element == ELEMENT_SSID:
                frame.ssid = value
            elif element == ELEMENT_DS_PARAMS and size == 1:
                frame.channel = value[0]
            elif element == ELEMENT_RSN:
                frame.rsn = body[at : at + 2 + size]
            at += 2 + size
        return frame


def ethernet(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> bytes:
    return dst + src + struct.pack("!H", ethertype) + payload


#: The 20 MHz channels an access point may use: 2.4 GHz 1..14, and the 5 GHz channels
#: of the UNII bands (36-64, 100-144, 149-165 in steps of 4).
CHANNELS = frozenset([*range(1, 15), *range(36, 65, 4), *range(100, 145, 4), *range(149, 166, 4)])


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def mac_bytes(text: str, where: str) -> bytes:
    try:
        mac = bytes(int(part, 16) for part in text.split(":"))
    except ValueError:
        mac = b""
    if len(mac) != 6:
        raise SpecError(f"{where}: {text!r} is not a MAC address (aa:bb:cc:dd:ee:ff)")
    return mac


def ap_problem(ssid: str, psk: str | None, channel: int) -> tuple[str, str] | None:
    """The first wrong field of an AP's settings and what is wrong with it, or None."""
    problem = ssid_error(ssid.encode()) if isinstance(ssid, str) else "must be a string"
    if problem:
        return "ssid", f"SSID {ssid!r} {problem}"
    if psk is not None:
        problem = passphrase_error(psk) if isinstance(psk, str) else "must be a string"
        if problem:
            return "psk", f"PSK {problem}; give 8 to 63 characters, or none (open)"
    if not isinstance(channel, int) or isinstance(channel, bool) or channel not in CHANNELS:
        return "channel", (
            f"channel {channel!r} is not a WiFi channel: use 1..14 (2.4 GHz) or one of "
            "36, 40, ..., 64, 100, 104, ..., 144, 149, 153, ..., 165 (5 GHz)"
        )
    return None


def check_ap(ssid: str, psk: str | None, channel: int, where: str) -> bytes:
    """The SSID as bytes, or a SpecError saying what is wrong with the AP's settings."""
    problem = ap_problem(ssid, psk, channel)
    if problem:
        raise SpecError(f"{where}: {problem[1]}")
    return ssid.encode()


# --- access point ---------------------------------------------------------------------


@dataclass
class Client:
    """A station as its access point sees it."""

    mac: bytes
    state: str = "authenticated"  # then "associated", "authorized"
    authenticator: Authenticator | None = None
    attempts: int = 0
    timer: Timer | None = None


class ApRadio:
    """The AP side of one BSS, as its radio and firmware run it: beacons, probes,
    (re)association, the authenticator. (Tests see an AP as pytest_cirque.wifi's
    AccessPoint; this is the medium's half of it.)"""

    def __init__(
        self,
        medium: WifiMedium,
        endpoint: Endpoint,
        bssid: bytes,
        ssid: bytes,
        psk: str | None,
        channel: int,
        hidden: bool,
    ) -> None:
        self.medium = medium
        self.endpoint = endpoint
        self.bssid = bssid
        self.ssid = ssid
        self.psk = psk
        self.channel = channel
        self.hidden = hidden
        self.pmk = pmk(psk, ssid) if psk is not None else None
        self.gtk = os.urandom(16)
        self.rsn = rsn_ie() if psk is not None else b""
        self.clients: dict[bytes, Client] = {}
        self.mic_failures = 0
        self._beacon: Timer | None = None

    @property
    def name(self) -> str:
        return self.endpoint.name

    def start(self) -> None:
        self._beacon = self.medium.call_later(0, self._send_beacon)

    def stop(self) -> None:
        if self._beacon is not None:
            self._beacon.cancel()
        for client in self.clients.values():
            if client.timer is not None:
                client.timer.cancel()
        self.clients.clear()

    def authorized(self, mac: bytes) -> bool:
        client = self.clients.get(mac)
        return client is not None and client.state == "authorized"

    def describe(self) -> ApStatus:
        return ApStatus(
            bssid=mac_text(self.bssid),
            ssid=self.ssid.decode(errors="replace"),
            security="WPA2-PSK" if self.psk is not None else "open",
            channel=self.channel,
            hidden=self.hidden,
            clients={mac_text(m): c.state for m, c in self.clients.items()},
            mic_failures=self.mic_failures,
        )

    # --- sending --------------------------------------------------------------------

    def _mgmt(self, dst: bytes, subtype: Subtype, status: int = 0, ssid: bytes = b"") -> None:
        body = Mgmt(subtype, status, ssid, self.channel, self.rsn).encode()
        self.medium.send_radio(self.endpoint, ethernet(dst, self.bssid, MGMT_ETHERTYPE, body))

    def _send_beacon(self) -> None:
        self._mgmt(BROADCAST, Subtype.BEACON, ssid=b"" if self.hidden else self.ssid)
        self._beacon = self.medium.call_later(BEACON_INTERVAL_S, self._send_beacon)

    def _eapol(self, client: Client, payload: bytes) -> None:
        frame = ethernet(client.mac, self.bssid, EAPOL_ETHERTYPE, payload)
        self.medium.send_radio(self.endpoint, frame)
        if client.timer is not None:
            client.timer.cancel()
        client.timer = self.medium.call_later(EAPOL_TIMEOUT_S, lambda: self._eapol_timeout(client))

    def deauthenticate(self, mac: bytes, reason: int) -> None:
        client = self.clients.pop(mac, None)
        if client is not None and client.timer is not None:
            client.timer.cancel()
        self._mgmt(mac, Subtype.DEAUTH, reason)

    # --- receiving ------------------------------------------------------------------

    def on_mgmt(self, src: bytes, frame: Mgmt) -> None:
        if frame.subtype == Subtype.PROBE_REQ:
            if (not frame.ssid and not self.hidden) or frame.ssid == self.ssid:
                self._mgmt(src, Subtype.PROBE_RESP, ssid=self.ssid)
        elif frame.subtype == Subtype.AUTH:
            old = self.clients.pop(src, None)
            if old is not None and old.timer is not None:
                old.timer.cancel()
            self.clients[src] = Client(src)
            self._mgmt(src, Subtype.AUTH, STATUS_SUCCESS)
        elif frame.subtype == Subtype.ASSOC_REQ:
            self._associate(src, frame)
        elif frame.subtype in (Subtype.DEAUTH, Subtype.DISASSOC):
            client = self.clients.pop(src, None)
            if client is not None and client.timer is not None:
                client.timer.cancel()

    def _associate(self, src: bytes, frame: Mgmt) -> None:
        client = self.clients.get(src)
        if client is None:
            self._mgmt(src, Subtype.DEAUTH, REASON_UNSPECIFIED)  # class 3 frame, not authed
            return
        if frame.ssid != self.ssid:
            self._mgmt(src, Subtype.ASSOC_RESP, STATUS_UNSPECIFIED)
            return
        if bool(frame.rsn) != (self.psk is not None):
            self._mgmt(src, Subtype.ASSOC_RESP, STATUS_INVALID_AKMP)
            return
        self._mgmt(src, Subtype.ASSOC_RESP, STATUS_SUCCESS)
        if self.pmk is None:
            client.state = "authorized"
            self.medium.log(f"ap {self.name}: {mac_text(src)} associated (open)")
            return
        client.state = "associated"
        client.attempts = 1
        client.authenticator = Authenticator(self.pmk, self.bssid, src, self.gtk)
        self._eapol(client, client.authenticator.message1())

    def on_eapol(self, src: bytes, payload: bytes) -> None:
        client = self.clients.get(src)
        if client is None or client.authenticator is None:
            return
        failures = client.authenticator.mic_failures
        try:
            reply = client.authenticator.receive(payload)
        except HandshakeError as exc:
            if client.authenticator.mic_failures > failures:
                self.mic_failures += 1
            self.medium.log(f"ap {self.name}: EAPOL from {mac_text(src)} refused: {exc}")
            return
        if reply is not None:
            client.attempts = 1
            self._eapol(client, reply)
        if client.authenticator.complete:
            if client.timer is not None:
                client.timer.cancel()
            client.state = "authorized"
            self.medium.log(f"ap {self.name}: {mac_text(src)} authorized (WPA2-PSK)")

    def _eapol_timeout(self, client: Client) -> None:
        if self.clients.get(client.mac) is not client or client.state == "authorized":
            return
        if client.attempts >= EAPOL_ATTEMPTS:
            self.medium.log(
                f"ap {self.name}: {mac_text(client.mac)}: 4-way handshake timed out "
                f"(wrong PSK?); deauthenticated"
            )
            self.deauthenticate(client.mac, REASON_4WAY_TIMEOUT)
            return
        client.attempts += 1
        assert client.authenticator is not None
        again = client.authenticator.retransmit()  # message 1 or 3, with a new replay counter
        if again is not None:
            self._eapol(client, again)

    # --- data -----------------------------------------------------------------------

    def serves(self, station: Station) -> bool:
        """Whether ``station`` is in this BSS now: associated here and authorized."""
        return (
            station.bss == self.bssid
            and station.state == "COMPLETED"
            and self.authorized(station.mac)
        )

    def downlink(self, frame: bytes, exclude: Endpoint | None = None) -> list[Endpoint]:
        """Which stations a data frame from this AP goes to: every one it serves for
        broadcast, the one owning the destination address otherwise."""
        if frame[0] & 1:
            return [
                s.endpoint
                for s in self.medium.stations.values()
                if s.endpoint is not exclude and self.serves(s)
            ]
        station = self.medium.radio(frame[0:6])
        return [station.endpoint] if isinstance(station, Station) and self.serves(station) else []


# --- station --------------------------------------------------------------------------


@dataclass
class Bss:
    """A BSS as a station heard it."""

    bssid: bytes
    ssid: bytes
    channel: int
    rsn: bytes
    signal_dbm: float
    last_seen: float
    #: Heard through a probe response (a hidden SSID is known only then).
    probed: bool = False


class Station:
    """A WiFi client, driven through its control interface (a ``StationDriver``)."""

    def __init__(
        self, medium: WifiMedium, endpoint: Endpoint, mac: bytes, ifname: str, token: str
    ) -> None:
        self.medium = medium
        self.endpoint = endpoint
        self.mac = mac
        self.ifname = ifname
        #: What the node's relay must present to serve this station's control socket.
        self.token = token
        self.interface = CtrlInterface(self, clock=medium.clock, ifname=ifname)
        self.socket: ControlSocket | None = None
        self.state = "DISCONNECTED"
        self.heard: dict[bytes, Bss] = {}
        self.bss: bytes | None = None
        self.network: Network | None = None
        self.target: Bss | None = None
        self.supplicant: Supplicant | None = None
        self.ip_address: str | None = None
        self.user_disconnected = False
        self.scanning = False
        self._attempts = 0
        self._timers: dict[str, Timer] = {}

    @property
    def name(self) -> str:
        return self.endpoint.name

    # --- control socket -------------------------------------------------------------

    def serve(self, connection: socket.socket, reader: FrameReader) -> None:
        """Serve the control socket through this relay connection (its token checked); a
        previous one (a node that restarted, say) is closed."""
        if self.socket is not None:
            self.medium.log(f"station {self.name}: its relay connected again; old one closed")
        self.close_socket()
        served = ControlSocket(
            self.interface,
            connection,
            reader=reader,
            on_output=lambda pending: self.medium.watch(
                connection.fileno(), self._socket_ready, write=pending
            ),
        )
        self.socket = served
        self.medium.watch(connection.fileno(), self._socket_ready)
        self.medium.log(f"station {self.name}: control socket served by the node's relay")
        self._socket_ready()

    def _socket_ready(self) -> None:
        if self.socket is not None and not self.socket.handle_io():
            self.medium.log(f"station {self.name}: the node's relay disconnected")
            self.close_socket()

    def close_socket(self) -> None:
        if self.socket is not None:
            served, self.socket = self.socket, None
            fd = served.fileno()
            served.close()
            self.medium.unwatch(fd)

    def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self.close_socket()

    def event(self, text: str) -> None:
        """An event to the node's monitors (wpa_cli, wpa_ctrl) and the medium's log."""
        self.medium.log(f"station {self.name}: {text}")
        self.interface.event(text)

    def _later(self, key: str, delay: float, callback: Callable[[], None]) -> None:
        self._cancel(key)
        self._timers[key] = self.medium.call_later(delay, callback)

    def _cancel(self, key: str) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    # --- StationDriver --------------------------------------------------------------

    def request_scan(self) -> bool:
        if self.scanning:
            return False
        self._scan()
        return True

    def scan_results(self) -> list[ScanResult]:
        now = self.medium.clock()
        results = []
        for bss in self.heard.values():
            if now - bss.last_seen > SCAN_RESULT_AGE_S:
                continue
            flags = "[WPA2-PSK-CCMP][ESS]" if bss.rsn else "[ESS]"
            results.append(
                ScanResult(
                    bssid=mac_text(bss.bssid),
                    frequency=frequency_mhz(bss.channel),
                    signal_dbm=round(bss.signal_dbm),
                    flags=flags,
                    ssid=bss.ssid,
                )
            )
        return sorted(results, key=lambda r: -r.signal_dbm)

    def status(self) -> LinkStatus:
        connected = self.state not in ("DISCONNECTED", "INACTIVE", "SCANNING")
        bss = self.target if connected else None
        network = self.network if connected else None
        return LinkStatus(
            wpa_state=self.state,
            address=mac_text(self.mac),
            bssid=mac_text(bss.bssid) if bss else None,
            ssid=bss.ssid if bss else None,
            frequency=frequency_mhz(bss.channel) if bss else None,
            network_id=network.id if network else None,
            key_mgmt=("WPA2-PSK" if bss.rsn else "NONE") if bss else None,
            ip_address=self.ip_address if self.state == "COMPLETED" else None,
        )

    def networks_changed(self) -> None:
        if self.network is not None and not self._usable(self.network):
            self._leave(REASON_DEAUTH_LEAVING, locally=True)
        self._consider()

    def disconnect(self) -> None:
        self.user_disconnected = True
        self._cancel("rescan")
        if self.state != "DISCONNECTED":
            self._leave(REASON_DEAUTH_LEAVING, locally=True)
        self._cancel("scan")
        self.scanning = False
        self.state = "DISCONNECTED"

    def reconnect(self) -> None:
        self.user_disconnected = False
        if self.state in ("DISCONNECTED", "INACTIVE"):
            self._consider()

    # --- choosing a network ---------------------------------------------------------

    def _usable(self, network: Network) -> bool:
        return network in self._enabled()

    def _enabled(self) -> list[Network]:
        """Networks the station may join now, best first."""
        self.interface.reenable_expired()
        return self.interface.networks.candidates(self.medium.clock())

    def _consider(self) -> None:
        """Connect when idle and allowed to: scan first, then pick the best BSS."""
        if self.user_disconnected or self.state not in ("DISCONNECTED", "INACTIVE", "SCANNING"):
            return
        if not self._enabled():
            if not self.scanning:
                self.state = self._idle_state()
            return
        if not self.scanning:
            self._scan()

    def _idle_state(self) -> str:
        """INACTIVE with nothing enabled (wpa_supplicant's wording), else DISCONNECTED."""
        enabled = any(not n.disabled for n in self.interface.networks)
        return "DISCONNECTED" if enabled and not self.user_disconnected else "INACTIVE"

    def _scan(self) -> None:
        self.scanning = True
        if self.state in ("DISCONNECTED", "INACTIVE"):
            self.state = "SCANNING"
        self.event(EV_SCAN_STARTED)
        self._send_mgmt(BROADCAST, Mgmt(Subtype.PROBE_REQ))
        # Directed probes find hidden SSIDs. wpa_supplicant sends them for enabled networks;
        # here configured ones count too, so a scan can look for a hidden network before
        # it is selected (the provisioning helpers time the scan apart from association).
        for network in self.interface.networks:
            if network.scan_ssid and network.ssid:
                self._send_mgmt(BROADCAST, Mgmt(Subtype.PROBE_REQ, ssid=network.ssid))
        self._later("scan", SCAN_DWELL_S, self._scan_done)

    def _scan_done(self) -> None:
        self.scanning = False
        self.event(EV_SCAN_RESULTS)
        if self.state == "SCANNING":
            self.state = "DISCONNECTED"
        if self.user_disconnected or self.state != "DISCONNECTED":
            return
        choice = self._best()
        if choice is None:
            if self._enabled():
                self._later("rescan", RESCAN_S, self._consider)
            else:
                self.state = self._idle_state()
            return
        self._connect(*choice)

    def _best(self, fresh_s: float = SCAN_RESULT_AGE_S) -> tuple[Bss, Network] | None:
        now = self.medium.clock()
        for network in self._enabled():
            candidates = [
                bss
                for bss in self.heard.values()
                if bss.ssid == network.ssid
                and (network.uses_psk if bss.rsn else network.is_open)
                and now - bss.last_seen <= fresh_s
                and (network.bssid is None or mac_text(bss.bssid) == network.bssid.lower())
            ]
            if candidates:
                return max(candidates, key=lambda b: b.signal_dbm), network
        return None

    # --- connecting -----------------------------------------------------------------

    def _connect(self, bss: Bss, network: Network, roaming: bool = False) -> None:
        if roaming and self.bss is not None:
            self._send_mgmt(self.bss, Mgmt(Subtype.DEAUTH, REASON_DEAUTH_LEAVING))
        else:
            self.medium.set_carrier(self.endpoint, False)
        self.target, self.network, self.bss = bss, network, None
        self.supplicant = None
        self.state = "AUTHENTICATING"
        self.event(ev_sme_authenticating(mac_text(bss.bssid), bss.ssid, frequency_mhz(bss.channel)))
        self._attempts = 1
        self._send_mgmt(bss.bssid, Mgmt(Subtype.AUTH))
        self._later("mlme", MLME_TIMEOUT_S, self._mlme_timeout)

    def _mlme_timeout(self) -> None:
        target = self.target
        if target is None or self.state not in ("AUTHENTICATING", "ASSOCIATING"):
            return
        if self._attempts >= MLME_ATTEMPTS:
            what = "authentication" if self.state == "AUTHENTICATING" else "association"
            self.event(f"SME: {what.capitalize()} timed out with {mac_text(target.bssid)}")
            self._reset_link()
            self._later("rescan", RESCAN_S, self._consider)
            return
        self._attempts += 1
        if self.state == "AUTHENTICATING":
            self._send_mgmt(target.bssid, Mgmt(Subtype.AUTH))
        else:
            self._send_association(target)
        self._later("mlme", MLME_TIMEOUT_S, self._mlme_timeout)

    def _send_association(self, bss: Bss) -> None:
        rsn = rsn_ie() if bss.rsn else b""
        self._send_mgmt(bss.bssid, Mgmt(Subtype.ASSOC_REQ, ssid=bss.ssid, rsn=rsn))

    def on_mgmt(self, src: bytes, frame: Mgmt, signal_dbm: float) -> None:
        now = self.medium.clock()
        if frame.subtype in (Subtype.BEACON, Subtype.PROBE_RESP):
            known = self.heard.get(src)
            probed = frame.subtype == Subtype.PROBE_RESP or (known is not None and known.probed)
            ssid = frame.ssid or (known.ssid if known is not None and known.probed else b"")
            self.heard[src] = Bss(src, ssid, frame.channel, frame.rsn, signal_dbm, now, probed)
            return
        target = self.target
        if target is None or src != target.bssid:
            return
        if frame.subtype == Subtype.AUTH and self.state == "AUTHENTICATING":
            if frame.status != STATUS_SUCCESS:
                self._rejected(frame.status)
                return
            self.state = "ASSOCIATING"
            self._attempts = 1
            frequency = frequency_mhz(target.channel)
            self.event(ev_trying_to_associate(mac_text(target.bssid), target.ssid, frequency))
            self._send_association(target)
            self._later("mlme", MLME_TIMEOUT_S, self._mlme_timeout)
        elif frame.subtype == Subtype.ASSOC_RESP and self.state == "ASSOCIATING":
            self._cancel("mlme")
            if frame.status != STATUS_SUCCESS:
                self._rejected(frame.status)
                return
            self.bss = target.bssid
            self.state = "ASSOCIATED"
            self.event(ev_associated(mac_text(target.bssid)))
            if not target.rsn:
                self._completed()
                return
            assert self.network is not None and self.network.psk is not None
            key = pmk(self.network.psk, target.ssid)
            self.supplicant = Supplicant(key, target.bssid, self.mac)
            self.state = "4WAY_HANDSHAKE"
            self._later("handshake", HANDSHAKE_TIMEOUT_S, self._handshake_timeout)
        elif frame.subtype in (Subtype.DEAUTH, Subtype.DISASSOC):
            if self.state in ("ASSOCIATED", "4WAY_HANDSHAKE") and target.rsn:
                self._wrong_key(frame.status)
            else:
                self._leave(frame.status, locally=False)
                self._consider()

    def _rejected(self, status: int) -> None:
        assert self.target is not None
        self.event(ev_assoc_reject(mac_text(self.target.bssid), status))
        self._reset_link()
        self._later("rescan", RESCAN_S, self._consider)

    def on_eapol(self, src: bytes, payload: bytes) -> None:
        if self.supplicant is None or self.bss != src:
            return
        try:
            reply = self.supplicant.receive(payload)
        except HandshakeError as exc:
            self.medium.log(f"station {self.name}: EAPOL from {mac_text(src)} refused: {exc}")
            return
        if reply is not None:
            # The handshake's steps as wpa_supplicant -d logs them (message 1 is answered
            # by 2, message 3, which completes it, by 4).
            message = 3 if self.supplicant.complete else 1
            self.interface.event(
                f"WPA: RX message {message} of 4-Way Handshake from {mac_text(src)} (ver=2)",
                MSG_DEBUG,
            )
            self.interface.event(f"WPA: Sending EAPOL-Key {message + 1}/4", MSG_DEBUG)
            self.medium.send_radio(self.endpoint, ethernet(src, self.mac, EAPOL_ETHERTYPE, reply))
        if self.supplicant.complete and self.state != "COMPLETED":
            self.event(ev_key_negotiation_completed(mac_text(src)))
            self._completed()

    def _completed(self) -> None:
        assert self.target is not None and self.network is not None
        self._cancel("handshake")
        self.state = "COMPLETED"
        self.medium.set_carrier(self.endpoint, True)
        self.interface.connection_completed(self.network.id)
        self.event(ev_connected(mac_text(self.target.bssid), self.network.id, self.network.id_str))
        self._later("link", LINK_CHECK_S, self._check_link)

    def _handshake_timeout(self) -> None:
        if self.state in ("ASSOCIATED", "4WAY_HANDSHAKE"):
            if self.bss is not None:
                self._send_mgmt(self.bss, Mgmt(Subtype.DEAUTH, REASON_4WAY_TIMEOUT))
            self._wrong_key(REASON_4WAY_TIMEOUT, locally=True)

    def _wrong_key(self, reason: int, locally: bool = False) -> None:
        """The handshake failed: as wpa_supplicant, suspect the key and back off."""
        network = self.network
        self.event(EV_PSK_MAY_BE_INCORRECT)
        self._leave(reason, locally=locally)
        if network is None or self.interface.networks.get(network.id) is not network:
            return
        self.interface.auth_failed(network.id, "WRONG_KEY")
        wait = network.temp_disabled_until - self.medium.clock()
        self._later(f"reenable-{network.id}", max(wait, 0.0), self._consider)
        self._consider()

    def _check_link(self) -> None:
        """Beacon loss takes the association down; a much stronger AP of the same
        network takes the station over (roaming)."""
        if self.state != "COMPLETED" or self.bss is None or self.network is None:
            return
        now = self.medium.clock()
        timer = self._timers.get("link")
        if timer is not None and now - timer.at > LINK_CHECK_S:
            # The relay itself was held up (a loaded host): the beacons it owes are due
            # now, so silence says nothing about the AP. Look again next round.
            self._later("link", LINK_CHECK_S, self._check_link)
            return
        current = self.heard.get(self.bss)
        if current is None or now - current.last_seen > BEACON_LOSS_S:
            self.event(f"CTRL-EVENT-BEACON-LOSS bssid={mac_text(self.bss)}")
            self._leave(REASON_INACTIVITY, locally=True)
            self._consider()
            return
        choice = self._best(fresh_s=BEACON_LOSS_S)
        if choice is not None:
            bss, network = choice
            if bss.bssid != self.bss and bss.signal_dbm >= current.signal_dbm + ROAM_MARGIN_DB:
                self.event(
                    f"CTRL-EVENT-STARTED-ROAM bssid={mac_text(bss.bssid)} "
                    f"(signal {bss.signal_dbm:.0f} dBm over {current.signal_dbm:.0f} dBm)"
                )
                self._connect(bss, network, roaming=True)
                return
        self._later("link", LINK_CHECK_S, self._check_link)

    def _leave(self, reason: int, locally: bool) -> None:
        """Tear the association down and say so (CTRL-EVENT-DISCONNECTED)."""
        bssid = self.bss or (self.target.bssid if self.target else None)
        if locally and self.bss is not None and reason != REASON_INACTIVITY:
            self._send_mgmt(self.bss, Mgmt(Subtype.DEAUTH, reason))
        was_connecting = self.state not in ("DISCONNECTED", "INACTIVE", "SCANNING")
        self._reset_link()
        if was_connecting and bssid is not None:
            self.event(ev_disconnected(mac_text(bssid), reason, locally))

    def _reset_link(self) -> None:
        for key in ("mlme", "handshake", "link"):
            self._cancel(key)
        self.medium.set_carrier(self.endpoint, False)
        self.state = "DISCONNECTED"
        self.bss = None
        self.target = None
        self.network = None
        self.supplicant = None
        self.ip_address = None

    def lost_ap(self, bssid: bytes) -> None:
        """The AP went away (detached): as a deauthentication from it."""
        if self.bss == bssid or (self.target is not None and self.target.bssid == bssid):
            self._leave(REASON_DEAUTH_LEAVING, locally=False)
            self._consider()
        self.heard.pop(bssid, None)

    # --- data -----------------------------------------------------------------------

    def note_sent(self, frame: bytes) -> None:
        """Learn the node's own IPv4 address from what it sends (STATUS shows it)."""
        ethertype = frame[12:14]
        if ethertype == b"\x08\x00" and len(frame) >= 30:
            address = frame[26:30]
        elif ethertype == b"\x08\x06" and len(frame) >= 32:
            address = frame[28:32]
        else:
            return
        if address != b"\x00\x00\x00\x00":
            self.ip_address = str(ipaddress.IPv4Address(address))

    def _send_mgmt(self, dst: bytes, frame: Mgmt) -> None:
        frame_bytes = ethernet(dst, self.mac, MGMT_ETHERTYPE, frame.encode())
        self.medium.send_radio(self.endpoint, frame_bytes)

    def describe(self) -> StationStatus:
        status = self.status()
        return StationStatus(
            mac=mac_text(self.mac),
            wpa_state=status.wpa_state,
            bssid=status.bssid,
            ssid=status.ssid.decode(errors="replace") if status.ssid else None,
            ip_address=self.ip_address,
            networks=len(list(self.interface.networks)),
            control_socket=self.socket is not None,
        )


# --- the medium -----------------------------------------------------------------------


@dataclass
class _Hello:
    """A connection to the stations socket that has not presented its token yet."""

    connection: socket.socket
    reader: FrameReader
    timer: Timer | None = None


class WifiMedium(Medium):
    """A medium whose endpoints may be access points and stations.

    With ``stations_dir`` (the home's radio volume) it hands the node relay program out
    there and serves ``stations.sock``: each connection must present a station's token
    first, and is then that station's control socket and nothing else."""

    CAPTURE_LINKTYPE = LINKTYPE_IEEE802_11_RADIOTAP

    def __init__(self, *args: Any, stations_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: What the capture shows of the radios' own state (sequence and packet numbers).
        self.dot11 = Air()
        self.aps: dict[str, ApRadio] = {}
        self.stations: dict[str, Station] = {}
        self._by_radio_mac: dict[bytes, ApRadio | Station] = {}
        self._hellos: dict[int, _Hello] = {}
        self._stations_server: socket.socket | None = None
        if stations_dir is not None:
            self.serve_stations(stations_dir)

    def log(self, line: str) -> None:
        self._log(line)

    def watch(self, fd: int, callback: Callable[[], None], *, write: bool = False) -> None:
        """Call ``callback`` when ``fd`` is readable (and, with ``write``, writable)."""
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if write else 0)
        try:
            self._selector.modify(fd, events, lambda _fd: callback())
        except KeyError:
            self._selector.register(fd, events, lambda _fd: callback())

    def unwatch(self, fd: int) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(fd)

    # --- the stations socket --------------------------------------------------------

    def serve_stations(self, directory: str, program: str = WPA_CTRL_SOURCE) -> None:
        """Put the node relay program in ``directory``/bin (read-only to the nodes) and
        listen on ``directory``/stations.sock for the relays of the stations' nodes."""
        if os.path.exists(program):
            os.makedirs(f"{directory}/bin", mode=0o755, exist_ok=True)
            staged = f"{directory}/bin/.cirque-wpa-ctrl.new"
            shutil.copyfile(program, staged)
            os.chmod(staged, 0o555)
            os.replace(staged, f"{directory}/bin/cirque-wpa-ctrl")
            # The same program is the station node's wpa_supplicant, iw and iwlist, by
            # name: that directory comes first on a station node's PATH.
            for tool in WIFI_TOOLS:
                link = f"{directory}/bin/{tool}"
                if not os.path.islink(link):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(link)
                    os.symlink("cirque-wpa-ctrl", link)
        else:
            self._log(f"stations: no node relay at {program}; nodes must bring their own")
        path = f"{directory}/stations.sock"
        if os.path.exists(path):
            os.unlink(path)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        # Root in the nodes (where the relay runs) only; the token is the real check.
        os.chmod(path, 0o600)
        server.listen(16)
        server.setblocking(False)
        self._stations_server = server
        self.watch(server.fileno(), self._accept_station)

    def _accept_station(self) -> None:
        assert self._stations_server is not None
        try:
            connection, _ = self._stations_server.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._log(f"stations: accept failed: {exc}")
            return
        connection.setblocking(False)
        if len(self._hellos) >= MAX_HELLOS:
            oldest = next(iter(self._hellos.values()))
            self._refuse(oldest, f"waited among more than {MAX_HELLOS} without a token")
        hello = _Hello(connection, FrameReader())
        hello.timer = self.call_later(
            HELLO_TIMEOUT_S,
            lambda: self._refuse(hello, f"sent no token within {HELLO_TIMEOUT_S:g} s"),
        )
        self._hellos[connection.fileno()] = hello
        self.watch(connection.fileno(), lambda: self._on_hello(hello))

    def _on_hello(self, hello: _Hello) -> None:
        """The first frame of a connection: a token naming a station, or it is closed."""
        try:
            data = hello.connection.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._refuse(hello, "hung up before presenting a token")
            return
        hello.reader.feed(data)
        try:
            frame = hello.reader.next()
        except ValueError:
            self._refuse(hello, "sent a malformed frame")
            return
        if frame is None:
            return
        station = self._station_for(frame)
        if station is None:
            self._refuse(
                hello,
                "presented a wrong token"
                if frame.kind == FRAME_HELLO
                else "spoke before presenting a token",
            )
            return
        self._forget_hello(hello)
        try:
            hello.connection.send(Frame(FRAME_ACCEPTED).encode())
        except OSError as exc:
            self._log(f"station {station.name}: its relay went away at once ({exc})")
            hello.connection.close()
            return
        station.serve(hello.connection, hello.reader)

    def _station_for(self, frame: Frame) -> Station | None:
        """The station whose token the HELLO frame presents (compared in constant time)."""
        if frame.kind != FRAME_HELLO:
            return None
        found = None
        for station in self.stations.values():
            if hmac.compare_digest(frame.payload, station.token.encode()):
                found = station
        return found

    def _refuse(self, hello: _Hello, reason: str) -> None:
        if self._forget_hello(hello):
            hello.connection.close()
            self._log(
                f"stations: a connection {reason}; closed (only a station's own relay, "
                "with its token, is served)"
            )

    def _forget_hello(self, hello: _Hello) -> bool:
        if self._hellos.get(hello.connection.fileno()) is not hello:
            return False
        del self._hellos[hello.connection.fileno()]
        self.unwatch(hello.connection.fileno())
        if hello.timer is not None:
            hello.timer.cancel()
        return True

    def set_carrier(self, endpoint: Endpoint, on: bool) -> None:
        if endpoint.carrier != on and endpoint.fd >= 0:
            self.set_endpoint_carrier(endpoint.name, on)

    # --- radio frames ---------------------------------------------------------------

    def send_radio(self, source: Endpoint, frame: bytes) -> None:
        """Send a frame of the radio itself (management, EAPOL) over the air."""
        source.counters["radio sent"] += 1
        destination = frame[0:6]
        if destination == BROADCAST:
            receivers = [
                e
                for name, e in self.endpoints.items()
                if e is not source and (name in self.aps or name in self.stations)
            ]
        else:
            owner = self._by_radio_mac.get(destination)
            receivers = [owner.endpoint] if owner is not None else []
        self.transmit(source, frame, receivers)

    def deliver(self, receiver: Endpoint, frame: bytes) -> None:
        ethertype = struct.unpack("!H", frame[12:14])[0]
        ap = self.aps.get(receiver.name)
        station = self.stations.get(receiver.name)
        if ethertype in (MGMT_ETHERTYPE, EAPOL_ETHERTYPE):
            role = ap or station
            if role is None:
                return
            receiver.counters["radio received"] += 1
            try:
                self._on_radio_frame(receiver, role, frame, ethertype)
            except Exception as exc:  # one odd frame must not take the whole medium down
                self._log(f"{receiver.name}: radio frame not handled: {type(exc).__name__}: {exc}")
            return
        if ap is not None:
            self._ap_received(ap, frame)
        elif station is not None:
            if station.state == "COMPLETED":
                super().deliver(receiver, frame)
            else:
                self._drop(receiver, "not associated")
        else:
            super().deliver(receiver, frame)

    def _on_radio_frame(
        self, receiver: Endpoint, role: ApRadio | Station, frame: bytes, ethertype: int
    ) -> None:
        src = frame[6:12]
        sender = self._by_radio_mac.get(src)
        if sender is None:
            return
        payload = frame[14:]
        if ethertype == EAPOL_ETHERTYPE:
            role.on_eapol(src, payload)
            return
        try:
            mgmt = Mgmt.decode(payload)
        except ValueError:
            return
        if isinstance(role, Station):
            role.on_mgmt(src, mgmt, self.model.rssi_dbm(sender.endpoint.name, receiver.name))
        else:
            role.on_mgmt(src, mgmt)

    # --- data frames ----------------------------------------------------------------

    def receivers(self, source: Endpoint, frame: bytes) -> list[Endpoint] | None:
        ethertype = struct.unpack("!H", frame[12:14])[0]
        ap = self.aps.get(source.name)
        station = self.stations.get(source.name)
        if ap is None and station is None:
            return super().receivers(source, frame)
        if ethertype in (MGMT_ETHERTYPE, EAPOL_ETHERTYPE):
            self._drop(source, "radio frames come from the medium, not the node")
            return None
        if station is not None:
            station.note_sent(frame)
            serving = self._ap_of(station)
            if serving is None:
                self._drop(source, "not associated")
                return None
            return [serving.endpoint]
        assert ap is not None
        receivers = ap.downlink(frame)
        if not receivers and not frame[0] & 1:
            self._drop(source, "no such station")
            return None
        return receivers

    def radio(self, mac: bytes) -> ApRadio | Station | None:
        """The access point or station whose radio has this address."""
        return self._by_radio_mac.get(mac)

    def _ap_of(self, station: Station) -> ApRadio | None:
        ap = self._by_radio_mac.get(station.bss) if station.bss is not None else None
        return ap if isinstance(ap, ApRadio) and ap.serves(station) else None

    def _ap_received(self, ap: ApRadio, frame: bytes) -> None:
        """A station's data frame reached its AP: for the AP's node, for another station
        of the BSS (forwarded over the air again), or both (broadcast)."""
        sender = self._by_radio_mac.get(frame[6:12])
        if not isinstance(sender, Station) or self._ap_of(sender) is not ap:
            self._drop(ap.endpoint, "not from an associated station")
            return
        others = ap.downlink(frame, exclude=sender.endpoint) if frame[0:6] != ap.bssid else []
        if others:
            self.transmit(ap.endpoint, frame, others)
        if frame[0] & 1 or not others:
            super().deliver(ap.endpoint, frame)

    # --- capture --------------------------------------------------------------------

    def capture_frame(self, source: Endpoint, frame: bytes, receivers: list[Endpoint]) -> None:
        """Write a transmission as the 802.11 frame a real radio sends, once per channel
        it goes on. The antenna signal is the strongest receiver's (the addressee's, for
        unicast): what a monitor beside the best-placed listener would measure."""
        assert self.capture is not None
        for channel, heard in self._capture_channels(source, receivers).items():
            signal = max((self.model.rssi_dbm(source.name, r.name) for r in heard), default=None)
            self.capture.write(self._dot11_frame(source, frame, channel, signal))

    def _capture_channels(
        self, source: Endpoint, receivers: list[Endpoint]
    ) -> dict[int, list[Endpoint]]:
        """The channel a transmission goes on, with who hears it there: an AP's own, a
        station's BSS's; a scanning station probes every channel an AP listens on."""
        ap, station = self.aps.get(source.name), self.stations.get(source.name)
        if ap is not None:
            return {ap.channel: receivers}
        if station is not None and station.target is not None:
            return {station.target.channel: receivers}
        listeners: dict[int, list[Endpoint]] = {}
        for receiver in receivers:
            if receiver.name in self.aps:
                listeners.setdefault(self.aps[receiver.name].channel, []).append(receiver)
        return listeners or {DEFAULT_CHANNEL: receivers}

    def _dot11_frame(
        self, source: Endpoint, frame: bytes, channel: int, signal_dbm: float | None
    ) -> bytes:
        """One transmission as radiotap + 802.11 (see ``dot11``)."""
        phy = self.model.phy
        dst, src = frame[0:6], frame[6:12]
        (ethertype,) = struct.unpack_from("!H", frame, 12)
        ap, station = self.aps.get(source.name), self.stations.get(source.name)
        if ethertype == MGMT_ETHERTYPE:
            mgmt = Mgmt.decode(frame[14:])
            joined = ap is not None and mgmt.subtype == Subtype.ASSOC_RESP and not mgmt.status
            body = management_body(
                mgmt.subtype,
                from_ap=ap is not None,
                status=mgmt.status,
                ssid=mgmt.ssid,
                channel=mgmt.channel or channel,
                rsn=mgmt.rsn,
                tsf_us=self.dot11.tsf_us(src, self.clock()) if ap is not None else 0,
                aid=self.dot11.aid(src, dst) if joined else 0,
            )
            bssid = src if ap is not None else dst  # a broadcast probe: the wildcard BSSID
            basic = Signal(channel, phy.basic_rate_mbps, signal_dbm)
            return self.dot11.management(mgmt.subtype, dst, src, bssid, body, basic)
        if ap is not None:
            flags, addresses = FROM_DS, (dst, ap.bssid, src)
        elif station is not None:
            bss = station.bss or (station.target.bssid if station.target else dst)
            flags, addresses = TO_DS, (bss, station.mac, dst)
        else:  # an endpoint of no role: a frame outside any BSS
            flags, addresses = 0, (dst, src, BROADCAST)
        unicast = not addresses[0][0] & 1
        rate = phy.data_rate_mbps if unicast else phy.basic_rate_mbps
        key = None if ethertype == EAPOL_ETHERTYPE else self._capture_key(ap, station, dst)
        return self.dot11.data(flags, addresses, llc(frame), Signal(channel, rate, signal_dbm), key)

    @staticmethod
    def _capture_key(ap: ApRadio | None, station: Station | None, dst: bytes) -> Key | None:
        """The CCMP key a data frame goes out with: the station's PTK; the AP's PTK with
        the addressed station, or its group key. None on an open network and before the
        4-way handshake installed the keys."""
        if station is not None:
            supplicant = station.supplicant
            if supplicant is None or not supplicant.complete or supplicant.ptk is None:
                return None
            return Key(supplicant.ptk.tk)
        if ap is None or ap.psk is None:
            return None
        if dst[0] & 1:
            return Key(ap.gtk, GTK_KEY_ID)
        client = ap.clients.get(dst)
        authenticator = client.authenticator if client is not None else None
        if authenticator is None or not authenticator.complete or authenticator.ptk is None:
            return None
        return Key(authenticator.ptk.tk)

    # --- endpoints ------------------------------------------------------------------

    def detach(self, name: str) -> None:
        self._forget_role(name)
        super().detach(name)

    def _forget_role(self, name: str) -> None:
        ap = self.aps.pop(name, None)
        if ap is not None:
            ap.stop()
            self._by_radio_mac.pop(ap.bssid, None)
            for listener in self.stations.values():
                listener.lost_ap(ap.bssid)
        station = self.stations.pop(name, None)
        if station is not None:
            station.stop()
            self._by_radio_mac.pop(station.mac, None)
            for other in self.aps.values():
                other.clients.pop(station.mac, None)

    def close(self) -> None:
        for name in list(self.aps) + list(self.stations):
            self._forget_role(name)
        for hello in list(self._hellos.values()):
            self._refuse(hello, "was open as the medium stopped")
        if self._stations_server is not None:
            self.unwatch(self._stations_server.fileno())
            self._stations_server.close()
            self._stations_server = None
        super().close()

    def _claim(self, name: str, mac: str) -> tuple[Endpoint, bytes]:
        endpoint = self._endpoint(name)
        if name in self.aps or name in self.stations:
            raise SpecError(f"medium: endpoint {name!r} already has a WiFi role")
        address = mac_bytes(mac, f"medium: endpoint {name!r}")
        owner = self._by_radio_mac.get(address)
        if owner is not None:
            raise SpecError(f"medium: MAC {mac} is already used by {owner.name!r}")
        return endpoint, address

    def handlers(self) -> dict[type[Request[Any]], Handler]:
        return {
            **super().handlers(),
            StartAccessPoint: self._start_access_point,
            StartStation: self._start_station,
            GetWifiStatus: self._wifi_status,
            StationCtrl: self._station_ctrl,
            StationLog: self._station_log,
        }

    def _start_access_point(self, request: StartAccessPoint, fds: list[int]) -> ApStarted:
        name, mac, ssid, psk, channel = (
            request.name,
            request.mac,
            request.ssid,
            request.psk,
            request.channel,
        )
        raw_ssid = check_ap(ssid, psk, channel, f"access point {name}")
        endpoint, bssid = self._claim(name, mac)
        ap = ApRadio(self, endpoint, bssid, raw_ssid, psk, channel, request.hidden)
        self.aps[name] = ap
        self._by_radio_mac[bssid] = ap
        self.set_carrier(endpoint, True)
        ap.start()
        security = "WPA2-PSK" if psk is not None else "open"
        self._log(f"ap {name}: SSID {ssid!r} ({security}) on channel {channel}, BSSID {mac}")
        return ApStarted(bssid=mac_text(bssid))

    def _start_station(self, request: StartStation, fds: list[int]) -> Done:
        token = request.token
        if len(token) not in TOKEN_LENGTHS or not token.isascii() or not token.isalnum():
            raise SpecError(
                f"medium: station {request.name!r}: its token must be "
                f"{TOKEN_LENGTHS.start}..{TOKEN_LENGTHS.stop - 1} letters or digits "
                "(secrets.token_hex(16) makes one)"
            )
        if any(hmac.compare_digest(token, s.token) for s in self.stations.values()):
            raise SpecError(f"medium: station {request.name!r}: token already in use")
        endpoint, address = self._claim(request.name, request.mac)
        station = Station(self, endpoint, address, request.ifname, token)
        self.set_carrier(endpoint, False)
        self.stations[request.name] = station
        self._by_radio_mac[address] = station
        socket_path = f"{WPA_CTRL_DIR}/{request.ifname}"
        self._log(f"station {request.name}: {request.mac}, control socket {socket_path}")
        return Done()

    def _wifi_status(self, request: GetWifiStatus, fds: list[int]) -> WifiStatus:
        return WifiStatus(
            aps={name: ap.describe() for name, ap in self.aps.items()},
            stations={name: s.describe() for name, s in self.stations.items()},
        )

    def _station_ctrl(self, request: StationCtrl, fds: list[int]) -> CtrlReply:
        """One control-interface command, as the node's wpa_cli would send it."""
        station = self._station(request.name)
        return CtrlReply(reply=station.interface.handle(request.command, from_helper=True))

    def _station_log(self, request: StationLog, fds: list[int]) -> LogLines:
        return LogLines(lines=list(self._station(request.name).interface.history))

    def _station(self, name: str) -> Station:
        try:
            return self.stations[name]
        except KeyError:
            known = ", ".join(self.stations) or "none"
            raise SpecError(f"medium: {name!r} is not a WiFi station (stations: {known})") from None
