"""pcap files: the classic format with Ethernet link type (or the medium's own), readable
back and by tcpdump, and cut at whole records when read while being written."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from pytest_cirque.radios.relay.pcap import (
    LINKTYPE_ETHERNET,
    MAGIC,
    PcapStream,
    PcapWriter,
    complete_records,
    read_pcap,
)

BROADCAST_ARP = bytes.fromhex(
    "ffffffffffff"
    "020000000001"
    "0806"  # Ethernet: broadcast, from 02:..:01, ARP
    "0001080006040001"
    "020000000001"
    "0a090001"
    "000000000000"
    "0a090002"
)


def test_file_header_says_pcap_2_4_ethernet(tmp_path: Path) -> None:
    path = tmp_path / "a.pcap"
    with PcapWriter(path, snaplen=2048):
        pass
    magic, major, minor, zone, sigfigs, snaplen, linktype = struct.unpack(
        "=IHHiIII", path.read_bytes()
    )
    assert (magic, major, minor, zone, sigfigs) == (MAGIC, 2, 4, 0, 0)
    assert (snaplen, linktype) == (2048, LINKTYPE_ETHERNET)


def test_frames_and_timestamps_read_back(tmp_path: Path) -> None:
    path = tmp_path / "b.pcap"
    with PcapWriter(path) as writer:
        writer.write(BROADCAST_ARP, timestamp=1700000000.25)
        writer.write(b"\x00" * 60, timestamp=1700000001.999999)
        assert writer.frames == 2
    records = list(read_pcap(path))
    assert [frame for _, frame in records] == [BROADCAST_ARP, b"\x00" * 60]
    assert records[0][0] == pytest.approx(1700000000.25)
    assert records[1][0] == pytest.approx(1700000001.999999)


def test_each_frame_is_on_disk_before_close(tmp_path: Path) -> None:
    path = tmp_path / "c.pcap"
    writer = PcapWriter(path)
    writer.write(BROADCAST_ARP)
    assert [frame for _, frame in read_pcap(path)] == [BROADCAST_ARP]
    writer.close()


def test_snaplen_truncates_but_keeps_the_original_length(tmp_path: Path) -> None:
    path = tmp_path / "d.pcap"
    with PcapWriter(path, snaplen=20) as writer:
        writer.write(bytes(100), timestamp=1.0)
    data = path.read_bytes()[24:]
    _, _, captured, original = struct.unpack("=IIII", data[:16])
    assert (captured, original) == (20, 100)


def test_not_a_pcap_file(tmp_path: Path) -> None:
    path = tmp_path / "e.pcap"
    path.write_bytes(b"hello, this is text and no capture")
    with pytest.raises(ValueError, match="not a pcap file"):
        list(read_pcap(path))


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
def test_tcpdump_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "f.pcap"
    with PcapWriter(path) as writer:
        writer.write(BROADCAST_ARP, timestamp=1700000000.0)
    result = subprocess.run(
        ["tcpdump", "-n", "-r", str(path)], capture_output=True, text=True, check=True
    )
    assert "ARP, Request who-has 10.9.0.2 tell 10.9.0.1" in result.stdout


def test_the_link_type_is_the_writers(tmp_path: Path) -> None:
    path = tmp_path / "g.pcap"
    with PcapWriter(path, linktype=127):
        pass
    assert struct.unpack_from("=I", path.read_bytes(), 20) == (127,)


def written(tmp_path: Path, frames: list[bytes]) -> bytes:
    path = tmp_path / "stream.pcap"
    with PcapWriter(path) as writer:
        for index, frame in enumerate(frames):
            writer.write(frame, timestamp=1700000000.0 + index)
    return path.read_bytes()


def test_a_stream_is_cut_at_whole_records_whatever_the_chunks(tmp_path: Path) -> None:
    data = written(tmp_path, [BROADCAST_ARP, b"\x01" * 300, b""])
    for size in (1, 7, 16, 23, 24, 25, 100, len(data)):
        stream, out, cuts = PcapStream(), bytearray(), []
        for at in range(0, len(data), size):
            whole = stream.feed(data[at : at + size])
            out += whole
            cuts.append(len(out))
        assert bytes(out) == data and stream.records == 3
        ends = {24, 24 + 16 + len(BROADCAST_ARP), len(data) - 16, len(data)}
        assert set(cuts) <= ends | {0}, size  # never inside a header or a record


def test_a_copy_taken_while_writing_loses_only_its_last_half_record(tmp_path: Path) -> None:
    data = written(tmp_path, [BROADCAST_ARP, b"\x01" * 300])
    first = 24 + 16 + len(BROADCAST_ARP)
    assert complete_records(data) == data
    assert complete_records(data[:-1]) == data[:first]
    assert complete_records(data[: first + 10]) == data[:first]
    assert complete_records(data[:20]) == b""
    big_endian = struct.pack(">IHHiIII", MAGIC, 2, 4, 0, 0, 65535, 1)
    record = struct.pack(">IIII", 1, 0, 3, 3) + b"abc"
    assert complete_records(big_endian + record + record[:5]) == big_endian + record
    with pytest.raises(ValueError, match="not a pcap file"):
        complete_records(b"tail: cannot open 'x' for reading\n")
