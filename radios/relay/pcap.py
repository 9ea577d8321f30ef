"""Packet capture files in the classic pcap format, which tcpdump and Wireshark read.

A medium relays Ethernet frames (its endpoints are TAP devices), so captures use link
type Ethernet. Microsecond timestamps, host byte order marked by the magic number.
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
        (magic,) = struct.unpack("<I", header[:4])
        order = "<" if magic == MAGIC else ">"
        if struct.unpack(order + "I", header[:4])[0] != MAGIC:
            raise ValueError(f"{path}: not a pcap file (magic {header[:4].hex()})")
        record = struct.Struct(order + "IIII")
        while chunk := file.read(record.size):
            seconds, micros, captured, _original = record.unpack(chunk)
            yield seconds + micros / 1e6, file.read(captured)
