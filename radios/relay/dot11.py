"""IEEE 802.11 frames as a monitor-mode radio captures them: radiotap, MAC header, body, FCS.

A WiFi medium keeps Ethernet frames on its air (data as the nodes send them, management
as private 0x88B5 frames, the handshake as EAPOL); its capture translates each one, at
capture time, into what a real channel would carry (pcap link type 127):

- management frames with their real fixed fields and elements (SSID, supported rates,
  DS parameter set, RSN), so Wireshark shows beacons, probes, authentication and
  association as 802.11;
- EAPOL and data as 802.11 data frames (ToDS from a station, FromDS from an AP) with an
  LLC/SNAP header; once a station's keys are installed, CCMP-protected with the real
  temporal key (pairwise) or the AP's group key, so Wireshark decrypts them when given
  the SSID and passphrase, and shows them as Protected otherwise;
- radiotap with the flags (an FCS follows each frame), the rate, the channel (frequency
  and band) and the antenna signal in dBm.

Pure but for AES-CCM (python3-cryptography): no sockets, no clock of its own.
"""

from __future__ import annotations

import functools
import struct
import zlib
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers.aead import AESCCM

#: pcap link type of 802.11 frames behind a radiotap header.
LINKTYPE_IEEE802_11_RADIOTAP = 127

# Frame types and the flags of the frame control field's second byte (9.2.4.1).
TYPE_MANAGEMENT = 0
TYPE_DATA = 2
SUBTYPE_DATA = 0
TO_DS = 0x01
FROM_DS = 0x02
RETRY = 0x08
POWER_MANAGEMENT = 0x10
MORE_DATA = 0x20
PROTECTED = 0x40

# Management subtypes (9.2.4.1.3): the medium's private frames use the same numbers.
ASSOC_REQUEST = 0
ASSOC_RESPONSE = 1
PROBE_REQUEST = 4
PROBE_RESPONSE = 5
BEACON = 8
DISASSOCIATION = 10
AUTHENTICATION = 11
DEAUTHENTICATION = 12

# Capability information bits (9.4.1.4).
CAPABILITY_ESS = 0x0001
CAPABILITY_PRIVACY = 0x0010

# Element IDs (9.4.2).
ELEMENT_SSID = 0
ELEMENT_RATES = 1
ELEMENT_DS_PARAMETERS = 3
ELEMENT_EXTENDED_RATES = 50

#: The rates of an OFDM-only BSS (802.11g without the 11b rates, as on 5 GHz) in
#: 500 kbit/s units; 6, 12 and 24 Mbit/s are basic (top bit). Eight fit the Supported
#: Rates element.
SUPPORTED_RATES = bytes([0x8C, 0x12, 0x98, 0x24, 0xB0, 0x48, 0x60, 0x6C])
BEACON_INTERVAL_TU = 100
LISTEN_INTERVAL = 10
AUTH_OPEN_SYSTEM = 0
#: An association ID in the AID field carries its two top bits set (9.4.1.8).
AID_FLAGS = 0xC000
LLC_SNAP = b"\xaa\xaa\x03\x00\x00\x00"
#: Below this, the Ethernet type field is an 802.3 length: the payload has its own LLC.
ETHERTYPE_MIN = 0x0600

# Radiotap (radiotap.org): the fields we write, by their presence bit.
RADIOTAP_FLAGS = 1
RADIOTAP_RATE = 2
RADIOTAP_CHANNEL = 3
RADIOTAP_DBM_ANTSIGNAL = 5
RADIOTAP_FLAG_FCS = 0x10
CHANNEL_OFDM = 0x0040
CHANNEL_2GHZ = 0x0080
CHANNEL_5GHZ = 0x0100

CCMP_HEADER_LENGTH = 8
CCMP_MIC_LENGTH = 8
CCMP_EXT_IV = 0x20
#: The largest CCMP packet number (48 bits).
PN_MAX = (1 << 48) - 1


def frequency_mhz(channel: int) -> int:
    """Centre frequency of a 2.4 GHz (1..14) or 5 GHz channel."""
    if channel == 14:
        return 2484
    if 1 <= channel <= 13:
        return 2407 + 5 * channel
    return 5000 + 5 * channel


def radiotap(channel: int, rate_mbps: float, signal_dbm: float | None) -> bytes:
    """A radiotap header: flags (an FCS ends the frame), rate, channel, and the antenna
    signal when someone heard the frame (fields in presence-bit order, each aligned)."""
    signal = None if signal_dbm is None else max(-128, min(127, round(signal_dbm)))
    return _radiotap(channel, round(rate_mbps * 2), signal)


@functools.lru_cache(maxsize=4096)
def _radiotap(channel: int, rate: int, signal: int | None) -> bytes:
    """The header of ``radiotap`` (rate in 500 kbit/s, whole dBm): a capture writes the
    same few over and over."""
    frequency = frequency_mhz(channel)
    band = CHANNEL_2GHZ if frequency < 5000 else CHANNEL_5GHZ
    present = 1 << RADIOTAP_FLAGS | 1 << RADIOTAP_RATE | 1 << RADIOTAP_CHANNEL
    # flags u8 at 8, rate u8 at 9, channel (u16 frequency, u16 flags) at 10: all aligned.
    fields = struct.pack("<BBHH", RADIOTAP_FLAG_FCS, rate, frequency, band | CHANNEL_OFDM)
    if signal is not None:
        present |= 1 << RADIOTAP_DBM_ANTSIGNAL
        fields += struct.pack("<b", signal)
    return struct.pack("<BBHI", 0, 0, 8 + len(fields), present) + fields


def mac_header(
    frame_type: int,
    subtype: int,
    flags: int,
    addr1: bytes,
    addr2: bytes,
    addr3: bytes,
    sequence: int,
) -> bytes:
    """A three-address MAC header (24 bytes): frame control, duration 0, the addresses,
    and the sequence number (fragment 0)."""
    control = subtype << 4 | frame_type << 2
    return (
        struct.pack("<BBH", control, flags, 0)
        + addr1
        + addr2
        + addr3
        + struct.pack("<H", (sequence & 0xFFF) << 4)
    )


def fcs(frame: bytes) -> bytes:
    """The frame check sequence: CRC-32 of the MAC header and body, little-endian."""
    return struct.pack("<I", zlib.crc32(frame))


def ccmp_encrypt(
    tk: bytes,
    header: bytes,
    plaintext: bytes,
    pn: int,
    key_id: int = 0,
    cipher: AESCCM | None = None,
) -> bytes:
    """The MPDU of a three-address, non-QoS frame protected by CCMP (12.5.3): the header
    with Protected set, the CCMP header, the encrypted body and its 8-byte MIC.
    ``cipher``: AES-CCM already keyed with ``tk`` (its key schedule is then reused)."""
    if len(header) != 24:
        raise ValueError(f"CCMP here takes a 24-byte three-address header, got {len(header)}")
    if not 0 <= pn <= PN_MAX or not 0 <= key_id <= 3:
        raise ValueError(f"packet number {pn} or key ID {key_id} out of range")
    protected = bytearray(header)
    protected[1] |= PROTECTED
    control = protected[0]
    if (control >> 2) & 0x3 == TYPE_DATA:
        control &= 0x8F  # the AAD masks a data frame's subtype bits 4 to 6
    flags = (protected[1] & ~(RETRY | POWER_MANAGEMENT | MORE_DATA)) | PROTECTED
    # AAD: masked frame control, the three addresses, sequence control without the number.
    aad = bytes([control, flags]) + bytes(protected[4:22]) + bytes([protected[22] & 0x0F, 0])
    number = pn.to_bytes(6, "big")
    nonce = b"\x00" + bytes(protected[10:16]) + number  # priority 0, A2, PN5..PN0
    ccmp_header = bytes([number[5], number[4], 0, CCMP_EXT_IV | key_id << 6]) + number[3::-1]
    sealed = (cipher or AESCCM(tk, tag_length=CCMP_MIC_LENGTH)).encrypt(nonce, plaintext, aad)
    return bytes(protected) + ccmp_header + sealed


# --- management bodies ----------------------------------------------------------------


def element(element_id: int, body: bytes) -> bytes:
    return bytes([element_id, len(body)]) + body


def _rates() -> bytes:
    return element(ELEMENT_RATES, SUPPORTED_RATES)


def _bss_elements(ssid: bytes, channel: int, rsn: bytes) -> bytes:
    """SSID, supported rates, DS parameter set (the channel), RSN (a whole element)."""
    return (
        element(ELEMENT_SSID, ssid)
        + _rates()
        + element(ELEMENT_DS_PARAMETERS, bytes([channel]))
        + rsn
    )


def capability(rsn: bytes) -> int:
    """An AP's capability information: an infrastructure BSS, private when it has RSN."""
    return CAPABILITY_ESS | (CAPABILITY_PRIVACY if rsn else 0)


def management_body(
    subtype: int,
    *,
    from_ap: bool,
    status: int = 0,
    ssid: bytes = b"",
    channel: int = 0,
    rsn: bytes = b"",
    tsf_us: int = 0,
    aid: int = 0,
) -> bytes:
    """The body of a management frame: its fixed fields, then its elements (9.3.3).
    ``status`` is the status code, or the reason code of a (de)authentication or
    disassociation; ``from_ap`` tells an authentication's response (sequence 2) from
    its request (1)."""
    if subtype in (BEACON, PROBE_RESPONSE):
        fixed = struct.pack("<QHH", tsf_us, BEACON_INTERVAL_TU, capability(rsn))
        return fixed + _bss_elements(ssid, channel, rsn)
    if subtype == PROBE_REQUEST:
        return element(ELEMENT_SSID, ssid) + _rates()
    if subtype == AUTHENTICATION:
        return struct.pack("<HHH", AUTH_OPEN_SYSTEM, 2 if from_ap else 1, status)
    if subtype == ASSOC_REQUEST:
        fixed = struct.pack("<HH", capability(rsn), LISTEN_INTERVAL)
        return fixed + element(ELEMENT_SSID, ssid) + _rates() + rsn
    if subtype == ASSOC_RESPONSE:
        fixed = struct.pack("<HHH", capability(rsn), status, AID_FLAGS | aid if aid else 0)
        return fixed + _rates()
    if subtype in (DEAUTHENTICATION, DISASSOCIATION):
        return struct.pack("<H", status)
    raise ValueError(f"management subtype {subtype} is not one the medium sends")


def llc(frame: bytes) -> bytes:
    """An Ethernet frame's payload as an 802.11 data frame carries it: behind an LLC/SNAP
    header naming its ethertype (an 802.3 frame already has its own LLC)."""
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    if ethertype < ETHERTYPE_MIN:
        return frame[14 : 14 + ethertype]
    return LLC_SNAP + frame[12:]


# --- the air --------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """A CCMP key as a transmitter uses it: the pairwise TK (key ID 0) or a group key."""

    tk: bytes = field(repr=False)
    key_id: int = 0


@dataclass(frozen=True)
class Signal:
    """How a frame goes on the air: its channel, its rate, and the signal a receiver
    measured (None: no one heard it)."""

    channel: int
    rate_mbps: float
    signal_dbm: float | None


class Air:
    """The state real radios keep and a capture shows: each transmitter's sequence
    numbers, the packet number of each key, each BSS's timer (TSF) and association IDs.
    Each call returns one capture record: radiotap, then the 802.11 frame and its FCS."""

    def __init__(self) -> None:
        self._sequence: dict[bytes, int] = {}
        self._pn: dict[tuple[bytes, bytes, int], int] = {}
        self._tsf_start: dict[bytes, float] = {}
        self._aids: dict[bytes, dict[bytes, int]] = {}
        self._ciphers: dict[bytes, AESCCM] = {}

    def _next_sequence(self, transmitter: bytes) -> int:
        number = self._sequence.get(transmitter, -1) + 1 & 0xFFF
        self._sequence[transmitter] = number
        return number

    def tsf_us(self, bssid: bytes, now: float) -> int:
        """The BSS's timer: microseconds since its first beacon was captured."""
        start = self._tsf_start.setdefault(bssid, now)
        return round((now - start) * 1e6)

    def aid(self, bssid: bytes, station: bytes) -> int:
        """The association ID the AP gives a station: 1, 2, ... in order of association."""
        ids = self._aids.setdefault(bssid, {})
        return ids.setdefault(station, len(ids) + 1)

    def management(
        self, subtype: int, da: bytes, sa: bytes, bssid: bytes, body: bytes, signal: Signal
    ) -> bytes:
        header = mac_header(TYPE_MANAGEMENT, subtype, 0, da, sa, bssid, self._next_sequence(sa))
        return self._record(header + body, signal)

    def data(
        self,
        flags: int,
        addresses: tuple[bytes, bytes, bytes],
        payload: bytes,
        signal: Signal,
        key: Key | None = None,
    ) -> bytes:
        """A data frame from the transmitter ``addresses[1]`` (ToDS/FromDS in ``flags``),
        CCMP-protected with ``key`` when one is given."""
        addr1, addr2, addr3 = addresses
        header = mac_header(
            TYPE_DATA, SUBTYPE_DATA, flags, addr1, addr2, addr3, self._next_sequence(addr2)
        )
        if key is None:
            return self._record(header + payload, signal)
        slot = (addr2, key.tk, key.key_id)
        pn = self._pn.get(slot, 0) + 1
        self._pn[slot] = pn
        cipher = self._ciphers.get(key.tk)
        if cipher is None:
            cipher = self._ciphers[key.tk] = AESCCM(key.tk, tag_length=CCMP_MIC_LENGTH)
        return self._record(ccmp_encrypt(key.tk, header, payload, pn, key.key_id, cipher), signal)

    @staticmethod
    def _record(frame: bytes, signal: Signal) -> bytes:
        return radiotap(signal.channel, signal.rate_mbps, signal.signal_dbm) + frame + fcs(frame)
