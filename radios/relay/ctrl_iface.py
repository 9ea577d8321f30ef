"""The wpa_supplicant control interface of a simulated WiFi station.

Device software drives WiFi through wpa_supplicant's control socket
(``/var/run/wpa_supplicant/wlan0``) with ``wpa_cli`` or libwpa_ctrl. A simulated station
has no wpa_supplicant, so the medium serves that socket itself, speaking the same
protocol: Unix datagram sockets, one command per datagram, the reply sent back to the
client's bound address; ``ATTACH`` makes a client a monitor that receives events as
``<level>TEXT`` datagrams. Replies and events follow wpa_supplicant 2.10's wording so a
program that parses them works unchanged.

Two layers: :class:`CtrlInterface` turns one command into its reply (the network table
and the command semantics, no sockets), and :class:`ControlSocket` carries datagrams.
The datagram socket itself lives in the node, served by the node's small relay
(cirque-wpa-ctrl), which forwards each datagram and its sender's address over one stream
to the medium (see the frames below): the medium never touches a node's filesystem. The
station itself (scan, association, handshake) is behind :class:`StationDriver`; it
reports progress with the event helpers below, which produce wpa_supplicant's exact texts.

Stdlib only and single-threaded: the medium's select loop calls
:meth:`ControlSocket.handle_io` when :meth:`ControlSocket.fileno` is ready.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import socket
import string
import struct
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from pytest_cirque.radios.relay.protocol import WIFI_INTERFACE

#: Level of ordinary events (wpa_supplicant's MSG_INFO); a monitor starts at this level.
MSG_INFO = 3
#: Level of debug lines (MSG_DEBUG): only monitors that asked for them (LEVEL 2, as the
#: node's wpa_supplicant does with -d for its log) get them.
MSG_DEBUG = 2
#: wpa_supplicant answers in a 4096-byte buffer; list replies stop at the last whole line.
REPLY_SIZE = 4096
#: Reads per handle_io() call, so one flooding relay cannot stall the loop.
READ_BATCH = 256
#: Send errors in a row after which a monitor is dropped (as wpa_supplicant does).
MAX_MONITOR_ERRORS = 10
#: Send errors that mean the monitor's socket is gone.
_GONE = (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR, errno.EPERM)
#: Link states of STATUS (wpa_supplicant_state_txt), in wpa_supplicant's order.
WPA_STATES = (
    "DISCONNECTED",
    "INTERFACE_DISABLED",
    "INACTIVE",
    "SCANNING",
    "AUTHENTICATING",
    "ASSOCIATING",
    "ASSOCIATED",
    "4WAY_HANDSHAKE",
    "GROUP_HANDSHAKE",
    "COMPLETED",
)
#: From ASSOCIATED on, STATUS describes the BSS and the keys.
_ASSOCIATED_STATES = frozenset(WPA_STATES[WPA_STATES.index("ASSOCIATED") :])
#: key_mgmt values SET_NETWORK accepts, in the order wpa_supplicant writes them back.
KEY_MGMT_ORDER = (
    "WPA-PSK",
    "WPA-EAP",
    "IEEE8021X",
    "NONE",
    "FT-PSK",
    "FT-EAP",
    "WPA-PSK-SHA256",
    "WPA-EAP-SHA256",
    "SAE",
    "FT-SAE",
    "OWE",
)
#: key_mgmt of a network ADD_NETWORK creates (wpa_config_set_network_defaults).
DEFAULT_KEY_MGMT = "WPA-PSK WPA-EAP"
#: key_mgmt values that authenticate with the network's psk.
PSK_KEY_MGMT = frozenset({"WPA-PSK", "FT-PSK", "WPA-PSK-SHA256"})
#: Network variables whose values are secrets: hidden in the control log and GET_NETWORK.
#: Commands that only read the station's state: a helper polling them is not logged.
READ_ONLY_COMMANDS = frozenset(
    {
        "STATUS",
        "STATUS-VERBOSE",
        "LIST_NETWORKS",
        "SCAN_RESULTS",
        "PING",
        "SIGNAL_POLL",
        "BSS",
        "GET_NETWORK",
        "IFNAME",
        "INTERFACES",
        "GET_CAPABILITY",
    }
)
SECRET_FIELDS = frozenset(
    {"psk", "password", "sae_password", "wep_key0", "wep_key1", "wep_key2", "wep_key3"}
)
#: Variables accepted and echoed back but not simulated, with wpa_supplicant's defaults.
_EXTRA_DEFAULTS = {
    "proto": "WPA RSN",
    "pairwise": "CCMP TKIP",
    "group": "CCMP TKIP",
    "ieee80211w": "3",  # 3: follow the global pmf setting
    "mode": "0",
    "frequency": "0",
    "auth_alg": None,
    "bgscan": None,
}
_EXTRA_TOKENS = {
    "proto": frozenset({"WPA", "RSN", "WPA2", "OSEN"}),
    "pairwise": frozenset({"CCMP", "TKIP", "NONE", "GCMP", "GCMP-256", "CCMP-256"}),
    "group": frozenset({"CCMP", "TKIP", "WEP104", "WEP40", "GCMP", "GCMP-256", "CCMP-256"}),
    "auth_alg": frozenset({"OPEN", "SHARED", "LEAP"}),
}
#: Variables the simulation models (each has a NetworkTable._set_<name>).
_MODELLED = frozenset(
    {"ssid", "psk", "key_mgmt", "scan_ssid", "disabled", "priority", "bssid", "id_str"}
)
#: GET_CAPABILITY's answers: what this simulated station supports, in wpa_supplicant's words.
CAPABILITIES = {
    "eap": "",
    "pairwise": "CCMP TKIP NONE",
    "group": "CCMP TKIP",
    "key_mgmt": "NONE IEEE8021X WPA-EAP WPA-PSK",
    "proto": "RSN WPA",
    "auth_alg": "OPEN SHARED LEAP",
    "modes": "",
    "tdls": "",
}
#: The 2.4 GHz channels a station scans (GET_CAPABILITY channels/freq).
CHANNELS_24GHZ = tuple(range(1, 14))
#: wpa_supplicant derives the WPS UUID from the MAC address under this name space.
_WPS_UUID_NAMESPACE = bytes.fromhex("526480f8c99b4be5a65558ed5f5d6084")


# --- text helpers ----------------------------------------------------------------------


def ssid_txt(ssid: bytes | None) -> str:
    """An SSID the way wpa_supplicant prints it (printf_encode): escapes, \\xNN for the rest."""
    out = []
    for byte in ssid or b"":
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\x1b":
            out.append("\\e")
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif 32 <= byte <= 126:
            out.append(char)
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)


def mac_txt(mac: str | bytes) -> str:
    """A MAC address as wpa_supplicant prints it: lower-case hex, colon-separated."""
    if isinstance(mac, bytes):
        if len(mac) != 6:
            raise ValueError(f"a MAC address has 6 bytes, not {len(mac)}")
        return ":".join(f"{b:02x}" for b in mac)
    parsed = parse_mac(mac)
    if parsed is None:
        raise ValueError(f"{mac!r} is not a MAC address (expected 02:00:00:00:00:01)")
    return parsed


def parse_mac(text: str) -> str | None:
    """``xx:xx:xx:xx:xx:xx`` (any case) normalised, or None (hwaddr_aton's syntax)."""
    parts = text.split(":")
    if len(parts) != 6 or any(len(p) != 2 for p in parts):
        return None
    try:
        return ":".join(f"{int(p, 16):02x}" for p in parts)
    except ValueError:
        return None


def wps_uuid(mac: str) -> str:
    """The WPS UUID wpa_supplicant shows in STATUS: name-based (SHA-1) from the MAC address."""
    digest = hashlib.sha1(_WPS_UUID_NAMESPACE + bytes.fromhex(mac_txt(mac).replace(":", "")))
    return str(uuid.UUID(bytes=digest.digest()[:16], version=5))


def scan_flags(key_mgmt: str) -> str:
    """SCAN_RESULTS flags of an access point: ``"WPA2-PSK"`` or ``"NONE"`` (open)."""
    if key_mgmt == "NONE":
        return "[ESS]"
    return f"[{key_mgmt}-CCMP][ESS]"


def printf_decode(text: str) -> bytes | None:
    """The escapes of a ``P"..."`` value (wpa_supplicant's printf_decode), or None if bad."""
    raw = text.encode("utf-8", "surrogateescape")
    out = bytearray()
    i = 0
    simple = {ord("\\"): 0x5C, ord('"'): 0x22, ord("n"): 0x0A, ord("r"): 0x0D, ord("t"): 0x09}
    simple[ord("e")] = 0x1B
    while i < len(raw):
        byte = raw[i]
        i += 1
        if byte != 0x5C:
            out.append(byte)
            continue
        if i >= len(raw):
            return None
        code = raw[i]
        i += 1
        if code in simple:
            out.append(simple[code])
        elif code == ord("x"):
            digits = raw[i : i + 2]
            try:
                out.append(int(digits, 16))
            except ValueError:
                return None
            i += len(digits)
        else:
            return None
    return bytes(out)


def parse_string_value(value: str) -> bytes | None:
    """A string variable as wpa_supplicant reads it: ``"text"``, ``P"escaped"`` or hex."""
    if value.startswith('"'):
        end = value.rfind('"')
        if end == 0 or end != len(value) - 1:
            return None
        return value[1:end].encode("utf-8", "surrogateescape")
    if value.startswith('P"'):
        if len(value) < 3 or not value.endswith('"'):
            return None
        return printf_decode(value[2:-1])
    return hex_bytes(value)


def hex_bytes(text: str) -> bytes | None:
    """Hex digits (an even number, nothing else) as bytes, or None (hexstr2bin's syntax)."""
    if len(text) % 2 or any(c not in string.hexdigits for c in text):
        return None
    return bytes.fromhex(text)


def write_string_value(data: bytes) -> str:
    """A string variable as GET_NETWORK shows it: quoted if printable ASCII, else hex."""
    if all(32 <= b < 127 for b in data):
        return '"' + data.decode("ascii") + '"'
    return data.hex()


def c_atoi(text: str) -> int:
    """C's atoi: leading spaces, an optional sign, digits; 0 when there are none."""
    text = text.lstrip(" \t\n\r\f\v")
    sign = 1
    if text and text[0] in "+-":
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    digits = ""
    for char in text:
        if not char.isdigit() or not char.isascii():
            break
        digits += char
    return sign * int(digits) if digits else 0


def c_strtol(text: str) -> int | None:
    """C's strtol with base 0 over the whole text (0x.. hex, 0.. octal), or None."""
    body = text.strip()
    sign = 1
    if body and body[0] in "+-":
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    try:
        if body[:2].lower() == "0x":
            return sign * int(body[2:], 16)
        if len(body) > 1 and body.startswith("0"):
            return sign * int(body[1:], 8)
        return sign * int(body, 10)
    except ValueError:
        return None


# --- events ----------------------------------------------------------------------------

EV_SCAN_STARTED = "CTRL-EVENT-SCAN-STARTED "
EV_SCAN_RESULTS = "CTRL-EVENT-SCAN-RESULTS "
EV_NETWORK_NOT_FOUND = "CTRL-EVENT-NETWORK-NOT-FOUND "
EV_TERMINATING = "CTRL-EVENT-TERMINATING "
EV_SUBNET_STATUS_UPDATE = "CTRL-EVENT-SUBNET-STATUS-UPDATE status=0"
EV_PSK_MAY_BE_INCORRECT = "WPA: 4-Way Handshake failed - pre-shared key may be incorrect"
#: IEEE 802.11 reason "deauthenticated because sending station is leaving" (DISCONNECT).
REASON_DEAUTH_LEAVING = 3


def ev_connected(bssid: str, network_id: int, id_str: str = "") -> str:
    return (
        f"CTRL-EVENT-CONNECTED - Connection to {mac_txt(bssid)} completed "
        f"[id={network_id} id_str={id_str}]"
    )


def ev_disconnected(bssid: str, reason: int, locally_generated: bool = False) -> str:
    local = " locally_generated=1" if locally_generated else ""
    return f"CTRL-EVENT-DISCONNECTED bssid={mac_txt(bssid)} reason={reason}{local}"


def ev_temp_disabled(
    network_id: int, ssid: bytes | None, auth_failures: int, duration: int, reason: str
) -> str:
    return (
        f'CTRL-EVENT-SSID-TEMP-DISABLED id={network_id} ssid="{ssid_txt(ssid)}" '
        f"auth_failures={auth_failures} duration={duration} reason={reason}"
    )


def ev_reenabled(network_id: int, ssid: bytes | None) -> str:
    return f'CTRL-EVENT-SSID-REENABLED id={network_id} ssid="{ssid_txt(ssid)}"'


def ev_network_added(network_id: int) -> str:
    return f"CTRL-EVENT-NETWORK-ADDED {network_id}"


def ev_network_removed(network_id: int) -> str:
    return f"CTRL-EVENT-NETWORK-REMOVED {network_id}"


def ev_sme_authenticating(bssid: str, ssid: bytes | None, frequency: int) -> str:
    return (
        f"SME: Trying to authenticate with {mac_txt(bssid)} "
        f"(SSID='{ssid_txt(ssid)}' freq={frequency} MHz)"
    )


def ev_trying_to_associate(bssid: str, ssid: bytes | None, frequency: int) -> str:
    return (
        f"Trying to associate with {mac_txt(bssid)} (SSID='{ssid_txt(ssid)}' freq={frequency} MHz)"
    )


def ev_associated(bssid: str) -> str:
    return f"Associated with {mac_txt(bssid)}"


def ev_key_negotiation_completed(bssid: str, pairwise: str = "CCMP", group: str = "CCMP") -> str:
    return f"WPA: Key negotiation completed with {mac_txt(bssid)} [PTK={pairwise} GTK={group}]"


def ev_assoc_reject(bssid: str, status_code: int) -> str:
    return f"CTRL-EVENT-ASSOC-REJECT bssid={mac_txt(bssid)} status_code={status_code}"


def ev_auth_reject(bssid: str, status_code: int, auth_type: int = 0, transaction: int = 2) -> str:
    return (
        f"CTRL-EVENT-AUTH-REJECT {mac_txt(bssid)} auth_type={auth_type} "
        f"auth_transaction={transaction} status_code={status_code}"
    )


def temp_disable_duration(auth_failures: int) -> int:
    """Seconds a network stays temporarily disabled after this many failures (wpas_auth_failed)."""
    for above, seconds in ((50, 300), (10, 120), (5, 90), (3, 60), (2, 30), (1, 20)):
        if auth_failures > above:
            return seconds
    return 10


# --- the network table -----------------------------------------------------------------


@dataclass
class Network:
    """One network block, as ADD_NETWORK/SET_NETWORK build it."""

    id: int
    ssid: bytes | None = None
    #: Passphrase (8..63 characters) or 64 lower-case hex digits (the PSK itself).
    psk: str | None = None
    #: Space-separated, in KEY_MGMT_ORDER; the simulation connects with WPA-PSK or NONE.
    key_mgmt: str = "WPA-PSK"
    scan_ssid: bool = False
    priority: int = 0
    bssid: str | None = None
    disabled: bool = True
    #: Clock time until which the network is skipped after failures (0: not disabled).
    temp_disabled_until: float = 0.0
    auth_failures: int = 0
    id_str: str = ""
    #: Accepted variables the simulation does not model (proto, pairwise, ...): their text.
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_open(self) -> bool:
        """Connects without keys (key_mgmt NONE)."""
        return "NONE" in self.key_mgmt.split()

    @property
    def uses_psk(self) -> bool:
        """Connects with the psk (WPA-PSK and its variants)."""
        return bool(PSK_KEY_MGMT.intersection(self.key_mgmt.split()))

    @property
    def usable(self) -> bool:
        """Has what a connection needs: an SSID, and a psk when PSK is its only way in."""
        if not self.ssid:
            return False
        return self.is_open or (self.uses_psk and self.psk is not None)

    def temp_disabled(self, now: float) -> bool:
        return self.temp_disabled_until > now


class NetworkTable:
    """wpa_supplicant's network list: ids, variables, enabled/disabled/selected."""

    def __init__(self) -> None:
        self._networks: dict[int, Network] = {}

    def __iter__(self) -> Iterator[Network]:
        return iter(sorted(self._networks.values(), key=lambda n: n.id))

    def __len__(self) -> int:
        return len(self._networks)

    def get(self, network_id: int | None) -> Network | None:
        return None if network_id is None else self._networks.get(network_id)

    def add(self) -> Network:
        """A new disabled network with wpa_supplicant's defaults (key_mgmt WPA-PSK WPA-EAP);
        its id is one above the highest in use."""
        network_id = max(self._networks, default=-1) + 1
        network = Network(id=network_id, key_mgmt=DEFAULT_KEY_MGMT)
        self._networks[network_id] = network
        return network

    def remove(self, network_id: int) -> bool:
        return self._networks.pop(network_id, None) is not None

    def remove_all(self) -> list[int]:
        removed = sorted(self._networks)
        self._networks.clear()
        return removed

    def set(self, network_id: int, name: str, value: str) -> bool:
        """SET_NETWORK: False when the network or variable is unknown or the value invalid."""
        network = self._networks.get(network_id)
        if network is None:
            return False
        if name in _MODELLED:
            return bool(getattr(self, f"_set_{name}")(network, value))
        if name in _EXTRA_DEFAULTS:
            return self._set_extra(network, name, value)
        return False

    def get_value(self, network_id: int, name: str) -> str | None:
        """GET_NETWORK: the value's text, ``*`` for a secret that is set, None when unset."""
        network = self._networks.get(network_id)
        if network is None:
            return None
        if name == "ssid":
            return None if network.ssid is None else write_string_value(network.ssid)
        if name == "psk":
            return None if network.psk is None else "*"
        if name == "key_mgmt":
            return network.key_mgmt
        if name in ("scan_ssid", "disabled"):
            return "1" if getattr(network, name) else "0"
        if name == "priority":
            return str(network.priority)
        if name == "bssid":
            return network.bssid
        if name == "id_str":
            return write_string_value(network.id_str.encode()) if network.id_str else None
        if name in _EXTRA_DEFAULTS:
            return network.extra.get(name, _EXTRA_DEFAULTS[name])
        return None

    # SET_NETWORK variables: each returns True when the value was valid and stored.

    def _set_ssid(self, network: Network, value: str) -> bool:
        data = parse_string_value(value)
        if data is None or len(data) > 32:
            return False
        network.ssid = data
        return True

    def _set_psk(self, network: Network, value: str) -> bool:
        if value.startswith('"'):
            end = value.rfind('"')
            text = value[1:end] if end > 0 else value[1:]
            raw = text.encode("utf-8", "surrogateescape")
            if not 8 <= len(raw) <= 63 or any(b < 32 or b == 127 for b in raw):
                return False
            network.psk = text
            return True
        if len(value) != 64 or hex_bytes(value) is None:
            return False
        network.psk = value.lower()
        return True

    def _set_key_mgmt(self, network: Network, value: str) -> bool:
        tokens = value.split()
        if not tokens or any(t not in KEY_MGMT_ORDER for t in tokens):
            return False
        network.key_mgmt = " ".join(t for t in KEY_MGMT_ORDER if t in tokens)
        return True

    def _set_scan_ssid(self, network: Network, value: str) -> bool:
        number = c_strtol(value)
        if number not in (0, 1):
            return False
        network.scan_ssid = bool(number)
        return True

    def _set_disabled(self, network: Network, value: str) -> bool:
        number = c_strtol(value)
        if number not in (0, 1, 2):  # 2 marks a P2P group: here simply disabled
            return False
        network.disabled = bool(number)
        return True

    def _set_priority(self, network: Network, value: str) -> bool:
        number = c_strtol(value)
        if number is None:
            return False
        network.priority = number
        return True

    def _set_bssid(self, network: Network, value: str) -> bool:
        if value in ("", '""', "any"):
            network.bssid = None
            return True
        mac = parse_mac(value)
        if mac is None:
            return False
        network.bssid = None if mac == "00:00:00:00:00:00" else mac
        return True

    def _set_id_str(self, network: Network, value: str) -> bool:
        data = parse_string_value(value)
        if data is None:
            return False
        network.id_str = data.decode("utf-8", "surrogateescape")
        return True

    def config_text(self) -> str:
        """The networks as SAVE_CONFIG writes them after the file's globals: each block
        with the values that differ from the defaults, the psk in clear (the node's file
        holds it anyway)."""
        blocks = []
        for network in self:
            lines = []
            if network.ssid is not None:
                lines.append(f"ssid={write_string_value(network.ssid)}")
            if network.scan_ssid:
                lines.append("scan_ssid=1")
            if network.bssid:
                lines.append(f"bssid={network.bssid}")
            if network.psk is not None:
                hex_psk = len(network.psk) == 64 and hex_bytes(network.psk) is not None
                lines.append(f"psk={network.psk}" if hex_psk else f'psk="{network.psk}"')
            if network.key_mgmt != DEFAULT_KEY_MGMT:
                lines.append(f"key_mgmt={network.key_mgmt}")
            for name, value in network.extra.items():
                lines.append(f"{name}={value}")
            if network.priority:
                lines.append(f"priority={network.priority}")
            if network.id_str:
                lines.append(f"id_str={write_string_value(network.id_str.encode())}")
            if network.disabled:
                lines.append("disabled=1")
            blocks.append("\nnetwork={\n" + "".join(f"\t{line}\n" for line in lines) + "}\n")
        return "".join(blocks)

    def _set_extra(self, network: Network, name: str, value: str) -> bool:
        tokens = _EXTRA_TOKENS.get(name)
        if tokens is not None:
            words = value.split()
            if not words or any(w not in tokens for w in words):
                return False
            network.extra[name] = " ".join(words)
            return True
        if name == "bgscan":
            if parse_string_value(value) is None:
                return False
            network.extra[name] = value
            return True
        number = c_strtol(value)
        # mode 0 only: the simulation has stations, not IBSS, AP or mesh networks.
        limits = {"ieee80211w": (0, 3), "mode": (0, 0), "frequency": (0, 70200)}[name]
        if number is None or not limits[0] <= number <= limits[1]:
            return False
        network.extra[name] = str(number)
        return True

    # enabling and selecting; each returns the events wpa_supplicant sends

    def enable(self, network_id: int | None) -> list[str]:
        """ENABLE_NETWORK id|all: a disabled network comes back with its failures forgotten."""
        events = []
        for network in self._targets(network_id):
            if network.disabled:
                network.disabled = False
                event = self.clear_temp_disabled(network.id, clear_failures=True)
                if event:
                    events.append(event)
        return events

    def disable(self, network_id: int | None) -> None:
        """DISABLE_NETWORK id|all."""
        for network in self._targets(network_id):
            network.disabled = True

    def select(self, network_id: int | None) -> list[str]:
        """SELECT_NETWORK id|any: enable that one and disable all others (any: enable all)."""
        events = []
        for network in self:
            was_disabled = network.disabled
            network.disabled = network_id is not None and network.id != network_id
            if was_disabled and not network.disabled:
                event = self.clear_temp_disabled(network.id, clear_failures=False)
                if event:
                    events.append(event)
        return events

    def _targets(self, network_id: int | None) -> list[Network]:
        if network_id is None:
            return list(self)
        network = self._networks.get(network_id)
        return [] if network is None else [network]

    # temporary disabling after failed attempts (wpas_auth_failed / wpas_clear_temp_disabled)

    def auth_failed(self, network_id: int, reason: str, now: float) -> str | None:
        """One more failure: disable the network for a while; the event, if any."""
        network = self._networks.get(network_id)
        if network is None:
            return None
        network.auth_failures += 1
        duration = temp_disable_duration(network.auth_failures)
        if now + duration <= network.temp_disabled_until:
            return None
        network.temp_disabled_until = now + duration
        return ev_temp_disabled(network.id, network.ssid, network.auth_failures, duration, reason)

    def clear_temp_disabled(self, network_id: int, clear_failures: bool) -> str | None:
        """End a temporary disabling (after a connection: forget the failures too)."""
        network = self._networks.get(network_id)
        if network is None:
            return None
        event = None
        if network.temp_disabled_until:
            event = ev_reenabled(network.id, network.ssid)
        network.temp_disabled_until = 0.0
        if clear_failures:
            network.auth_failures = 0
        return event

    def reenable_expired(self, now: float) -> list[str]:
        """Networks whose disabling time is over come back: their events."""
        events = []
        for network in self:
            if network.temp_disabled_until and network.temp_disabled_until <= now:
                event = self.clear_temp_disabled(network.id, clear_failures=False)
                if event:
                    events.append(event)
        return events

    def candidates(self, now: float) -> list[Network]:
        """Networks a station may try now, best first: priority, then the lower id."""
        ready = [n for n in self if not n.disabled and n.usable and not n.temp_disabled(now)]
        return sorted(ready, key=lambda n: (-n.priority, n.id))


# --- what the station driver provides --------------------------------------------------


@dataclass
class ScanResult:
    """One BSS of SCAN_RESULTS."""

    bssid: str
    frequency: int
    signal_dbm: int
    flags: str
    ssid: bytes


@dataclass
class LinkStatus:
    """The station's link, as STATUS reports it."""

    #: One of WPA_STATES.
    wpa_state: str
    #: The station's own MAC address.
    address: str
    bssid: str | None = None
    ssid: bytes | None = None
    frequency: int | None = None
    network_id: int | None = None
    #: As STATUS prints it: "WPA2-PSK", "WPA2-PSK-SHA256" or "NONE".
    key_mgmt: str | None = None
    ip_address: str | None = None
    #: Signal of the current BSS (SIGNAL_POLL); None falls back to the scan results.
    signal_dbm: int | None = None


class StationDriver(Protocol):
    """The simulated station behind one control interface.

    ``disconnect()`` starts a hold: the station stays disconnected, whatever the table
    says, until ``reconnect()``. The interface calls ``reconnect()`` for REASSOCIATE, for
    RECONNECT while the hold is on, and for SELECT_NETWORK while the hold is on (a
    selection ends it, as in wpa_supplicant); otherwise a table change calls
    ``networks_changed()``, which must respect the hold.
    """

    def request_scan(self) -> bool:
        """Start a scan; False when one is running (the reply is FAIL-BUSY)."""
        ...

    def scan_results(self) -> list[ScanResult]:
        """The BSSes found by the last scans."""
        ...

    def status(self) -> LinkStatus:
        """The link now."""
        ...

    def networks_changed(self) -> None:
        """Networks were enabled, disabled, selected, removed or edited: reconsider."""
        ...

    def disconnect(self) -> None:
        """DISCONNECT: leave the BSS (reason 3) and hold off until reconnect()."""
        ...

    def reconnect(self) -> None:
        """End the hold and connect to the best enabled network (reassociate if connected)."""
        ...


# --- the command interpreter -----------------------------------------------------------


class CtrlInterface:
    """One station's control interface: commands in, replies out, events to listeners."""

    def __init__(
        self,
        driver: StationDriver,
        networks: NetworkTable | None = None,
        clock: Callable[[], float] = time.monotonic,
        ifname: str = WIFI_INTERFACE,
    ) -> None:
        self.driver = driver
        self.networks = networks if networks is not None else NetworkTable()
        self.clock = clock
        self.ifname = ifname
        #: The control log: "<t> > CMD", "<t> < first reply line", "<t> event TEXT",
        #: "<t> ! note" (t: seconds since this interface started); secrets masked.
        self.history: deque[str] = deque(maxlen=500)
        #: Called with (text, level) for every event; a ControlSocket registers here.
        self.listeners: list[Callable[[str, int], None]] = []
        self._start = clock()
        self._disconnected = False
        #: STA_AUTOCONNECT: whether the station reconnects by itself after a loss.
        self.autoconnect = True

    @property
    def disconnected(self) -> bool:
        """True from DISCONNECT until RECONNECT, REASSOCIATE or SELECT_NETWORK."""
        return self._disconnected

    # --- log and events -----------------------------------------------------------

    def _stamp(self) -> str:
        return f"{self.clock() - self._start:.3f}"

    def note(self, text: str) -> None:
        """Add a line to the control log (socket trouble, driver failures)."""
        self.history.append(f"{self._stamp()} ! {text}")

    def control_log(self) -> str:
        return "\n".join(self.history)

    def event(self, text: str, level: int = MSG_INFO) -> None:
        """Send an event to every listener (the socket's monitors) and log it."""
        self.history.append(f"{self._stamp()} event {text}")
        for listener in list(self.listeners):
            try:
                listener(text, level)
            except Exception as exc:  # a broken listener must not break the station
                self.note(f"event listener failed: {type(exc).__name__}: {exc}")

    def auth_failed(self, network_id: int, reason: str = "WRONG_KEY") -> None:
        """The station failed to authenticate with this network: disable it for a while."""
        event = self.networks.auth_failed(network_id, reason, self.clock())
        if event:
            self.event(event)

    def connection_completed(self, network_id: int) -> None:
        """The station connected with this network: its failure count starts over."""
        event = self.networks.clear_temp_disabled(network_id, clear_failures=True)
        if event:
            self.event(event)

    def reenable_expired(self) -> None:
        """Bring back networks whose temporary disabling is over (call before choosing)."""
        for event in self.networks.reenable_expired(self.clock()):
            self.event(event)

    # --- commands -----------------------------------------------------------------

    def handle(self, command: str, *, from_helper: bool = False) -> str:
        """One command to its reply text; never raises. The log keeps what the node's
        software asked; a test helper's commands are marked, and its polling (commands
        that only read) is left out, so a failure report shows the device, not us."""
        record = not (from_helper and command.split(" ", 1)[0] in READ_ONLY_COMMANDS)
        mark = "helper " if from_helper else ""
        if record:
            self.history.append(f"{self._stamp()} {mark}> {masked(command)}")
        try:
            reply = self._dispatch(command)
        except Exception as exc:  # the driver failed: the client sees FAIL, the log why
            self.note(f"{command.split(' ', 1)[0]!r} failed: {type(exc).__name__}: {exc}")
            reply = "FAIL\n"
        if record:
            lines = reply.splitlines()
            first = lines[0] if lines else ""
            more = f" [+{len(lines) - 1} lines]" if len(lines) > 1 else ""
            self.history.append(f"{self._stamp()} {mark}< {first}{more}")
        return reply

    def _dispatch(self, command: str) -> str:
        exact = {
            "PING": lambda: "PONG\n",
            "IFNAME": lambda: self.ifname,
            "SCAN": self._scan,
            "SCAN_RESULTS": self._scan_results,
            "ADD_NETWORK": self._add_network,
            "LIST_NETWORKS": lambda: self._list_networks(""),
            "DISCONNECT": self._disconnect,
            "RECONNECT": self._reconnect,
            "REASSOCIATE": self._reassociate,
            # Only the node has the file: the socket hands SAVE_CONFIG to the node's relay.
            "SAVE_CONFIG": lambda: "FAIL\n",
            "SIGNAL_POLL": self._signal_poll,
            "ATTACH": lambda: "FAIL\n",  # only a socket knows who is asking
            "DETACH": lambda: "FAIL\n",
        }
        if command in exact:
            return exact[command]()
        prefixed: list[tuple[str, Callable[[str], str]]] = [
            ("STATUS", self._status),
            ("SCAN ", lambda _args: self._scan()),
            ("SET_NETWORK ", self._set_network),
            ("GET_NETWORK ", self._get_network),
            ("ENABLE_NETWORK ", self._enable_network),
            ("DISABLE_NETWORK ", self._disable_network),
            ("SELECT_NETWORK ", self._select_network),
            ("REMOVE_NETWORK ", self._remove_network),
            ("LIST_NETWORKS ", self._list_networks),
            ("BSSID ", self._bssid),
            ("BSS ", self._bss),
            ("GET_CAPABILITY ", self._get_capability),
            ("STA_AUTOCONNECT ", self._sta_autoconnect),
            ("INTERFACES", lambda _args: f"{self.ifname}\n"),
            ("LEVEL ", lambda _args: "FAIL\n"),
            ("ATTACH ", lambda _args: "FAIL\n"),
        ]
        for prefix, handler in prefixed:
            if command.startswith(prefix):
                return handler(command[len(prefix) :])
        return "UNKNOWN COMMAND\n"

    def _status(self, params: str) -> str:
        if params == "-DRIVER":
            return "FAIL\n"
        link = self.driver.status()
        lines = []
        network = self.networks.get(link.network_id)
        if link.wpa_state in _ASSOCIATED_STATES:
            lines.append(f"bssid={mac_txt(link.bssid or '00:00:00:00:00:00')}")
            lines.append(f"freq={link.frequency or 0}")
            if link.network_id is not None:
                ssid = link.ssid if link.ssid is not None else (network.ssid if network else None)
                lines.append(f"ssid={ssid_txt(ssid)}")
                lines.append(f"id={link.network_id}")
                if network is not None and network.id_str:
                    lines.append(f"id_str={network.id_str}")
                lines.append("mode=station")
            key_mgmt = link.key_mgmt or ("NONE" if network and network.is_open else "WPA2-PSK")
            cipher = "NONE" if key_mgmt == "NONE" else "CCMP"
            lines += [f"pairwise_cipher={cipher}", f"group_cipher={cipher}"]
            lines.append(f"key_mgmt={key_mgmt}")
        lines.append(f"wpa_state={link.wpa_state}")
        if link.ip_address:
            lines.append(f"ip_address={link.ip_address}")
        lines.append(f"address={mac_txt(link.address)}")
        lines.append(f"uuid={wps_uuid(link.address)}")
        return "".join(line + "\n" for line in lines)

    def _scan(self) -> str:
        return "OK\n" if self.driver.request_scan() else "FAIL-BUSY\n"

    def _scan_results(self) -> str:
        lines = ["bssid / frequency / signal level / flags / ssid\n"]
        for bss in self.driver.scan_results():
            lines.append(
                f"{mac_txt(bss.bssid)}\t{bss.frequency}\t{bss.signal_dbm}\t{bss.flags}\t"
                f"{ssid_txt(bss.ssid)}\n"
            )
        return _capped(lines)

    def _bss(self, args: str) -> str:
        """BSS <id>|<bssid>|FIRST|LAST|NEXT-<id>|PREV-<id>: one BSS of the scan results, in
        wpa_supplicant's name=value form; an empty reply when there is none (as there).
        Ids are positions in SCAN_RESULTS."""
        results = self.driver.scan_results()
        index: int | None = None
        what = args.split(" ", 1)[0]
        if what == "FIRST":
            index = 0
        elif what == "LAST":
            index = len(results) - 1
        elif what.startswith("NEXT-"):
            index = c_atoi(what[5:]) + 1
        elif what.startswith("PREV-"):
            index = c_atoi(what[5:]) - 1
        elif parse_mac(what) is not None:
            found = [i for i, bss in enumerate(results) if mac_txt(bss.bssid) == parse_mac(what)]
            index = found[0] if found else None
        elif what.isdigit():
            index = int(what)
        if index is None or not 0 <= index < len(results):
            return ""
        bss = results[index]
        rsn = bss.flags != "[ESS]"
        link = self.driver.status()
        return (
            f"id={index}\nbssid={mac_txt(bss.bssid)}\nfreq={bss.frequency}\nbeacon_int=100\n"
            f"capabilities=0x{0x0411 if rsn else 0x0401:04x}\nqual=0\nnoise=-92\n"
            f"level={bss.signal_dbm}\ntsf=0000000000000000\nage=0\n"
            f"ie={bss_ies(bss.ssid, bss.frequency, rsn).hex()}\nflags={bss.flags}\n"
            f"ssid={ssid_txt(bss.ssid)}\nsnr={bss.signal_dbm + 92}\nest_throughput=54000\n"
            + ("associated=1\n" if link.bssid and mac_txt(link.bssid) == mac_txt(bss.bssid) else "")
        )

    def _get_capability(self, args: str) -> str:
        """GET_CAPABILITY <field> [strict]: what this station supports; FAIL for others."""
        field_name = args.split(" ", 1)[0]
        if field_name in CAPABILITIES:
            return CAPABILITIES[field_name]  # no newline, as wpa_supplicant
        if field_name == "channels":
            return "Mode[B] Channels: " + " ".join(str(c) for c in CHANNELS_24GHZ) + "\n"
        if field_name == "freq":
            lines = [f" {c} = {2407 + 5 * c} MHz" for c in CHANNELS_24GHZ]
            return "Mode[B] Channels:\n" + "\n".join(lines) + "\n"
        return "FAIL\n"

    def _sta_autoconnect(self, args: str) -> str:
        self.autoconnect = c_atoi(args) != 0
        return "OK\n"

    def _signal_poll(self) -> str:
        link = self.driver.status()
        if link.wpa_state not in _ASSOCIATED_STATES or link.bssid is None:
            return "FAIL\n"
        signal = link.signal_dbm
        if signal is None:
            bssid = mac_txt(link.bssid)
            found = [b.signal_dbm for b in self.driver.scan_results() if mac_txt(b.bssid) == bssid]
            if not found:
                return "FAIL\n"
            signal = found[0]
        frequency = link.frequency or 0
        return (
            f"RSSI={signal}\nLINKSPEED=54\nNOISE=9999\nFREQUENCY={frequency}\n"
            f"WIDTH=20 MHz (no HT)\nCENTER_FRQ1={frequency}\n"
        )

    def _add_network(self) -> str:
        network = self.networks.add()
        self.event(ev_network_added(network.id))
        return f"{network.id}\n"

    def _remove_network(self, args: str) -> str:
        if args == "all":
            for network_id in self.networks.remove_all():
                self.event(ev_network_removed(network_id))
        else:
            network_id = c_atoi(args)
            if not self.networks.remove(network_id):
                return "FAIL\n"
            self.event(ev_network_removed(network_id))
        self.driver.networks_changed()
        return "OK\n"

    def _set_network(self, args: str) -> str:
        parts = args.split(" ", 2)
        if len(parts) != 3:
            return "FAIL\n"
        network_id, name, value = c_atoi(parts[0]), parts[1], parts[2]
        network = self.networks.get(network_id)
        was_disabled = network.disabled if network else True
        if not self.networks.set(network_id, name, value):
            self.note(
                f"SET_NETWORK {network_id} {name}: no such network, unknown variable "
                "or invalid value"
            )
            return "FAIL\n"
        assert network is not None
        if not network.disabled or network.disabled != was_disabled:
            self.driver.networks_changed()
        return "OK\n"

    def _get_network(self, args: str) -> str:
        parts = args.split(" ", 1)
        if len(parts) != 2:
            return "FAIL\n"
        value = self.networks.get_value(c_atoi(parts[0]), parts[1])
        return "FAIL\n" if value is None else value  # no newline, as wpa_supplicant

    def _bssid(self, args: str) -> str:
        parts = args.split(" ", 1)
        if len(parts) != 2 or parse_mac(parts[1]) is None:
            return "FAIL\n"
        return "OK\n" if self.networks.set(c_atoi(parts[0]), "bssid", parts[1]) else "FAIL\n"

    def _network_arg(self, args: str, word: str) -> tuple[bool, int | None]:
        """(valid, id): ``word`` ("all"/"any") means every network (None)."""
        if args == word or (word == "any" and args.startswith("any")):
            return True, None
        network_id = c_atoi(args)
        return self.networks.get(network_id) is not None, network_id

    def _enable_network(self, args: str) -> str:
        valid, network_id = self._network_arg(args, "all")
        if not valid:
            return "FAIL\n"
        if network_id is not None and " no-connect" in args:
            network = self.networks.get(network_id)
            assert network is not None
            network.disabled = False
            return "OK\n"
        for event in self.networks.enable(network_id):
            self.event(event)
        self.driver.networks_changed()
        return "OK\n"

    def _disable_network(self, args: str) -> str:
        valid, network_id = self._network_arg(args, "all")
        if not valid:
            return "FAIL\n"
        self.networks.disable(network_id)
        self.driver.networks_changed()
        return "OK\n"

    def _select_network(self, args: str) -> str:
        valid, network_id = self._network_arg(args, "any")
        if not valid:
            return "FAIL\n"
        for event in self.networks.select(network_id):
            self.event(event)
        if self._disconnected:
            self._disconnected = False
            self.driver.reconnect()
        else:
            self.driver.networks_changed()
        return "OK\n"

    def _list_networks(self, args: str) -> str:
        first = 0
        if args.startswith("LAST_ID="):
            last = c_atoi(args[len("LAST_ID=") :])
            first = last + 1 if last != -1 else 0
        current = self.driver.status().network_id
        now = self.clock()
        lines = ["network id / ssid / bssid / flags\n"]
        for network in self.networks:
            if network.id < first:
                continue
            flags = (
                ("[CURRENT]" if network.id == current else "")
                + ("[DISABLED]" if network.disabled else "")
                + ("[TEMP-DISABLED]" if network.temp_disabled(now) else "")
            )
            lines.append(
                f"{network.id}\t{ssid_txt(network.ssid)}\t{network.bssid or 'any'}\t{flags}\n"
            )
        return _capped(lines)

    def _disconnect(self) -> str:
        self._disconnected = True
        self.driver.disconnect()
        return "OK\n"

    def _reconnect(self) -> str:
        if self._disconnected:
            self._disconnected = False
            self.driver.reconnect()
        return "OK\n"

    def _reassociate(self) -> str:
        self._disconnected = False
        self.driver.reconnect()
        return "OK\n"


def bss_ies(ssid: bytes, frequency: int, rsn: bool) -> bytes:
    """The information elements BSS shows (ie=): SSID, rates, DS parameter set and, for a
    WPA2 network, RSN (CCMP, PSK)."""
    channel = max(0, (frequency - 2407) // 5) if frequency < 5000 else (frequency - 5000) // 5
    ies = bytes([0, len(ssid)]) + ssid
    ies += bytes.fromhex("0108828490960c121824") + bytes([3, 1, channel & 0xFF])
    if rsn:
        ies += bytes.fromhex("30140100000fac040100000fac040100000fac020c00")
    return ies


def masked(command: str) -> str:
    """A command for the log: the value of a secret variable replaced by [REMOVED]."""
    if command.startswith("SET_NETWORK "):
        parts = command.split(" ", 3)
        if len(parts) == 4 and parts[2] in SECRET_FIELDS:
            return " ".join(parts[:3]) + " [REMOVED]"
    return command


def _capped(lines: list[str]) -> str:
    """Whole lines up to wpa_supplicant's reply size (the rest is cut, as there)."""
    out: list[str] = []
    size = 0
    for line in lines:
        length = len(line.encode("utf-8", "surrogateescape"))
        if size + length >= REPLY_SIZE:
            break
        out.append(line)
        size += length
    return "".join(out)


# --- frames between a node's relay and the medium ---------------------------------------

#: A frame's header: type, address length, payload length (big-endian). Then the address
#: (a client's sun_path bytes exactly as the relay received them, abstract names included)
#: and the payload. The relay in the node (images/medium/cirque-wpa-ctrl.c) speaks the same.
FRAME_HEADER = struct.Struct("!cHI")
#: relay -> medium, first and once: the station's token.
FRAME_HELLO = b"H"
#: medium -> relay: the token names a station; relaying starts.
FRAME_ACCEPTED = b"A"
#: Either way: a client's datagram (to the medium), a datagram for a client (to the relay).
FRAME_DATAGRAM = b"D"
#: relay -> medium: sending to that address failed; the payload is "<errno> <text>".
FRAME_FAILED = b"F"
#: medium -> relay: the client at that address asked SAVE_CONFIG; the payload is the
#: network blocks. The relay writes them after its file's globals (when update_config=1)
#: and answers the client OK or FAIL: only the node has the configuration file.
FRAME_CONFIG = b"C"
#: sizeof(sun_path): the longest address a Unix socket has.
MAX_ADDRESS = 108
#: wpa_ctrl's datagram limit: the relay refuses longer datagrams, and so does the medium.
MAX_DATAGRAM = 4096
#: Bytes waiting for a relay that does not read, after which the medium gives up on it.
MAX_BACKLOG = 256 * 1024


@dataclass(frozen=True)
class Frame:
    """One frame: its type (a FRAME_* byte), a client's address and the payload."""

    kind: bytes
    address: bytes = b""
    payload: bytes = b""

    def encode(self) -> bytes:
        if len(self.address) > MAX_ADDRESS or len(self.payload) > MAX_DATAGRAM:
            raise ValueError(
                f"a frame holds up to {MAX_ADDRESS} address and {MAX_DATAGRAM} payload bytes"
            )
        header = FRAME_HEADER.pack(self.kind, len(self.address), len(self.payload))
        return header + self.address + self.payload


class FrameReader:
    """Whole frames out of a byte stream, which may split and join them anywhere."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next(self) -> Frame | None:
        """The next whole frame, or None until more bytes come; ValueError when the
        stream cannot be frames (a size over the limits): the peer is not a relay."""
        if len(self._buffer) < FRAME_HEADER.size:
            return None
        kind, address_len, payload_len = FRAME_HEADER.unpack_from(self._buffer)
        if address_len > MAX_ADDRESS or payload_len > MAX_DATAGRAM:
            raise ValueError(f"frame sizes {address_len}/{payload_len} are over the limits")
        end = FRAME_HEADER.size + address_len + payload_len
        if len(self._buffer) < end:
            return None
        address = bytes(self._buffer[FRAME_HEADER.size : FRAME_HEADER.size + address_len])
        payload = bytes(self._buffer[FRAME_HEADER.size + address_len : end])
        del self._buffer[:end]
        return Frame(kind, address, payload)


def address_text(address: bytes) -> str:
    """A client's address for the log: its path, ``@name`` when abstract, or "unbound"."""
    if not address:
        return "an unbound client"
    if address.startswith(b"\0"):
        return "@" + address[1:].decode("utf-8", "backslashreplace")
    return address.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")


# --- the socket ------------------------------------------------------------------------


@dataclass
class Monitor:
    """An attached client: where its events go (its address) and from which level on."""

    address: bytes
    level: int = MSG_INFO
    errors: int = 0


class ControlSocket:
    """The control socket of one station, served in its node through the node's relay.

    A client's reply socket lives in the node's own filesystem, where only a process of
    the node can send to it; the medium holds no power over nodes. So the node's relay
    (cirque-wpa-ctrl) owns the datagram socket there and carries each datagram, with its
    sender's address, over one stream to this end, and this end's datagrams back to the
    addresses they name. The semantics are wpa_supplicant's: a reply goes to its sender,
    events go to ATTACHed monitors by their address, DETACH ends that, and a monitor whose
    socket is gone (the relay reports the failed send) is dropped.

    ``reader`` carries what was read from the connection before (its token); ``on_output``
    is told whether bytes wait for the connection to become writable, so the loop can
    watch for that. Non-blocking; :meth:`handle_io` never raises.
    """

    def __init__(
        self,
        interface: CtrlInterface,
        connection: socket.socket,
        *,
        reader: FrameReader | None = None,
        on_output: Callable[[bool], None] | None = None,
    ) -> None:
        self.interface = interface
        self.monitors: dict[bytes, Monitor] = {}
        self._connection = connection
        self._connection.setblocking(False)
        self._reader = reader or FrameReader()
        self._out = bytearray()
        self._on_output = on_output or (lambda _pending: None)
        self._closed = False
        interface.listeners.append(self._broadcast)

    @property
    def closed(self) -> bool:
        return self._closed

    def fileno(self) -> int:
        return self._connection.fileno()

    # --- receiving ----------------------------------------------------------------

    def handle_io(self) -> bool:
        """Send what waits, then answer every pending frame (up to READ_BATCH reads).
        False once the relay has gone (or broke the framing): close() it then."""
        if self._closed or not self._flush():
            return False
        for _ in range(READ_BATCH):
            if not self._handle_frames():
                return False
            try:
                data = self._connection.recv(65536)
            except (BlockingIOError, InterruptedError):
                return not self._closed
            except OSError as exc:
                self.interface.note(f"control socket relay: read failed: {exc}")
                return False
            if not data:
                self.interface.note("control socket relay: disconnected")
                return False
            self._reader.feed(data)
        return self._handle_frames()

    def _handle_frames(self) -> bool:
        while not self._closed:
            try:
                frame = self._reader.next()
            except ValueError as exc:
                self.interface.note(f"control socket relay: {exc}; disconnected")
                return False
            if frame is None:
                return True
            try:
                if frame.kind == FRAME_DATAGRAM:
                    self._on_datagram(frame.payload, frame.address)
                elif frame.kind == FRAME_FAILED:
                    self._on_failed(frame.address, frame.payload)
                else:
                    self.interface.note(f"control socket relay: frame {frame.kind!r} ignored")
            except Exception as exc:  # one bad datagram must not stop the medium
                who = address_text(frame.address)
                self.interface.note(f"datagram from {who}: {type(exc).__name__}: {exc}")
        return False

    def _on_datagram(self, data: bytes, address: bytes) -> None:
        command = data.decode("utf-8", "surrogateescape")
        if command == "ATTACH" or command.startswith("ATTACH "):
            reply = self._attach(address)
        elif command == "DETACH":
            detached = self.monitors.pop(address, None) if address else None
            reply = "OK\n" if detached is not None else "FAIL\n"
            self._log_socket_command(command, reply)
        elif command.startswith("LEVEL "):
            monitor = self.monitors.get(address) if address else None
            if monitor is not None:
                monitor.level = c_atoi(command[len("LEVEL ") :])
            reply = "OK\n" if monitor is not None else "FAIL\n"
            self._log_socket_command(command, reply)
        elif command == "SAVE_CONFIG":
            self._log_socket_command(command, "(written by the node's wpa_supplicant)")
            self._send(Frame(FRAME_CONFIG, address, self._config_payload()))
            return
        else:
            reply = self.interface.handle(command)
        self._reply(address, reply)

    def _config_payload(self) -> bytes:
        """The network blocks for SAVE_CONFIG: whole blocks that fit in one frame."""
        out = b""
        for block in self.interface.networks.config_text().split("\nnetwork={"):
            if not block:
                continue
            data = ("\nnetwork={" + block).encode("utf-8", "surrogateescape")
            if len(out) + len(data) > MAX_DATAGRAM:
                self.interface.note("SAVE_CONFIG: networks over 4096 bytes left out")
                break
            out += data
        return out

    def _attach(self, address: bytes) -> str:
        if not address:
            reply = "FAIL\n"  # an unbound client has no address to send events to
        else:
            self.monitors.setdefault(address, Monitor(address))
            reply = "OK\n"
        self._log_socket_command("ATTACH", reply)
        return reply

    def _on_failed(self, address: bytes, payload: bytes) -> None:
        """The relay could not send to ``address``: a monitor that is gone is dropped (as
        wpa_supplicant drops one), a full one after MAX_MONITOR_ERRORS failures."""
        text = payload.decode("utf-8", "replace")
        code = c_atoi(text)
        who = address_text(address)
        monitor = self.monitors.get(address)
        if monitor is None:
            self.interface.note(f"reply to {who} lost: {text}")
            return
        monitor.errors += 1
        if code in _GONE or monitor.errors > MAX_MONITOR_ERRORS:
            del self.monitors[address]
            self.interface.note(f"monitor {who} dropped: {text}")

    def _log_socket_command(self, command: str, reply: str) -> None:
        stamp = self.interface._stamp()
        self.interface.history.append(f"{stamp} > {command}")
        self.interface.history.append(f"{stamp} < {reply.rstrip()}")

    # --- sending ------------------------------------------------------------------

    def _reply(self, address: bytes, reply: str) -> None:
        if not address:
            self.interface.note("reply to an unbound client lost: no address to send to")
            return
        # wpa_supplicant's reply buffer holds MAX_DATAGRAM bytes: longer replies are cut.
        data = reply.encode("utf-8", "surrogateescape")[:MAX_DATAGRAM]
        self._send(Frame(FRAME_DATAGRAM, address, data))

    def _send(self, frame: Frame) -> None:
        if self._closed:
            return
        self._out += frame.encode()
        if len(self._out) > MAX_BACKLOG:
            self.interface.note(
                f"control socket relay: {len(self._out)} bytes unread; disconnected"
            )
            self._out.clear()
            self._shut()
            return
        self._flush()

    def _flush(self) -> bool:
        """Send what waits; False when the connection is broken."""
        pending = bool(self._out)
        while self._out:
            try:
                sent = self._connection.send(self._out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self.interface.note(f"control socket relay: write failed: {exc}")
                self._out.clear()
                self._shut()
                return False
            del self._out[:sent]
        if pending != bool(self._out):
            self._on_output(bool(self._out))
        return not self._closed

    def _shut(self) -> None:
        """Stop the relay reading anything more (it sees the end of the stream and exits);
        the owner closes this end when handle_io() says so."""
        with contextlib.suppress(OSError):
            self._connection.shutdown(socket.SHUT_RDWR)

    # --- events -------------------------------------------------------------------

    def event(self, text: str, level: int = MSG_INFO) -> None:
        """Send an event to every attached monitor (same as ``interface.event``)."""
        self.interface.event(text, level)

    def _broadcast(self, text: str, level: int) -> None:
        if self._closed:
            return
        data = f"<{level}>{text}".encode("utf-8", "surrogateescape")[:MAX_DATAGRAM]
        for monitor in list(self.monitors.values()):
            if level >= monitor.level:
                self._send(Frame(FRAME_DATAGRAM, monitor.address, data))

    # --- closing ------------------------------------------------------------------

    def close(self) -> None:
        """Tell monitors the supplicant terminates and hang up: the relay then exits and
        removes the socket file in the node."""
        if self._closed:
            return
        self._on_output = lambda _pending: None  # the owner stops watching this end
        self.event(EV_TERMINATING)
        self._flush()
        self._closed = True
        if self._broadcast in self.interface.listeners:
            self.interface.listeners.remove(self._broadcast)
        self._connection.close()
        self.monitors.clear()
