"""WPA2-PSK 4-way handshake (IEEE 802.11-2016 12.7), pure: keys, EAPOL-Key frames, both roles.

The simulated WiFi runs a real handshake between each access point and station so that a
wrong passphrase fails where it fails on hardware: the AP finds a bad MIC in message 2 and
ignores it, and the station never gets message 3. Frames are the standard ones (EAPOL
ethertype 0x888E, RSN key descriptor, version 2: HMAC-SHA1-128 MIC and AES key wrap, CCMP
pairwise and group), so tcpdump and Wireshark decode our captures.

No sockets, clocks or threads: the caller moves the bytes and decides when to retransmit.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap,
    aes_key_wrap,
)

from pytest_cirque.core.errors import HandshakeError, SpecError

EAPOL_ETHERTYPE = 0x888E

#: EAPOL protocol version we send: 802.1X-2004. We accept 1 (2001) to 3 (2010) on receive.
EAPOL_VERSION = 2
EAPOL_KEY = 3
DESCRIPTOR_RSN = 2
#: Key descriptor version 2: HMAC-SHA1-128 MIC, AES key wrap for the key data.
DESCRIPTOR_VERSION_AES = 2

# Key Information bits (12.7.2, figure 12-33).
KEY_INFO_VERSION_MASK = 0x0007
KEY_INFO_PAIRWISE = 0x0008
KEY_INFO_INSTALL = 0x0040
KEY_INFO_ACK = 0x0080
KEY_INFO_MIC = 0x0100
KEY_INFO_SECURE = 0x0200
KEY_INFO_ERROR = 0x0400
KEY_INFO_REQUEST = 0x0800
KEY_INFO_ENCRYPTED = 0x1000

_BASE = DESCRIPTOR_VERSION_AES | KEY_INFO_PAIRWISE
MSG1_INFO = _BASE | KEY_INFO_ACK
MSG2_INFO = _BASE | KEY_INFO_MIC
MSG3_INFO = (
    _BASE | KEY_INFO_INSTALL | KEY_INFO_ACK | KEY_INFO_MIC | KEY_INFO_SECURE | KEY_INFO_ENCRYPTED
)
MSG4_INFO = _BASE | KEY_INFO_MIC | KEY_INFO_SECURE

CCMP_KEY_LENGTH = 16
NONCE_LENGTH = 32
PMK_LENGTH = 32
MAC_LENGTH = 6

# EAPOL header (version, type, body length), then the key descriptor up to its key data.
_EAPOL_HEADER = struct.Struct(">BBH")
_DESCRIPTOR = struct.Struct(">BHHQ32s16s8s8s16sH")
_HEADER_LENGTH = _EAPOL_HEADER.size + _DESCRIPTOR.size  # 99
_MIC_OFFSET = _EAPOL_HEADER.size + 77
_MIC_LENGTH = 16

_RSN_OUI = b"\x00\x0f\xac"
_CIPHER_CCMP = _RSN_OUI + b"\x04"
_AKM_PSK = _RSN_OUI + b"\x02"
_KDE_GTK = 1
#: The first group key an AP hands out has key ID 1 (hostapd does the same).
GTK_KEY_ID = 1

_PACKET_TYPES = {0: "EAP-Packet", 1: "EAPOL-Start", 2: "EAPOL-Logoff", 3: "EAPOL-Key"}


# --- keys -------------------------------------------------------------------------------


def passphrase_error(passphrase: str) -> str | None:
    """Why a WPA2 passphrase is invalid, or None: 8..63 printable ASCII, or 64 hex digits."""
    if len(passphrase) == 64:
        if all(c in "0123456789abcdefABCDEF" for c in passphrase):
            return None
        return "64 characters must all be hex digits (a raw PSK); a passphrase has 8 to 63"
    if not 8 <= len(passphrase) <= 63:
        return f"must be 8 to 63 characters, got {len(passphrase)}"
    for index, char in enumerate(passphrase):
        if not " " <= char <= "~":
            return f"must be printable ASCII, character {index + 1} is {char!r}"
    return None


def ssid_error(ssid: bytes) -> str | None:
    """Why an SSID is invalid, or None: 1 to 32 bytes."""
    if not 1 <= len(ssid) <= 32:
        return f"must be 1 to 32 bytes, got {len(ssid)}"
    return None


def pmk(passphrase: str, ssid: bytes) -> bytes:
    """The pairwise master key (J.4): PBKDF2-HMAC-SHA1, 4096 rounds; 64 hex digits are the PSK."""
    reason = passphrase_error(passphrase)
    if reason is not None:
        raise SpecError(f"WPA2 passphrase {reason}")
    if len(passphrase) == 64:
        return bytes.fromhex(passphrase)
    reason = ssid_error(ssid)
    if reason is not None:
        raise SpecError(f"SSID {ssid!r} {reason}")
    return hashlib.pbkdf2_hmac("sha1", passphrase.encode("ascii"), ssid, 4096, PMK_LENGTH)


def prf(key: bytes, label: bytes, data: bytes, bits: int) -> bytes:
    """IEEE 802.11 PRF-n (12.7.1.2): HMAC-SHA1 over label, 0, data, counter; first n bits."""
    if bits <= 0 or bits % 8:
        raise ValueError(f"PRF length must be a positive multiple of 8 bits, got {bits}")
    length = bits // 8
    output = b""
    counter = 0
    while len(output) < length:
        output += hmac.new(key, label + b"\x00" + data + bytes([counter]), hashlib.sha1).digest()
        counter += 1
    return output[:length]


@dataclass(frozen=True)
class Ptk:
    """Pairwise transient key, CCMP split: MIC key, key-wrap key, temporal (traffic) key."""

    kck: bytes = field(repr=False)
    kek: bytes = field(repr=False)
    tk: bytes = field(repr=False)


def derive_ptk(pmk: bytes, aa: bytes, spa: bytes, anonce: bytes, snonce: bytes) -> Ptk:
    """PTK = PRF-384(PMK, "Pairwise key expansion", min/max of the addresses, then nonces)."""
    _check_length("PMK", pmk, PMK_LENGTH)
    _check_length("authenticator address", aa, MAC_LENGTH)
    _check_length("supplicant address", spa, MAC_LENGTH)
    _check_length("ANonce", anonce, NONCE_LENGTH)
    _check_length("SNonce", snonce, NONCE_LENGTH)
    data = min(aa, spa) + max(aa, spa) + min(anonce, snonce) + max(anonce, snonce)
    key = prf(pmk, b"Pairwise key expansion", data, 384)
    return Ptk(kck=key[:16], kek=key[16:32], tk=key[32:48])


def rsn_ie() -> bytes:
    """RSN element of WPA2-PSK: version 1, CCMP group and pairwise, AKM PSK, no capabilities."""
    body = (
        struct.pack("<H", 1)
        + _CIPHER_CCMP
        + struct.pack("<H", 1)
        + _CIPHER_CCMP
        + struct.pack("<H", 1)
        + _AKM_PSK
        + struct.pack("<H", 0)
    )
    return bytes([48, len(body)]) + body


def gtk_kde(gtk: bytes, key_id: int = GTK_KEY_ID) -> bytes:
    """GTK key data encapsulation (12.7.2, table 12-6): key ID, not Tx, then the key."""
    body = _RSN_OUI + bytes([_KDE_GTK, key_id & 0x03, 0]) + gtk
    return bytes([0xDD, len(body)]) + body


def key_mic(kck: bytes, payload: bytes) -> bytes:
    """MIC of an EAPOL-Key frame: HMAC-SHA1-128 over the frame with its MIC field zeroed."""
    if len(payload) < _HEADER_LENGTH:
        raise HandshakeError(f"EAPOL-Key frame of {len(payload)} bytes is too short for a MIC")
    (body_length,) = struct.unpack_from(">H", payload, 2)
    frame = bytearray(payload[: _EAPOL_HEADER.size + body_length])
    frame[_MIC_OFFSET : _MIC_OFFSET + _MIC_LENGTH] = bytes(_MIC_LENGTH)
    return hmac.new(kck, bytes(frame), hashlib.sha1).digest()[:_MIC_LENGTH]


def _check_length(what: str, value: bytes, length: int) -> None:
    if len(value) != length:
        raise ValueError(f"{what} must be {length} bytes, got {len(value)}")


def _check_party(pmk: bytes, aa: bytes, spa: bytes) -> None:
    """The PMK and both addresses of a handshake have their lengths."""
    _check_length("PMK", pmk, PMK_LENGTH)
    _check_length("authenticator address", aa, MAC_LENGTH)
    _check_length("supplicant address", spa, MAC_LENGTH)


def _sign(frame: bytes, kck: bytes) -> bytes:
    mic = key_mic(kck, frame)
    return frame[:_MIC_OFFSET] + mic + frame[_MIC_OFFSET + _MIC_LENGTH :]


def _mic_ok(kck: bytes, payload: bytes) -> bool:
    received = payload[_MIC_OFFSET : _MIC_OFFSET + _MIC_LENGTH]
    return hmac.compare_digest(key_mic(kck, payload), received)


def _wrap_key_data(kek: bytes, data: bytes) -> bytes:
    """AES key wrap needs whole 8-byte blocks, at least two: pad with 0xdd then zeros."""
    if len(data) % 8 or len(data) < 16:
        data += b"\xdd"
        data += bytes(-len(data) % 8)
        data += bytes(max(0, 16 - len(data)))
    return aes_key_wrap(kek, data)


def _elements(data: bytes) -> list[tuple[int, bytes]]:
    """(id, body) of each element in key data, stopping at the 0xdd-then-zeros padding."""
    found: list[tuple[int, bytes]] = []
    index = 0
    while index < len(data):
        if data[index] == 0xDD and (index + 1 == len(data) or not any(data[index + 1 :])):
            break  # padding
        if index + 2 > len(data):
            raise HandshakeError("key data ends in the middle of an element header")
        element_id, length = data[index], data[index + 1]
        if index + 2 + length > len(data):
            raise HandshakeError(f"key data element {element_id} runs past the key data")
        found.append((element_id, data[index + 2 : index + 2 + length]))
        index += 2 + length
    return found


def _find_rsn_ie(key_data: bytes) -> bytes | None:
    for element_id, body in _elements(key_data):
        if element_id == 48:
            return bytes([48, len(body)]) + body
    return None


def _find_gtk(key_data: bytes) -> bytes | None:
    for element_id, body in _elements(key_data):
        if element_id == 0xDD and body[:4] == _RSN_OUI + bytes([_KDE_GTK]):
            return body[6:]
    return None


# --- frames -----------------------------------------------------------------------------


@dataclass
class EapolKey:
    """One EAPOL-Key frame: the EAPOL header and an RSN key descriptor (12.7.2)."""

    key_info: int
    key_length: int
    replay_counter: int
    nonce: bytes
    key_iv: bytes = bytes(16)
    key_rsc: bytes = bytes(8)
    mic: bytes = bytes(16)
    key_data: bytes = b""
    #: EAPOL protocol version (2 = 802.1X-2004); kept as received so MICs verify.
    version: int = EAPOL_VERSION

    def encode(self) -> bytes:
        _check_length("nonce", self.nonce, NONCE_LENGTH)
        _check_length("key IV", self.key_iv, 16)
        _check_length("key RSC", self.key_rsc, 8)
        _check_length("MIC", self.mic, _MIC_LENGTH)
        descriptor = _DESCRIPTOR.pack(
            DESCRIPTOR_RSN,
            self.key_info,
            self.key_length,
            self.replay_counter,
            self.nonce,
            self.key_iv,
            self.key_rsc,
            bytes(8),
            self.mic,
            len(self.key_data),
        )
        body = descriptor + self.key_data
        return _EAPOL_HEADER.pack(self.version, EAPOL_KEY, len(body)) + body

    @classmethod
    def decode(cls, data: bytes) -> EapolKey:
        """Parse an EAPOL payload; HandshakeError if it is not a well-formed RSN EAPOL-Key."""
        if len(data) < _EAPOL_HEADER.size:
            raise HandshakeError(f"EAPOL frame of {len(data)} bytes is shorter than its header")
        version, packet_type, body_length = _EAPOL_HEADER.unpack_from(data)
        if not 1 <= version <= 3:
            raise HandshakeError(f"unknown EAPOL protocol version {version}")
        if packet_type != EAPOL_KEY:
            name = _PACKET_TYPES.get(packet_type, "unknown")
            raise HandshakeError(f"EAPOL packet type {packet_type} ({name}) is not EAPOL-Key")
        if len(data) < _EAPOL_HEADER.size + body_length:
            raise HandshakeError(
                f"EAPOL-Key frame truncated: body length {body_length}, "
                f"{len(data) - _EAPOL_HEADER.size} bytes present"
            )
        if body_length < _DESCRIPTOR.size:
            raise HandshakeError(
                f"EAPOL-Key body of {body_length} bytes is shorter than a key descriptor "
                f"({_DESCRIPTOR.size})"
            )
        (
            descriptor_type,
            key_info,
            key_length,
            replay_counter,
            nonce,
            key_iv,
            key_rsc,
            _reserved,
            mic,
            data_length,
        ) = _DESCRIPTOR.unpack_from(data, _EAPOL_HEADER.size)
        if descriptor_type != DESCRIPTOR_RSN:
            raise HandshakeError(
                f"key descriptor type {descriptor_type} is not RSN ({DESCRIPTOR_RSN}); "
                "only WPA2 is supported"
            )
        if key_info & KEY_INFO_VERSION_MASK != DESCRIPTOR_VERSION_AES:
            raise HandshakeError(
                f"key descriptor version {key_info & KEY_INFO_VERSION_MASK} is not "
                f"{DESCRIPTOR_VERSION_AES} (HMAC-SHA1 MIC, AES key wrap)"
            )
        if _DESCRIPTOR.size + data_length > body_length:
            raise HandshakeError(
                f"key data length {data_length} runs past the EAPOL-Key body ({body_length})"
            )
        start = _HEADER_LENGTH
        return cls(
            key_info=key_info,
            key_length=key_length,
            replay_counter=replay_counter,
            nonce=nonce,
            key_iv=key_iv,
            key_rsc=key_rsc,
            mic=mic,
            key_data=bytes(data[start : start + data_length]),
            version=version,
        )

    def message_number(self) -> int:
        """Which message of the 4-way handshake this is (1..4), from its Key Information."""
        info = self.key_info
        if not info & KEY_INFO_PAIRWISE:
            raise HandshakeError("group key message, not part of the 4-way handshake")
        if info & (KEY_INFO_REQUEST | KEY_INFO_ERROR):
            raise HandshakeError("EAPOL-Key request or error report, not a handshake message")
        ack, has_mic = bool(info & KEY_INFO_ACK), bool(info & KEY_INFO_MIC)
        if ack and not has_mic:
            return 1
        if ack and has_mic and info & KEY_INFO_INSTALL:
            return 3
        if not ack and has_mic:
            return 4 if info & KEY_INFO_SECURE else 2
        raise HandshakeError(f"key information 0x{info:04x} is no 4-way handshake message")


def _decode_message(payload: bytes, who: str, expected: tuple[int, ...]) -> tuple[EapolKey, int]:
    frame = EapolKey.decode(payload)
    number = frame.message_number()
    if number not in expected:
        wanted = " or ".join(str(n) for n in expected)
        raise HandshakeError(f"{who} got message {number}, expects message {wanted}")
    return frame, number


# --- roles ------------------------------------------------------------------------------


class Authenticator:
    """AP side of one association's 4-way handshake; bad frames raise and change nothing.

    Like hostapd, a frame with a bad MIC is ignored (counted in ``mic_failures``): with a
    wrong passphrase the station's message 2 never verifies and message 3 is never sent.
    """

    def __init__(
        self, pmk: bytes, aa: bytes, spa: bytes, gtk: bytes, nonce: bytes | None = None
    ) -> None:
        _check_party(pmk, aa, spa)
        _check_length("GTK", gtk, CCMP_KEY_LENGTH)
        self.pmk = pmk
        self.aa = aa
        self.spa = spa
        self.gtk = gtk
        self.anonce = os.urandom(NONCE_LENGTH) if nonce is None else nonce
        _check_length("ANonce", self.anonce, NONCE_LENGTH)
        self.complete = False
        self.ptk: Ptk | None = None
        self.mic_failures = 0
        self.replay_counter = 0
        self._msg1_counters: set[int] = set()
        self._msg3_counters: set[int] = set()

    def message1(self) -> bytes:
        """Message 1 (ANonce); each call, a retransmission, takes the next replay counter."""
        if self.ptk is not None:
            raise HandshakeError("message 2 was already accepted; retransmit message 3 instead")
        self.replay_counter += 1
        self._msg1_counters.add(self.replay_counter)
        return EapolKey(
            key_info=MSG1_INFO,
            key_length=CCMP_KEY_LENGTH,
            replay_counter=self.replay_counter,
            nonce=self.anonce,
        ).encode()

    def message3(self) -> bytes:
        """Message 3 (again) with the next replay counter: key data RSN IE + GTK, wrapped."""
        if self.ptk is None:
            raise HandshakeError("no verified message 2 yet; message 3 cannot be sent")
        self.replay_counter += 1
        self._msg3_counters.add(self.replay_counter)
        frame = EapolKey(
            key_info=MSG3_INFO,
            key_length=CCMP_KEY_LENGTH,
            replay_counter=self.replay_counter,
            nonce=self.anonce,
            key_data=_wrap_key_data(self.ptk.kek, rsn_ie() + gtk_kde(self.gtk)),
        ).encode()
        return _sign(frame, self.ptk.kck)

    def retransmit(self) -> bytes | None:
        """The frame to resend when the station has not answered in time (None when done)."""
        if self.complete:
            return None
        return self.message1() if self.ptk is None else self.message3()

    def receive(self, payload: bytes) -> bytes | None:
        """Message 2 -> message 3; message 4 -> None and ``complete``; else HandshakeError."""
        if self.complete:
            raise HandshakeError("authenticator: handshake already complete")
        if not self._msg1_counters:
            raise HandshakeError("authenticator: got a frame before sending message 1")
        expected = 2 if self.ptk is None else 4
        frame, _number = _decode_message(payload, "authenticator", (expected,))
        if expected == 2:
            return self._receive_message2(payload, frame)
        self._receive_message4(payload, frame)
        return None

    def _receive_message2(self, payload: bytes, frame: EapolKey) -> bytes:
        if frame.replay_counter not in self._msg1_counters:
            raise HandshakeError(
                f"message 2 replay counter {frame.replay_counter} answers no message 1 sent"
            )
        ptk = derive_ptk(self.pmk, self.aa, self.spa, self.anonce, frame.nonce)
        if not _mic_ok(ptk.kck, payload):
            self.mic_failures += 1
            raise HandshakeError("message 2 MIC is wrong: the station has another passphrase")
        station_ie = _find_rsn_ie(frame.key_data)
        if station_ie != rsn_ie():
            raise HandshakeError(
                "message 2 RSN element does not match WPA2-PSK with CCMP: "
                f"{station_ie.hex() if station_ie else 'none'}"
            )
        self.ptk = ptk
        return self.message3()

    def _receive_message4(self, payload: bytes, frame: EapolKey) -> None:
        assert self.ptk is not None
        if frame.replay_counter not in self._msg3_counters:
            raise HandshakeError(
                f"message 4 replay counter {frame.replay_counter} answers no message 3 sent"
            )
        if not _mic_ok(self.ptk.kck, payload):
            self.mic_failures += 1
            raise HandshakeError("message 4 MIC is wrong")
        self.complete = True


class Supplicant:
    """Station side of the 4-way handshake; bad frames raise and change nothing.

    Message 3 proves the AP knows the PSK (its MIC), is fresh (replay counter above every
    one seen) and belongs to this exchange (same ANonce as message 1). A retransmitted
    message 3 after completion is answered with message 4 again, keys unchanged.
    """

    def __init__(self, pmk: bytes, aa: bytes, spa: bytes, nonce: bytes | None = None) -> None:
        _check_party(pmk, aa, spa)
        self.pmk = pmk
        self.aa = aa
        self.spa = spa
        self.snonce = os.urandom(NONCE_LENGTH) if nonce is None else nonce
        _check_length("SNonce", self.snonce, NONCE_LENGTH)
        self.complete = False
        self.ptk: Ptk | None = None
        self.gtk: bytes | None = None
        #: Highest replay counter of a frame whose MIC verified (None before the first).
        self.replay_counter: int | None = None
        self._anonce: bytes | None = None
        self._msg1_counter = 0
        self._pending: Ptk | None = None

    def receive(self, payload: bytes) -> bytes | None:
        """Message 1 -> message 2; message 3 -> message 4 and ``complete``; else HandshakeError."""
        frame, number = _decode_message(payload, "supplicant", (1, 3))
        if self.replay_counter is not None and frame.replay_counter <= self.replay_counter:
            raise HandshakeError(
                f"message {number} replay counter {frame.replay_counter} is not above "
                f"{self.replay_counter}, already used"
            )
        if number == 1:
            return self._receive_message1(frame)
        return self._receive_message3(payload, frame)

    def _receive_message1(self, frame: EapolKey) -> bytes:
        if self.complete:
            raise HandshakeError("supplicant: message 1 after the handshake completed")
        pending = derive_ptk(self.pmk, self.aa, self.spa, frame.nonce, self.snonce)
        self._pending = pending
        self._anonce = frame.nonce
        self._msg1_counter = frame.replay_counter
        reply = EapolKey(
            key_info=MSG2_INFO,
            key_length=0,
            replay_counter=frame.replay_counter,
            nonce=self.snonce,
            key_data=rsn_ie(),
        ).encode()
        return _sign(reply, pending.kck)

    def _receive_message3(self, payload: bytes, frame: EapolKey) -> bytes:
        ptk = self._pending
        if ptk is None:
            raise HandshakeError("supplicant: message 3 before any message 1")
        if frame.key_info != MSG3_INFO:
            raise HandshakeError(
                f"message 3 key information 0x{frame.key_info:04x}, expected 0x{MSG3_INFO:04x}"
            )
        if frame.replay_counter <= self._msg1_counter:
            raise HandshakeError(
                f"message 3 replay counter {frame.replay_counter} is not above message 1's "
                f"({self._msg1_counter})"
            )
        if not _mic_ok(ptk.kck, payload):
            raise HandshakeError("message 3 MIC is wrong: the AP has another passphrase")
        if frame.nonce != self._anonce:
            raise HandshakeError("message 3 ANonce differs from message 1's")
        if frame.key_length != CCMP_KEY_LENGTH:
            raise HandshakeError(
                f"message 3 pairwise key length {frame.key_length}, CCMP needs {CCMP_KEY_LENGTH}"
            )
        if len(frame.key_data) < 24 or len(frame.key_data) % 8:
            raise HandshakeError(
                f"message 3 key data of {len(frame.key_data)} bytes is no AES key wrap output"
            )
        try:
            key_data = aes_key_unwrap(ptk.kek, frame.key_data)
        except InvalidUnwrap:
            raise HandshakeError("message 3 key data does not unwrap with the KEK") from None
        ap_ie = _find_rsn_ie(key_data)
        if ap_ie != rsn_ie():
            raise HandshakeError(
                "message 3 RSN element does not match WPA2-PSK with CCMP: "
                f"{ap_ie.hex() if ap_ie else 'none'}"
            )
        gtk = _find_gtk(key_data)
        if gtk is None or len(gtk) != CCMP_KEY_LENGTH:
            raise HandshakeError("message 3 carries no CCMP group key (GTK KDE)")
        if self.complete and (ptk != self.ptk or gtk != self.gtk):
            raise HandshakeError("message 3 after completion would install other keys")
        self.replay_counter = frame.replay_counter
        self.ptk = ptk
        self.gtk = gtk
        self.complete = True
        reply = EapolKey(
            key_info=MSG4_INFO,
            key_length=0,
            replay_counter=frame.replay_counter,
            nonce=bytes(NONCE_LENGTH),
        ).encode()
        return _sign(reply, ptk.kck)
