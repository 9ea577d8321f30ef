"""Packet capture files in the classic pcap format, which tcpdump and Wireshark read.

A medium relays Ethernet frames (its endpoints are TAP devices), so captures default to
link type Ethernet; a WiFi medium writes 802.11 with radiotap (``dot11``), a Thread
medium 802.15.4. Microsecond timestamps, host byte order marked by the magic number.

A capture is read while it is written (copied out, or followed live): ``PcapStream``
cuts such bytes at the end of the last whole record, so a reader never sees half a frame.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

MAGIC = 0xA1B2C3D4
VERSION = (2, 4)
LINKTYPE_ETHERNET = 1
DEFAULT_SNAPLEN = 65535

_FILE_HEADER = struct.Struct("=IHHiIII")
_RECORD_HEADER = struct.Struct("=IIII")


class PcapWriter:
    """Appends frames to a pcap file; each record is flushed so a reader sees it at once."""

    def __init__(
        self,
        path: str | Path,
        linktype: int = LINKTYPE_ETHERNET,
        snaplen: int = DEFAULT_SNAPLEN,
    ) -> None:
        self.path = Path(path)
        self.snaplen = snaplen
        self.frames = 0
        self._file: BinaryIO = open(self.path, "wb")  # noqa: SIM115 (closed by close())
        self._file.write(_FILE_HEADER.pack(MAGIC, *VERSION, 0, 0, snaplen, linktype))
        self._file.flush()

    def write(self, frame: bytes, timestamp: float | None = None) -> None:
        when = time.time() if timestamp is None else timestamp
        seconds = int(when)
        micros = min(round((when - seconds) * 1e6), 999_999)
        data = frame[: self.snaplen]
        self._file.write(_RECORD_HEADER.pack(seconds, micros, len(data), len(frame)) + data)
        self._file.flush()
        self.frames += 1

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def read_pcap(path: str | Path) -> Iterator[tuple[float, bytes]]:
    """(timestamp, frame) for each record of a pcap file in either byte order."""
    with open(path, "rb") as file:
        header = file.read(_FILE_HEADER.size)
        if len(header) < _FILE_HEADER.size:
            raise ValueError(f"{path}: not a pcap file (shorter than its header)")
        try:
            order = _byte_order(header[:4])
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        record = struct.Struct(order + "IIII")
        while chunk := file.read(record.size):
            seconds, micros, captured, _original = record.unpack(chunk)
            yield seconds + micros / 1e6, file.read(captured)


class PcapStream:
    """Cuts a pcap byte stream (the file header, then records) at record boundaries:
    ``feed`` returns everything up to the end of the last whole record and keeps the
    rest for the next call."""

    def __init__(self) -> None:
        self._pending = bytearray()
        self._record: struct.Struct | None = None
        self.records = 0

    def feed(self, data: bytes) -> bytes:
        self._pending += data
        end = 0
        if self._record is None:
            if len(self._pending) < _FILE_HEADER.size:
                return b""
            self._record = struct.Struct(_byte_order(bytes(self._pending[:4])) + "IIII")
            end = _FILE_HEADER.size
        size = self._record.size
        while end + size <= len(self._pending):
            _seconds, _micros, captured, _original = self._record.unpack_from(self._pending, end)
            if end + size + captured > len(self._pending):
                break
            end += size + captured
            self.records += 1
        whole = bytes(self._pending[:end])
        del self._pending[:end]
        return whole


def complete_records(data: bytes) -> bytes:
    """A capture copied while it was being written, without a last record cut short."""
    return PcapStream().feed(data)


def _byte_order(magic: bytes) -> str:
    """The struct byte order a pcap file's magic number says, or ValueError."""
    for order in "<>":
        if struct.unpack(order + "I", magic)[0] == MAGIC:
            return order
    raise ValueError(f"not a pcap file (magic {magic.hex()})")
