"""802.11 as a WiFi medium's capture writes it: CCMP against the IEEE test vectors, the
radiotap layout, management bodies, and a whole association captured by a WifiMedium on
a fake clock, read back here, by tcpdump and by tshark (which decrypts it)."""

from __future__ import annotations

import struct
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from needs import host_tool

from pytest_cirque.radios.relay.dot11 import (
    ASSOC_RESPONSE,
    AUTHENTICATION,
    BEACON,
    DEAUTHENTICATION,
    FROM_DS,
    LINKTYPE_IEEE802_11_RADIOTAP,
    PROBE_REQUEST,
    PROTECTED,
    TO_DS,
    Air,
    Key,
    Signal,
    ccmp_encrypt,
    fcs,
    llc,
    management_body,
    radiotap,
)
from pytest_cirque.radios.relay.pcap import read_pcap
from pytest_cirque.radios.relay.protocol import CaptureStart, CaptureStop
from pytest_cirque.radios.relay.wpa import rsn_ie

from .test_wifi_medium import AP_MAC, PSK, STA_MAC, _setup, join
from .test_wifi_medium import Air as Home

SSID = "home"


# --- CCMP: IEEE 802.11 test vectors (CCMP test MPDUs 1 and 7) ------------------------


def test_ccmp_encrypts_test_mpdu_1_with_its_fcs():
    header = bytes.fromhex("0848c32c0fd2e128a57c5030f1844408abaea5b8fcba8033")
    plaintext = bytes.fromhex("f8ba1a55d02f85ae967bb62fb6cda8eb7e78a050")
    tk = bytes.fromhex("c97c1f67ce371185514a8a19f2bdd52f")
    mpdu = ccmp_encrypt(tk, header, plaintext, pn=0xB5039776E70C, key_id=0)
    assert mpdu == bytes.fromhex(
        "0848c32c0fd2e128a57c5030f1844408abaea5b8fcba8033"  # header, Protected already set
        "0ce70020769703b5"  # CCMP header: PN0 PN1 0 ExtIV|key 0 PN2..PN5
        "f3d0a2fe9a3dbf2342a643e43246e80c3c04d019"  # encrypted data
        "7845ce0b16f97623"  # MIC
    )
    assert fcs(mpdu) == bytes.fromhex("1d99f066")


def test_ccmp_encrypts_test_mpdu_7_to_ds_with_key_id_3():
    header = bytes.fromhex("187981469b50f4fd56f6efec9520169183570c4ccdee20a0")
    plaintext = bytes.fromhex("98beca86f4b38da20cfdf24724c58eb835665339")
    tk = bytes.fromhex("1bdb34980e038124a1db1a892bec366a")
    mpdu = ccmp_encrypt(tk, header, plaintext, pn=0x5EEC4073E723, key_id=3)
    assert mpdu == bytes.fromhex(
        "187981469b50f4fd56f6efec9520169183570c4ccdee20a0"
        "23e700e07340ec5e"
        "12c537ebf3ab584ef1fef9a1f3547a8c13b3225a"
        "2d0957ecfabe95b9"
    )


def test_ccmp_sets_protected_and_refuses_what_it_cannot_encode():
    header = bytes.fromhex("0800" + "00" * 22)
    mpdu = ccmp_encrypt(bytes(16), header, b"x", pn=1)
    assert mpdu[1] & PROTECTED and mpdu[24:32] == bytes.fromhex("0100002000000000")
    with pytest.raises(ValueError, match="24-byte"):
        ccmp_encrypt(bytes(16), header + b"\0\0", b"x", pn=1)
    with pytest.raises(ValueError, match="out of range"):
        ccmp_encrypt(bytes(16), header, b"x", pn=1 << 48)


# --- radiotap and frame bodies ---------------------------------------------------------


def test_radiotap_layout_flags_rate_channel_signal():
    header = radiotap(channel=6, rate_mbps=54, signal_dbm=-47.4)
    version, pad, length, present = struct.unpack_from("<BBHI", header)
    assert (version, pad, length, len(header)) == (0, 0, 15, 15)
    assert present == 0b101110  # flags (1), rate (2), channel (3), dBm antenna signal (5)
    flags, rate, frequency, channel_flags, signal = struct.unpack_from("<BBHHb", header, 8)
    assert flags == 0x10  # the frame ends with its FCS
    assert (rate, frequency, channel_flags, signal) == (108, 2437, 0x00C0, -47)
    heard_by_none = radiotap(channel=36, rate_mbps=6, signal_dbm=None)
    assert struct.unpack_from("<HI", heard_by_none, 2) == (14, 0b1110)
    assert struct.unpack_from("<BHH", heard_by_none, 9) == (12, 5180, 0x0140)  # 5 GHz, OFDM


def test_management_bodies_have_the_real_fixed_fields_and_elements():
    rsn = rsn_ie()
    beacon = management_body(BEACON, from_ap=True, ssid=b"home", channel=11, rsn=rsn, tsf_us=7)
    assert struct.unpack_from("<QHH", beacon) == (7, 100, 0x0011)  # ESS, privacy
    assert beacon[12:18] == b"\x00\x04home" and beacon[18:20] == b"\x01\x08"
    assert beacon[28:31] == b"\x03\x01\x0b" and beacon[31:] == rsn
    open_beacon = management_body(BEACON, from_ap=True, ssid=b"cafe", channel=1)
    assert struct.unpack_from("<H", open_beacon, 10) == (0x0001,)
    assert management_body(AUTHENTICATION, from_ap=False) == bytes(2) + b"\x01\x00" + bytes(2)
    assert management_body(AUTHENTICATION, from_ap=True, status=1)[2:] == b"\x02\x00\x01\x00"
    response = management_body(ASSOC_RESPONSE, from_ap=True, rsn=rsn, aid=3)
    assert struct.unpack_from("<HHH", response) == (0x0011, 0, 0xC003)
    assert management_body(PROBE_REQUEST, from_ap=False)[:2] == b"\x00\x00"  # wildcard
    assert management_body(DEAUTHENTICATION, from_ap=False, status=15) == b"\x0f\x00"
    with pytest.raises(ValueError, match="subtype 13"):
        management_body(13, from_ap=True)


def test_llc_snap_carries_the_ethertype_and_an_802_3_frame_keeps_its_own():
    ethernet = bytes(12) + b"\x88\x8e" + b"eapol"
    assert llc(ethernet) == b"\xaa\xaa\x03\x00\x00\x00\x88\x8e" + b"eapol"
    ieee8023 = bytes(12) + b"\x00\x03" + b"\x42\x42\x03" + b"padding"
    assert llc(ieee8023) == b"\x42\x42\x03"


def test_the_air_numbers_frames_per_transmitter_and_packets_per_key():
    air = Air()
    a, b, bssid = b"\x02" * 6, b"\x04" * 6, b"\x06" * 6
    on_air = Signal(6, 54, -40)
    first = air.data(TO_DS, (bssid, a, b), b"x", on_air, Key(bytes(16)))
    second = air.data(TO_DS, (bssid, a, b), b"x", on_air, Key(bytes(16)))
    other = air.data(TO_DS, (bssid, b, a), b"x", on_air, Key(bytes(16)))
    header = 15  # radiotap
    sequence = [struct.unpack_from("<H", f, header + 22)[0] >> 4 for f in (first, second, other)]
    assert sequence == [0, 1, 0]
    pns = [f[header + 24] for f in (first, second, other)]
    assert pns == [1, 2, 1]
    assert air.tsf_us(bssid, 10.0) == 0 and air.tsf_us(bssid, 10.5) == 500_000
    assert (air.aid(bssid, a), air.aid(bssid, b), air.aid(bssid, a)) == (1, 2, 1)
    group = air.data(FROM_DS, (b"\xff" * 6, bssid, a), b"x", on_air, Key(bytes(16), 1))
    assert group[header + 27] == 0x20 | 1 << 6  # ExtIV, key ID 1


# --- a WiFi medium's capture ---------------------------------------------------------


@pytest.fixture
def home() -> Iterator[Home]:
    with tempfile.TemporaryDirectory(prefix="cq-", dir="/tmp") as short:
        yield from _setup(Home(Path(short)))


def ping_frame(dst: str, src: str, payload: bytes) -> bytes:
    """An Ethernet frame with an ICMP echo request (checksums left zero: nobody checks)."""
    icmp = b"\x08\x00\x00\x00\x12\x34\x00\x01" + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(icmp),
        0,
        0,
        64,
        1,
        0,
        bytes([10, 0, 0, 2]),
        bytes([10, 0, 0, 1]),
    )
    mac = bytes.fromhex
    return mac(dst.replace(":", "")) + mac(src.replace(":", "")) + b"\x08\x00" + ip + icmp


@pytest.fixture
def capture(home: Home, tmp_path: Path) -> Path:
    """The air of a WPA2 association and one ping each way, as the medium captured it."""
    path = tmp_path / "air.pcap"
    home.call(CaptureStart(path=str(path)))
    home.run(0.3)
    join(home)
    home.run(1.0)
    assert home.status("sta")["wpa_state"] == "COMPLETED"
    for node, dst, src in (("sta", AP_MAC, STA_MAC), ("ap", STA_MAC, AP_MAC)):
        home.nodes[node].send(ping_frame(dst, src, b"cirque-ping-payload"))
        home.medium._on_readable(home.fds[node])
        home.run(0.05)
    assert home.call(CaptureStop()).frames > 10
    assert home.medium.drops["capture failed"] == 0
    return path


def dot11_frames(path: Path) -> list[bytes]:
    """The 802.11 frames of a capture, radiotap and FCS taken off."""
    assert struct.unpack_from("=I", path.read_bytes(), 20)[0] == LINKTYPE_IEEE802_11_RADIOTAP
    frames = []
    for _when, record in read_pcap(path):
        (length,) = struct.unpack_from("<H", record, 2)
        assert fcs(record[length:-4]) == record[-4:]
        frames.append(record[length:-4])
    return frames


def test_the_capture_is_802_11_with_the_handshake_in_the_clear_and_data_protected(
    home: Home, capture: Path
):
    frames = dot11_frames(capture)
    kinds = [(f[0] >> 2 & 3, f[0] >> 4) for f in frames]
    for subtype in (BEACON, PROBE_REQUEST, AUTHENTICATION, ASSOC_RESPONSE):
        assert (0, subtype) in kinds
    data = [f for f in frames if f[0] >> 2 & 3 == 2]
    eapol = [f for f in data if f[24:32] == b"\xaa\xaa\x03\x00\x00\x00\x88\x8e"]
    assert [f[1] & 3 for f in eapol] == [FROM_DS, TO_DS, FROM_DS, TO_DS]  # messages 1..4
    protected = [f for f in data if f[1] & PROTECTED]
    assert [f[1] & 3 for f in protected] == [TO_DS, FROM_DS]
    # The station's frame opens with the station's own TK: the real key, on the air.
    tk = home.medium.stations["sta"].supplicant.ptk.tk  # type: ignore[union-attr]
    uplink = protected[0]
    aad = bytes([uplink[0] & 0x8F, uplink[1] & 0xC7]) + uplink[4:22] + bytes(2)
    nonce = b"\0" + uplink[10:16] + uplink[31:27:-1] + uplink[25:23:-1]
    plain = AESCCM(tk, tag_length=8).decrypt(nonce, uplink[32:], aad)
    assert plain.startswith(b"\xaa\xaa\x03\x00\x00\x00\x08\x00")
    assert plain.endswith(b"cirque-ping-payload")


def test_tcpdump_decodes_the_capture_as_802_11(capture: Path):
    tcpdump = host_tool("tcpdump")
    result = subprocess.run(
        [tcpdump, "-n", "-r", str(capture), "-y", "IEEE802_11_RADIO"],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert f"Beacon ({SSID})" in lines[0] and "2437 MHz" in lines[0] and "dBm signal" in lines[0]
    for wanted in (
        "Probe Request",
        "Probe Response",
        "Authentication",
        "Assoc Request",
        "Assoc Response",
    ):
        assert any(wanted in line for line in lines), wanted
    assert len([line for line in lines if "EAPOL key" in line]) == 4


def test_tshark_decrypts_the_data_with_the_ssid_and_passphrase(capture: Path):
    tshark = host_tool("tshark")
    key = f'uat:80211_keys:"wpa-pwd","{PSK}:{SSID}"'
    decrypted = subprocess.run(
        [
            tshark,
            "-r",
            str(capture),
            "-o",
            "wlan.enable_decryption:TRUE",
            "-o",
            key,
            "-Y",
            "icmp",
            "-T",
            "fields",
            "-e",
            "icmp.type",
            "-e",
            "data.data",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    payload = b"cirque-ping-payload".hex()
    assert decrypted[:2] == [f"8\t{payload}"] * 2
    handshake = subprocess.run(
        [
            tshark,
            "-r",
            str(capture),
            "-Y",
            "eapol",
            "-T",
            "fields",
            "-e",
            "wlan_rsna_eapol.keydes.msgnr",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert handshake == ["1", "2", "3", "4"]
    fcs_checked = subprocess.run(
        [
            tshark,
            "-r",
            str(capture),
            "-o",
            "wlan.check_checksum:TRUE",
            "-T",
            "fields",
            "-e",
            "wlan.fcs.status",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert set(fcs_checked) == {"1"}  # every FCS good
