"""The Thread layer of the medium: IEEE 802.15.4 radios of OpenThread's simulation platform.

A Thread node runs ot-daemon over a simulated radio co-processor (ot-rcp). That radio
sends each 802.15.4 frame as one UDP datagram: a channel byte, then the PSDU with its FCS,
from port 9000+ID to the group 224.0.0.116 or ff02::116, port 9000, on the interface its
``-L`` option names. Here that interface is ``ot-radio0``, a TAP that carries nothing but
the radio, held by this medium as an endpoint.

Per frame the relay parses the datagram, spends the airtime of the frame's channel
(250 kbit/s each; a frame that would wait too long for it is dropped, see PHY_802154),
and delivers the very same Ethernet frame to every other radio on that channel that the
link model lets hear it (range, loss, cut links, latency). A radio's channel is the one
it last sent on; one that has not sent yet hears every channel, and its own radio keeps
only frames of the channel it listens on. Anything else the node's kernel sends on
``ot-radio0`` (neighbour discovery, MLD) stays off the air.

The capture holds the 802.15.4 frames themselves (pcap link type 195: PSDU with FCS).

Stdlib only, like the core.
"""

from __future__ import annotations

import heapq
import ipaddress
import os
import secrets
import shutil
import struct
from dataclasses import dataclass
from typing import Any

from pytest_cirque.core.errors import SpecError
from pytest_cirque.radios.relay.link_model import Decision
from pytest_cirque.radios.relay.medium import Endpoint, Handler, Medium
from pytest_cirque.radios.relay.pcap import PcapWriter
from pytest_cirque.radios.relay.protocol import (
    THREAD_MAX_NODES,
    CaptureStart,
    Done,
    GetThreadDataset,
    GetThreadNodeId,
    GetThreadStatus,
    Request,
    ThreadDataset,
    ThreadNodeId,
    ThreadRadio,
    ThreadStatus,
)

#: pcap link type of IEEE 802.15.4 frames with their FCS.
LINKTYPE_IEEE802_15_4_WITHFCS = 195
#: Where the simulated radios send: port, and the IPv4 and IPv6 groups.
RADIO_PORT = 9000
RADIO_GROUP4 = bytes(ipaddress.IPv4Address("224.0.0.116").packed)
RADIO_GROUP6 = bytes(ipaddress.IPv6Address("ff02::116").packed)
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
UDP = 17
#: 802.15.4 channels of the 2.4 GHz band, where Thread runs.
CHANNELS = range(11, 27)
#: The longest PSDU 802.15.4 allows (aMaxPhyPacketSize).
MAX_PSDU = 127
#: The OpenThread binaries the medium hands to its nodes (and cirque-rcp-tty, the serial
#: line of a node in RCP mode), and where its image has them.
BINARIES = ("ot-daemon", "ot-ctl", "ot-rcp", "cirque-rcp-tty")
BINARIES_SOURCE = "/usr/local/bin"


@dataclass(frozen=True)
class RadioFrame:
    """One datagram of a simulated radio: its channel and 802.15.4 frame (PSDU, FCS)."""

    channel: int
    psdu: bytes
    #: The sender's UDP port: 9000 + its node id.
    port: int


#: The frame type of an 802.15.4 acknowledgement (the low three bits of the first byte).
FRAME_TYPE_ACK = 2


def is_ack(psdu: bytes) -> bool:
    """Whether an 802.15.4 frame is an acknowledgement."""
    return bool(psdu) and psdu[0] & 0x07 == FRAME_TYPE_ACK


def radio_frame(frame: bytes) -> RadioFrame | None:
    """The radio datagram an Ethernet frame carries, or None for anything else."""
    if len(frame) < 14:
        return None
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    if ethertype == ETHERTYPE_IPV4:
        if len(frame) < 34 or frame[14] >> 4 != 4:
            return None
        header = (frame[14] & 0x0F) * 4
        if frame[23] != UDP or frame[30:34] != RADIO_GROUP4:
            return None
        udp = 14 + header
    elif ethertype == ETHERTYPE_IPV6:
        if len(frame) < 54 or frame[14] >> 4 != 6:
            return None
        if frame[20] != UDP or frame[38:54] != RADIO_GROUP6:
            return None
        udp = 54
    else:
        return None
    if len(frame) < udp + 8:
        return None
    source_port, destination_port, length = struct.unpack_from("!HHH", frame, udp)
    if destination_port != RADIO_PORT or length < 8 + 2:
        return None
    payload = frame[udp + 8 : udp + length]
    if len(payload) != length - 8 or len(payload) - 1 > MAX_PSDU:
        return None
    return RadioFrame(channel=payload[0], psdu=bytes(payload[1:]), port=source_port)


# --- the dataset -----------------------------------------------------------------------


def random_dataset() -> ThreadDataset:
    """A new network: random key, extended PAN ID, mesh-local prefix, PAN ID, channel."""
    prefix = bytearray(secrets.token_bytes(8))
    prefix[0] = 0xFD  # a unique local address prefix (fd00::/8)
    return ThreadDataset(
        network_name=f"cirque-{secrets.token_hex(2)}",
        channel=11 + secrets.randbelow(16),
        panid=secrets.randbelow(0xFFFF),  # 0xffff is the broadcast PAN ID
        extended_panid=secrets.token_hex(8),
        network_key=secrets.token_hex(16),
        mesh_local_prefix=prefix.hex(),
        pskc=secrets.token_hex(16),
    )


def dataset_problem(dataset: ThreadDataset) -> tuple[str, str] | None:
    """(field, what is wrong and what to give) for a dataset Thread refuses, else None."""
    if dataset.channel not in CHANNELS:
        return "channel", f"must be 11..26 (got {dataset.channel})"
    if not 0 <= dataset.panid < 0xFFFF:
        return "panid", f"must be a 16-bit PAN ID below 0xffff (got {dataset.panid!r})"
    name = dataset.network_name.encode()
    if not 1 <= len(name) <= 16:
        return "network_name", f"must be 1..16 bytes (got {dataset.network_name!r})"
    for field_name, size in (
        ("extended_panid", 8),
        ("network_key", 16),
        ("mesh_local_prefix", 8),
        ("pskc", 16),
    ):
        value = getattr(dataset, field_name)
        if not is_hex(value, size):
            return field_name, f"must be {size} bytes of hex, {2 * size} digits (got {value!r})"
    return None


def is_hex(value: object, size: int) -> bool:
    """Whether ``value`` is exactly ``size`` bytes written in hex (no 0x)."""
    if not isinstance(value, str) or len(value) != 2 * size:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True


def _tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind, len(value)]) + value


def dataset_tlvs(dataset: ThreadDataset) -> str:
    """The dataset as the TLVs ``ot-ctl dataset set active`` takes, in hex. Active
    timestamp 1; security policy and channel mask as ``dataset init new`` makes them."""
    problem = dataset_problem(dataset)
    if problem:
        raise SpecError(f"Thread dataset field {problem[0]!r}: {problem[1]}")
    tlvs = [
        _tlv(0x0E, struct.pack("!Q", 1 << 16)),  # active timestamp: 1 s, 0 ticks
        _tlv(0x00, struct.pack("!BH", 0, dataset.channel)),  # channel page 0
        _tlv(0x35, bytes.fromhex("0004001fffe0")),  # channel mask: page 0, 11..26
        _tlv(0x02, bytes.fromhex(dataset.extended_panid)),
        _tlv(0x07, bytes.fromhex(dataset.mesh_local_prefix)),
        _tlv(0x05, bytes.fromhex(dataset.network_key)),
        _tlv(0x03, dataset.network_name.encode()),
        _tlv(0x01, struct.pack("!H", dataset.panid)),
        _tlv(0x04, bytes.fromhex(dataset.pskc)),
        _tlv(0x0C, bytes.fromhex("02a0f7f8")),  # security policy: 672 h, as OpenThread's
    ]
    return b"".join(tlvs).hex()


# --- the medium ------------------------------------------------------------------------


class ThreadMedium(Medium):
    """A medium whose endpoints are Thread radios (see the module docstring).

    With ``binaries_dir`` (the home's Thread volume) it copies OpenThread's binaries into
    its ``bin`` folder, where every Thread node finds them (read-only)."""

    def __init__(self, *args: Any, binaries_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The home's network, chosen once.
        self.dataset = random_dataset()
        #: Radio id by node name, kept when a node detaches (it comes back after a restart).
        self.node_ids: dict[str, int] = {}
        #: The channel each radio last sent on.
        self.channels: dict[str, int] = {}
        if binaries_dir is not None:
            self.hand_out_binaries(binaries_dir)

    def hand_out_binaries(self, directory: str, source: str = BINARIES_SOURCE) -> None:
        """Copy OpenThread's binaries into ``directory``/bin, each made whole before it
        takes its name (a node never runs half a file)."""
        target = os.path.join(directory, "bin")
        os.makedirs(target, exist_ok=True)
        for name in BINARIES:
            staged = os.path.join(target, f".{name}.new")
            shutil.copyfile(os.path.join(source, name), staged)
            os.chmod(staged, 0o755)
            os.replace(staged, os.path.join(target, name))
        self._log(f"thread: binaries in {target}")

    # --- frames ---------------------------------------------------------------------

    def receivers(self, source: Endpoint, frame: bytes) -> list[Endpoint] | None:
        """Every other radio on the frame's channel (or on none yet); nothing for what is
        not a radio datagram."""
        radio = radio_frame(frame)
        if radio is None:
            self._drop(source, "not a radio frame")
            return None
        self.channels[source.name] = radio.channel
        return [
            endpoint
            for endpoint in self.endpoints.values()
            if endpoint is not source
            and endpoint.peer is None
            and self.channels.get(endpoint.name, radio.channel) == radio.channel
        ]

    def transmit(self, source: Endpoint, frame: bytes, receivers: list[Endpoint]) -> None:
        """As the core's, with the 802.15.4 frame as what is captured and what takes
        airtime, on its own channel."""
        radio = radio_frame(frame)
        if radio is None:
            return
        now = self.clock()
        if self.capture is not None:
            self.capture.write(radio.psdu)
        size = len(radio.psdu)
        # An acknowledgement follows its frame after a turnaround, without waiting for the
        # channel (its cost is in the frame's): queued behind other frames it would come
        # after the sender's ACK timeout, and every frame would be sent again.
        if is_ack(radio.psdu):
            waited: float | Decision = 0.0
        else:
            waited = self.model.transmit(source.name, size, now, True, channel=radio.channel)
        if isinstance(waited, Decision):
            self._drop(source, waited.reason)
            return
        # No back-pressure on the sender (the core holds a busy sender's endpoint): a
        # radio has one frame in flight until its ACK or timeout, and a frame left in
        # ot-radio0's queue would only reach the air later than its sender counts on.
        for receiver in receivers:
            decision = self.model.receive(source.name, receiver.name, size, now, waited)
            if not decision.deliver:
                self._drop(receiver, decision.reason)
            elif decision.delay <= 0:
                self.deliver(receiver, frame)
            else:
                entry = (now + decision.delay, next(self._sequence), receiver, frame)
                heapq.heappush(self._due, entry)

    def detach(self, name: str) -> None:
        super().detach(name)
        self.channels.pop(name, None)

    # --- control --------------------------------------------------------------------

    def handlers(self) -> dict[type[Request[Any]], Handler]:
        return {
            **super().handlers(),
            CaptureStart: self._capture_start_802154,
            GetThreadNodeId: self._node_id,
            GetThreadDataset: self._dataset,
            GetThreadStatus: self._thread_status,
        }

    def node_id(self, name: str) -> int:
        """The radio id of ``name``: its own if it had one, else the lowest free one."""
        if name not in self.node_ids:
            taken = set(self.node_ids.values())
            free = next((i for i in range(1, THREAD_MAX_NODES + 1) if i not in taken), None)
            if free is None:
                raise SpecError(
                    f"medium: all {THREAD_MAX_NODES} Thread radio ids are taken; a home "
                    f"holds at most {THREAD_MAX_NODES} Thread nodes, use another home"
                )
            self.node_ids[name] = free
        return self.node_ids[name]

    def _node_id(self, request: GetThreadNodeId, fds: list[int]) -> ThreadNodeId:
        return ThreadNodeId(node_id=self.node_id(request.name))

    def _dataset(self, request: GetThreadDataset, fds: list[int]) -> ThreadDataset:
        return self.dataset

    def _thread_status(self, request: GetThreadStatus, fds: list[int]) -> ThreadStatus:
        return ThreadStatus(
            radios={
                name: ThreadRadio(
                    node_id=self.node_ids.get(name, 0),
                    channel=self.channels.get(name),
                    frames=endpoint.counters["sent"],
                )
                for name, endpoint in self.endpoints.items()
            }
        )

    def _capture_start_802154(self, request: CaptureStart, fds: list[int]) -> Done:
        if self.capture is not None:
            self.capture.close()
        self.capture = PcapWriter(request.path, linktype=LINKTYPE_IEEE802_15_4_WITHFCS)
        self._log(f"capture: started to {request.path} (802.15.4)")
        return Done()
