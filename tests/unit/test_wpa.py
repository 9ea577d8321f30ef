"""WPA2-PSK 4-way handshake: standard test vectors, a captured handshake, both roles."""

from __future__ import annotations

import contextlib
import random
import struct
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap, aes_key_wrap

from pytest_cirque.core.errors import SpecError
from pytest_cirque.radios.relay.wpa import (
    EAPOL_ETHERTYPE,
    MSG1_INFO,
    MSG2_INFO,
    MSG3_INFO,
    MSG4_INFO,
    Authenticator,
    EapolKey,
    HandshakeError,
    Supplicant,
    derive_ptk,
    key_mic,
    passphrase_error,
    pmk,
    prf,
    rsn_ie,
    ssid_error,
)

AA = bytes.fromhex("020000000001")
SPA = bytes.fromhex("020000000102")
GTK = bytes(range(16, 32))
PASSPHRASE = "correct horse battery"
SSID = b"cirque-home"


@pytest.fixture(scope="module")
def home_pmk() -> bytes:
    return pmk(PASSPHRASE, SSID)


def handshake(ap_pmk: bytes, sta_pmk: bytes) -> tuple[Authenticator, Supplicant]:
    return Authenticator(ap_pmk, AA, SPA, GTK), Supplicant(sta_pmk, AA, SPA)


def resign(payload: bytes, kck: bytes, **changes: object) -> bytes:
    """The frame with fields changed and a valid MIC again, as only a holder of the KCK can."""
    frame = replace(EapolKey.decode(payload), mic=bytes(16), **changes)  # type: ignore[arg-type]
    encoded = frame.encode()
    return encoded[:81] + key_mic(kck, encoded) + encoded[97:]


# --- keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("passphrase", "ssid", "expected"),
    [
        # IEEE 802.11-2016 Annex J.4.2
        ("password", b"IEEE", "f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e"),
        (
            "ThisIsAPassword",
            b"ThisIsASSID",
            "0dc0d6eb90555ed6419756b9a15ec3e3209b63df707dd508d14581f8982721af",
        ),
    ],
)
def test_pmk_matches_annex_j4(passphrase: str, ssid: bytes, expected: str) -> None:
    assert pmk(passphrase, ssid).hex() == expected


def test_pmk_of_64_hex_digits_is_the_psk_itself() -> None:
    psk = "f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710A12E"
    assert pmk(psk, b"any") == bytes.fromhex(psk)


def test_pmk_refuses_a_bad_passphrase_or_ssid_with_the_reason() -> None:
    with pytest.raises(SpecError, match="passphrase must be 8 to 63 characters, got 5"):
        pmk("short", SSID)
    with pytest.raises(SpecError, match="must be 1 to 32 bytes, got 33"):
        pmk(PASSPHRASE, b"x" * 33)


@pytest.mark.parametrize(
    ("key", "data", "expected"),
    [
        # IEEE 802.11-2016 Annex J.3.2, PRF test vectors (label "prefix", 512 bits)
        (
            b"\x0b" * 20,
            b"Hi There",
            "bcd4c650b30b9684951829e0d75f9d54b862175ed9f00606e17d8da35402ffee"
            "75df78c3d31e0f889f012120c0862beb67753e7439ae242edb8373698356cf5a",
        ),
        (
            b"Jefe",
            b"what do ya want for nothing?",
            "51f4de5b33f249adf81aeb713a3c20f4fe631446fabdfa58244759ae58ef9009"
            "a99abf4eac2ca5fa87e692c440eb40023e7babb206d61de7b92f41529092b8fc",
        ),
        (
            b"\xaa" * 20,
            b"\xdd" * 50,
            "e1ac546ec4cb636f9976487be5c86be17a0252ca5d8d8df12cfb0473525249ce"
            "9dd8d177ead710bc9b590547239107aef7b4abd43d87f0a68f1cbd9e2b6f7607",
        ),
    ],
)
def test_prf_matches_annex_j3(key: bytes, data: bytes, expected: str) -> None:
    assert prf(key, b"prefix", data, 512).hex() == expected
    # Shorter outputs (PRF-384 for the PTK) are prefixes of the longer ones.
    assert prf(key, b"prefix", data, 384).hex() == expected[:96]
    assert prf(key, b"prefix", data, 192).hex() == expected[:48]


def test_prf_refuses_a_length_that_is_not_whole_bytes() -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        prf(b"k", b"l", b"d", 100)


def test_aes_key_wrap_matches_rfc3394_section_4_1() -> None:
    kek = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
    key = bytes.fromhex("00112233445566778899aabbccddeeff")
    wrapped = bytes.fromhex("1fa68b0a8112b447aef34bd8fb5a7b829d3e862371d2cfe5")
    assert aes_key_wrap(kek, key) == wrapped
    assert aes_key_unwrap(kek, wrapped) == key


def test_ptk_is_the_same_whichever_side_derives_it() -> None:
    anonce, snonce = bytes([1]) * 32, bytes([2]) * 32
    key = bytes(32)
    one = derive_ptk(key, AA, SPA, anonce, snonce)
    assert one == derive_ptk(key, SPA, AA, snonce, anonce)
    assert len(one.kck) == len(one.kek) == len(one.tk) == 16
    assert len({one.kck, one.kek, one.tk}) == 3
    assert one.kck.hex() not in repr(one)


def test_rsn_ie_is_wpa2_psk_with_ccmp() -> None:
    assert rsn_ie().hex() == "30140100000fac040100000fac040100000fac020000"


@pytest.mark.parametrize(
    ("passphrase", "reason"),
    [
        ("a" * 7, "must be 8 to 63 characters, got 7"),
        ("a" * 8, None),
        ("a" * 63, None),
        ("0123456789abcdefABCDEF" * 2 + "0" * 20, None),
        ("g" * 64, "64 characters must all be hex digits"),
        ("a" * 65, "must be 8 to 63 characters, got 65"),
        ("", "must be 8 to 63 characters, got 0"),
        ("tab\there!", "must be printable ASCII, character 4 is '\\t'"),
        ("caf\u00e9 au lait", "must be printable ASCII, character 4 is 'é'"),
        (" spaces and ~ are fine ", None),
    ],
)
def test_passphrase_error(passphrase: str, reason: str | None) -> None:
    error = passphrase_error(passphrase)
    if reason is None:
        assert error is None
    else:
        assert error is not None and error.startswith(reason)


@pytest.mark.parametrize(
    ("ssid", "reason"),
    [
        (b"", "must be 1 to 32 bytes, got 0"),
        (b"x", None),
        (b"x" * 32, None),
        (b"x" * 33, "must be 1 to 32 bytes, got 33"),
        ("\u00e9".encode() * 16, None),  # 16 characters, 32 bytes
        ("\u00e9".encode() * 17, "must be 1 to 32 bytes, got 34"),
    ],
)
def test_ssid_error(ssid: bytes, reason: str | None) -> None:
    assert ssid_error(ssid) == reason


# --- frames -----------------------------------------------------------------------------


def test_eapol_key_encodes_the_standard_layout_and_decodes_back() -> None:
    frame = EapolKey(
        key_info=MSG1_INFO, key_length=16, replay_counter=7, nonce=bytes(range(32))
    )
    data = frame.encode()
    assert EAPOL_ETHERTYPE == 0x888E
    assert len(data) == 99
    # EAPOL version 2, type 3 (Key), body length 95, descriptor 2 (RSN), key info 0x008a.
    assert data[:7].hex() == "0203005f02008a"
    assert struct.unpack(">HQ", data[7:17]) == (16, 7)
    assert data[17:49] == bytes(range(32))
    assert EapolKey.decode(data) == frame
    with_data = replace(frame, key_data=b"\x30\x02\x01\x00")
    assert EapolKey.decode(with_data.encode()) == with_data


@pytest.mark.parametrize(
    ("key_info", "number"),
    [(MSG1_INFO, 1), (MSG2_INFO, 2), (MSG3_INFO, 3), (MSG4_INFO, 4)],
)
def test_message_number_from_key_information(key_info: int, number: int) -> None:
    frame = EapolKey(key_info=key_info, key_length=0, replay_counter=1, nonce=bytes(32))
    assert frame.message_number() == number
    assert EapolKey.decode(frame.encode()).message_number() == number


@pytest.mark.parametrize(
    "key_info",
    [
        MSG1_INFO & ~0x0008,  # group key message
        MSG2_INFO | 0x0800,  # request
        MSG2_INFO | 0x0400,  # error
        0x0002 | 0x0008,  # neither ack nor MIC
    ],
)
def test_message_number_refuses_what_is_no_handshake_message(key_info: int) -> None:
    frame = EapolKey(key_info=key_info, key_length=0, replay_counter=1, nonce=bytes(32))
    with pytest.raises(HandshakeError):
        frame.message_number()


# --- the handshake ----------------------------------------------------------------------


def test_full_handshake_completes_with_the_same_keys_on_both_sides(home_pmk: bytes) -> None:
    ap, sta = handshake(home_pmk, pmk(PASSPHRASE, SSID))
    msg1 = ap.message1()
    msg2 = sta.receive(msg1)
    assert msg2 is not None
    msg3 = ap.receive(msg2)
    assert msg3 is not None
    msg4 = sta.receive(msg3)
    assert msg4 is not None and sta.complete
    assert ap.receive(msg4) is None
    assert ap.complete
    assert ap.ptk is not None and ap.ptk == sta.ptk
    assert sta.gtk == GTK
    assert [EapolKey.decode(m).message_number() for m in (msg1, msg2, msg3, msg4)] == [1, 2, 3, 4]
    third = EapolKey.decode(msg3)
    assert third.key_info == MSG3_INFO and third.replay_counter == 2
    # Key data is wrapped (RSN IE + GTK KDE = 46 bytes, padded to 48, plus 8).
    assert len(third.key_data) == 56 and GTK not in msg3
    assert EapolKey.decode(msg4).replay_counter == 2
    assert ap.mic_failures == 0


def test_wrong_passphrase_fails_at_message_2_and_message_3_is_never_sent(
    home_pmk: bytes,
) -> None:
    ap, sta = handshake(home_pmk, pmk("not the passphrase", SSID))
    msg2 = sta.receive(ap.message1())
    assert msg2 is not None
    with pytest.raises(HandshakeError, match="message 2 MIC is wrong"):
        ap.receive(msg2)
    assert ap.mic_failures == 1
    assert ap.ptk is None and not ap.complete and not sta.complete
    # The AP can only go on offering message 1; the station's answers keep failing.
    again = ap.retransmit()
    assert again is not None and EapolKey.decode(again).message_number() == 1
    msg2 = sta.receive(again)
    assert msg2 is not None
    with pytest.raises(HandshakeError):
        ap.receive(msg2)
    assert ap.mic_failures == 2
    with pytest.raises(HandshakeError, match="message 3 cannot be sent"):
        ap.message3()


def test_tampered_message_2_is_refused_as_a_bad_mic(home_pmk: bytes) -> None:
    ap, sta = handshake(home_pmk, home_pmk)
    msg2 = bytearray(sta.receive(ap.message1()) or b"")
    msg2[20] ^= 0x01  # a bit of the SNonce
    with pytest.raises(HandshakeError, match="MIC"):
        ap.receive(bytes(msg2))
    assert ap.mic_failures == 1


def test_message_2_from_another_security_setup_is_refused(home_pmk: bytes) -> None:
    ap, sta = handshake(home_pmk, home_pmk)
    msg2 = sta.receive(ap.message1()) or b""
    assert sta.ptk is None
    tkip_pairwise = bytes.fromhex("30140100000fac040100000fac020100000fac020000")
    kck = derive_ptk(home_pmk, AA, SPA, ap.anonce, sta.snonce).kck
    other = resign(msg2, kck, key_data=tkip_pairwise)
    with pytest.raises(HandshakeError, match="RSN element"):
        ap.receive(other)
    assert ap.ptk is None and ap.mic_failures == 0
    assert ap.receive(msg2) is not None


def test_retransmitted_message_1_takes_a_new_replay_counter(home_pmk: bytes) -> None:
    ap, sta = handshake(home_pmk, home_pmk)
    first = ap.message1()
    second = ap.retransmit()
    assert second is not None
    assert [EapolKey.decode(m).replay_counter for m in (first, second)] == [1, 2]
    assert EapolKey.decode(first).nonce == EapolKey.decode(second).nonce
    # The station answers both; the AP takes the first answer, ignores the late one.
    answer1, answer2 = sta.receive(first), sta.receive(second)
    assert answer1 is not None and answer2 is not None
    msg3 = ap.receive(answer1)
    assert msg3 is not None and EapolKey.decode(msg3).replay_counter == 3
    with pytest.raises(HandshakeError, match="expects message 4"):
        ap.receive(answer2)
    msg4 = sta.receive(msg3)
    assert msg4 is not None
    ap.receive(msg4)
    assert ap.complete and sta.complete and ap.ptk == sta.ptk


def test_lost_message_4_is_recovered_by_retransmitting_message_3(home_pmk: bytes) -> None:
    ap, sta = handshake(home_pmk, home_pmk)
    msg3 = ap.receive(sta.receive(ap.message1()) or b"")
    assert msg3 is not None
    lost = sta.receive(msg3)
    assert lost is not None and sta.complete
    keys = (sta.ptk, sta.gtk)
    again = ap.retransmit()
    assert again is not None and EapolKey.decode(again).replay_counter == 3
    msg4 = sta.receive(again)
    assert msg4 is not None and (sta.ptk, sta.gtk) == keys
    # The message 4 that was lost (counter 2) would also have been accepted.
    assert EapolKey.decode(lost).replay_counter == 2
    ap.receive(msg4)
    assert ap.complete and ap.retransmit() is None
    with pytest.raises(HandshakeError, match="already complete"):
        ap.receive(msg4)


def test_message_4_with_a_bad_mic_or_unknown_counter_is_refused(home_pmk: bytes) -> None:
    ap, sta = handshake(home_pmk, home_pmk)
    msg4 = sta.receive(ap.receive(sta.receive(ap.message1()) or b"") or b"") or b""
    assert ap.ptk is not None
    flipped = bytearray(msg4)
    flipped[90] ^= 0x80
    with pytest.raises(HandshakeError, match="message 4 MIC"):
        ap.receive(bytes(flipped))
    with pytest.raises(HandshakeError, match="answers no message 3"):
        ap.receive(resign(msg4, ap.ptk.kck, replay_counter=1))
    assert not ap.complete and ap.mic_failures == 1
    ap.receive(msg4)
    assert ap.complete


class TestTamperedMessage3:
    """The station refuses a message 3 that is forged, stale or from another exchange."""

    @pytest.fixture
    def exchange(self, home_pmk: bytes) -> tuple[Authenticator, Supplicant, bytes]:
        ap, sta = handshake(home_pmk, home_pmk)
        msg3 = ap.receive(sta.receive(ap.message1()) or b"")
        assert msg3 is not None and ap.ptk is not None
        return ap, sta, msg3

    def refused(self, sta: Supplicant, payload: bytes, reason: str) -> None:
        with pytest.raises(HandshakeError, match=reason):
            sta.receive(payload)
        assert not sta.complete and sta.gtk is None and sta.ptk is None

    def test_flipped_mic_byte(self, exchange: tuple[Authenticator, Supplicant, bytes]) -> None:
        _ap, sta, msg3 = exchange
        forged = bytearray(msg3)
        forged[81] ^= 0x01
        self.refused(sta, bytes(forged), "message 3 MIC is wrong")
        assert sta.receive(msg3) is not None and sta.gtk == GTK

    def test_flipped_key_data_byte(
        self, exchange: tuple[Authenticator, Supplicant, bytes]
    ) -> None:
        _ap, sta, msg3 = exchange
        forged = bytearray(msg3)
        forged[-1] ^= 0x01
        self.refused(sta, bytes(forged), "MIC is wrong")

    def test_other_anonce(self, exchange: tuple[Authenticator, Supplicant, bytes]) -> None:
        ap, sta, msg3 = exchange
        assert ap.ptk is not None
        forged = resign(msg3, ap.ptk.kck, nonce=bytes(32))
        self.refused(sta, forged, "ANonce differs")
        assert sta.receive(msg3) is not None

    def test_old_replay_counter(self, exchange: tuple[Authenticator, Supplicant, bytes]) -> None:
        ap, sta, msg3 = exchange
        assert ap.ptk is not None
        forged = resign(msg3, ap.ptk.kck, replay_counter=1)  # the counter of message 1
        self.refused(sta, forged, "replay counter 1 is not above")
        assert sta.receive(msg3) is not None

    def test_replayed_after_completion(
        self, exchange: tuple[Authenticator, Supplicant, bytes]
    ) -> None:
        _ap, sta, msg3 = exchange
        assert sta.receive(msg3) is not None
        with pytest.raises(HandshakeError, match="already used"):
            sta.receive(msg3)
        assert sta.complete

    def test_key_data_that_does_not_unwrap(
        self, exchange: tuple[Authenticator, Supplicant, bytes]
    ) -> None:
        ap, sta, msg3 = exchange
        assert ap.ptk is not None
        forged = resign(msg3, ap.ptk.kck, key_data=bytes(56))
        self.refused(sta, forged, "does not unwrap")

    def test_key_data_without_a_group_key(
        self, exchange: tuple[Authenticator, Supplicant, bytes]
    ) -> None:
        ap, sta, msg3 = exchange
        assert ap.ptk is not None
        wrapped = aes_key_wrap(ap.ptk.kek, rsn_ie() + b"\xdd" + bytes(1))
        self.refused(sta, resign(msg3, ap.ptk.kck, key_data=wrapped), "no CCMP group key")

    def test_message_3_before_message_1(self, home_pmk: bytes) -> None:
        ap, sta = handshake(home_pmk, home_pmk)
        other = Supplicant(home_pmk, AA, SPA)
        msg3 = ap.receive(other.receive(ap.message1()) or b"")
        self.refused(sta, msg3 or b"", "before any message 1")


def test_each_role_refuses_the_other_roles_messages(home_pmk: bytes) -> None:
    ap, sta = handshake(home_pmk, home_pmk)
    stray = Supplicant(home_pmk, AA, SPA).receive(Authenticator(home_pmk, AA, SPA, GTK).message1())
    with pytest.raises(HandshakeError, match="before sending message 1"):
        ap.receive(stray or b"")
    msg1 = ap.message1()
    with pytest.raises(HandshakeError, match="expects message 2"):
        ap.receive(msg1)
    msg2 = sta.receive(msg1) or b""
    with pytest.raises(HandshakeError, match="expects message 1 or 3"):
        sta.receive(msg2)
    msg3 = ap.receive(msg2) or b""
    with pytest.raises(HandshakeError, match="expects message 4"):
        ap.receive(msg3)
    msg4 = sta.receive(msg3) or b""
    with pytest.raises(HandshakeError, match="expects message 1 or 3"):
        sta.receive(msg4)
    with pytest.raises(HandshakeError, match="message 2 was already accepted"):
        ap.message1()


# --- malformed frames -------------------------------------------------------------------


def all_four(home_pmk: bytes) -> list[bytes]:
    ap, sta = handshake(home_pmk, home_pmk)
    msg1 = ap.message1()
    msg2 = sta.receive(msg1) or b""
    msg3 = ap.receive(msg2) or b""
    msg4 = sta.receive(msg3) or b""
    return [msg1, msg2, msg3, msg4]


def fresh_roles(home_pmk: bytes) -> tuple[Authenticator, Supplicant]:
    ap, sta = handshake(home_pmk, home_pmk)
    sta.receive(ap.message1())
    return ap, sta


def test_every_truncation_raises_handshake_error(home_pmk: bytes) -> None:
    ap, sta = fresh_roles(home_pmk)
    for message in all_four(home_pmk):
        for cut in range(len(message)):
            with pytest.raises(HandshakeError):
                EapolKey.decode(message[:cut])
            with pytest.raises(HandshakeError):
                ap.receive(message[:cut])
            with pytest.raises(HandshakeError):
                sta.receive(message[:cut])
    assert not ap.complete and not sta.complete


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (bytes.fromhex("01010000"), r"type 1 \(EAPOL-Start\) is not EAPOL-Key"),
        (bytes.fromhex("0100000501"), r"type 0 \(EAP-Packet\)"),
        (bytes.fromhex("0903005f") + bytes(95), "unknown EAPOL protocol version 9"),
        (bytes.fromhex("0203005ffe008a") + bytes(92), "descriptor type 254 is not RSN"),
        (bytes.fromhex("0203005f020089") + bytes(92), "descriptor version 1 is not 2"),
        (bytes.fromhex("0203005f02008a") + bytes(90) + b"\x00\x01", "runs past"),
        (bytes.fromhex("02030010") + bytes(16), "shorter than a key descriptor"),
        (b"", "shorter than its header"),
    ],
)
def test_malformed_frames_say_what_is_wrong(payload: bytes, reason: str) -> None:
    with pytest.raises(HandshakeError, match=reason):
        EapolKey.decode(payload)


def test_random_corruption_only_ever_raises_handshake_error(home_pmk: bytes) -> None:
    rng = random.Random(1)
    messages = all_four(home_pmk)
    for _ in range(3000):
        data = bytearray(rng.choice(messages))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[: rng.randrange(len(data) + 1)] + rng.randbytes(rng.randint(0, 40))
        ap, sta = fresh_roles(home_pmk)
        for receive in (ap.receive, sta.receive, lambda d: EapolKey.decode(d).message_number()):
            with contextlib.suppress(HandshakeError):
                receive(bytes(data))


def test_trailing_bytes_after_the_eapol_body_are_ignored(home_pmk: bytes) -> None:
    ap, sta = handshake(home_pmk, home_pmk)
    msg2 = sta.receive(ap.message1() + bytes(20))
    assert msg2 is not None
    assert ap.receive(msg2 + b"padding") is not None


# --- a handshake captured from real implementations -------------------------------------

# A WPA2-PSK handshake between an AP and a station, as published with the unit tests of
# iwd (unit/test-eapol.c): passphrase "EasilyGuessedPassword", SSID "TestWPA", AP
# 24:a2:e1:ec:17:04, station a0:a8:cd:1c:7e:c9. The station speaks EAPOL version 1.
CAPTURED_AA = bytes.fromhex("24a2e1ec1704")
CAPTURED_SPA = bytes.fromhex("a0a8cd1c7ec9")
CAPTURED_PMK = "bf9aa3155300125e7a5ebb2a549f8cd4edab8ee12e94bfc24b3357ad049665d9"
ANONCE = "c2bb57ab588f92ebbd44e811094f601c087986030c3ac749cc61d63e33832e50"
SNONCE = "3289e91565094f329a9cd54a4a090d2cf4344683bf50efee3608b64856800e84"
IV_RSC_RESERVED = "00" * 32
# EAPOL header, descriptor type, key info, key length, replay counter | nonce | IV, RSC and
# reserved | MIC | key data length, key data.
CAPTURED = [
    "0203005f" "02" "008a" "0010" "0000000000000000"
    + ANONCE + IV_RSC_RESERVED + "00" * 16 + "0000",
    "01030075" "02" "010a" "0000" "0000000000000000"
    + SNONCE + IV_RSC_RESERVED + "01c31b82ff62a379b08dd1fc82c2f768"
    + "0016" "30140100000fac040100000fac040100000fac020000",
    "02030097" "02" "13ca" "0010" "0000000000000001"
    + ANONCE + IV_RSC_RESERVED + "f535d91809731a1d290894705e919c8e"
    + "0038" "1918df1ef0e7696652e257938034e17038b98b4c45a923b7b6fa8c33e37bdcd4"
    "7feab11c226a2c5e38d5ad799405d610a69551d60be60a5b",
    "0103005f" "02" "030a" "0000" "0000000000000001"
    + "00" * 32 + IV_RSC_RESERVED + "9e57a4c09bafb3375e46d386cf872753" + "0000",
]


def test_captured_handshake_verifies_with_our_keys() -> None:
    frames = [bytes.fromhex(text) for text in CAPTURED]
    assert pmk("EasilyGuessedPassword", b"TestWPA").hex() == CAPTURED_PMK
    msg1, msg2, msg3, msg4 = (EapolKey.decode(frame) for frame in frames)
    assert [m.message_number() for m in (msg1, msg2, msg3, msg4)] == [1, 2, 3, 4]
    ptk = derive_ptk(bytes.fromhex(CAPTURED_PMK), CAPTURED_AA, CAPTURED_SPA, msg1.nonce, msg2.nonce)
    for frame, decoded in zip(frames[1:], (msg2, msg3, msg4), strict=True):
        assert key_mic(ptk.kck, frame) == decoded.mic
    key_data = aes_key_unwrap(ptk.kek, msg3.key_data)
    assert key_data.startswith(rsn_ie())
    assert msg2.key_data == rsn_ie()


def test_our_station_answers_the_captured_ap_like_the_captured_station() -> None:
    frames = [bytes.fromhex(text) for text in CAPTURED]
    snonce = EapolKey.decode(frames[1]).nonce
    sta = Supplicant(bytes.fromhex(CAPTURED_PMK), CAPTURED_AA, CAPTURED_SPA, nonce=snonce)
    msg2 = sta.receive(frames[0])
    assert msg2 is not None
    msg4 = sta.receive(frames[2])
    assert msg4 is not None and sta.complete and sta.ptk is not None
    assert sta.gtk == bytes.fromhex("2e156e7c4e3df1370913edbd628e2565")
    # Ours speak EAPOL version 2; in version 1 they are the captured frames, byte for byte.
    for ours, theirs in ((msg2, frames[1]), (msg4, frames[3])):
        as_v1 = resign(ours, sta.ptk.kck, version=1)
        assert as_v1 == theirs
