"""The medium relay: one process that carries Ethernet frames between TAP endpoints.

It runs in a helper container of the home, apart from the nodes. Each endpoint is a TAP
device living in a node's network namespace (``wlan0``); the relay holds the device's file
descriptor, reads what the node sends and writes what the node receives. Per frame, the
link model decides who hears it, whether it is lost and after how long it arrives:
frames due later wait on a timer heap, rates and airtime are token buckets in the model.

A wired pair puts the medium in the middle of a real link: a node's TAP (``eth0``) and a
packet socket on the interface that really joins the LAN. Each carries the other's frames
only, through the link model (loss, latency, jitter, rate), and nothing else reaches them.

A Unix socket takes control requests, one JSON line per connection, one JSON line back:
attach an endpoint (its TAP file descriptor comes along as SCM_RIGHTS), move a node, cut
a link, change parameters, switch carrier, start or stop a capture, report status. Each
op is a typed request of ``protocol``, served by the handler the table ``handlers()``
gives for its class.

Stdlib only: the helper image needs python3 and nothing else.

    python3 -m pytest_cirque.radios.relay.medium serve --socket /run/cirque-medium/control.sock
    python3 -m pytest_cirque.radios.relay.medium request '{"op": "status"}' --socket ...
"""

from __future__ import annotations

import argparse
import fcntl
import heapq
import itertools
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pytest_cirque.core.errors import CirqueError, SpecError
from pytest_cirque.radios.relay.link_model import PHYS, Decision, LinkModel
from pytest_cirque.radios.relay.pcap import LINKTYPE_ETHERNET, PcapWriter
from pytest_cirque.radios.relay.protocol import (
    Attach,
    CaptureStart,
    CaptureStop,
    CaptureStopped,
    Carrier,
    Detach,
    Done,
    Endpoints,
    EndpointStatus,
    MediumStatus,
    Move,
    Ping,
    Reply,
    Request,
    Reset,
    SetLink,
    SetMedium,
    SetNode,
    Status,
    Stop,
    decode_request,
    error_reply,
    ok_reply,
)

R = TypeVar("R", bound=Reply)
#: A control op's handler: the decoded request and the descriptors that came with it
#: (a handler that keeps one removes it from the list; the rest are closed).
Handler = Callable[[Any, list[int]], Reply]

#: ioctl switching a TAP device's carrier (linux/if_tun.h: _IOW('T', 226, int)).
TUNSETCARRIER = 0x400454E2
#: Frames read from one endpoint before the relay looks at the others again.
READ_BATCH = 64
#: A sender this far ahead of its rate or of the air is not read until it falls back:
#: its frames wait in its own interface's queue and its stack slows down, as a NIC's flow
#: control makes it, instead of the relay dropping them once its queue is full.
BACKLOG_S = 0.004
MAX_FRAME = 65536
#: What one read of a packet socket may return: a virtio-net header and a frame the
#: sender's segmentation offload left whole (up to 64 KiB of IP packet).
MAX_PACKET = MAX_FRAME + 1024
MAX_REQUEST = 65536
DEFAULT_SOCKET = "/run/cirque-medium/control.sock"


def set_carrier(fd: int, on: bool) -> None:
    """Switch the carrier of the TAP behind ``fd``: off, the node sees NO-CARRIER."""
    fcntl.ioctl(fd, TUNSETCARRIER, struct.pack("i", 1 if on else 0))


#: struct virtio_net_hdr (linux/virtio_net.h), which a packet socket with PACKET_VNET_HDR
#: puts before every frame: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset.
VNET_HEADER = struct.Struct("=BBHHHH")
VNET_F_NEEDS_CSUM = 1
#: The header of a frame that needs nothing done (what the relay writes).
VNET_PLAIN = bytes(VNET_HEADER.size)


def internet_checksum(data: bytes | bytearray | memoryview) -> int:
    """RFC 1071 checksum of ``data``: the ones' complement of its ones' complement sum of
    16-bit words. That sum is the data as one big number modulo 0xFFFF (2**16 = 1 mod
    0xFFFF), which Python computes in C however long the frame."""
    padded = bytes(data) + b"\0" * (len(data) % 2)
    number = int.from_bytes(padded, "big")
    total = number % 0xFFFF or (0xFFFF if number else 0)
    return 0xFFFF - total


def from_vnet(data: bytes) -> bytes:
    """The Ethernet frame behind a virtio-net header, with its checksum completed.

    A neighbour on the same host offloads its TCP/UDP checksums: the packet crosses the
    veth with only the pseudo-header sum in place (NEEDS_CSUM, where the sum starts and
    where it goes). A node would drop it as corrupt, so the relay finishes it as a NIC
    would. A segmentation-offloaded packet stays whole: the node's stack takes it as one
    large receive."""
    if len(data) < VNET_HEADER.size:
        return b""
    flags, _gso, _hdr_len, _gso_size, start, offset = VNET_HEADER.unpack_from(data)
    frame = data[VNET_HEADER.size :]
    if not flags & VNET_F_NEEDS_CSUM or start + offset + 2 > len(frame):
        return frame
    # The field holds the pseudo-header sum: summing over it folds that in.
    completed = bytearray(frame)
    checksum = internet_checksum(memoryview(completed)[start:]) or 0xFFFF
    struct.pack_into("!H", completed, start + offset, checksum)
    return bytes(completed)


@dataclass
class Endpoint:
    """A node's interface on the medium, as the relay sees it."""

    name: str
    fd: int
    carrier: bool = True
    macs: set[bytes] = field(default_factory=set)
    #: Position and carrier given at attach time, restored by a reset.
    attached_at: tuple[float, float, float] = (0.0, 0.0, 0.0)
    attached_carrier: bool = True
    counters: Counter[str] = field(default_factory=Counter)
    #: The endpoint this one is wired to: a node's TAP and the packet socket on its real
    #: LAN interface. A pair is a private wire: each one's frames go to the other only,
    #: whatever their addresses, and nothing else reaches either.
    peer: str | None = None
    #: The descriptor is an AF_PACKET socket with virtio-net headers, not a TAP: frames
    #: carry a header both ways, and there is no carrier to switch.
    packet: bool = False
    #: Not read for now: it is ahead of its rate or the air (see BACKLOG_S).
    held: bool = False

    def describe(self) -> EndpointStatus:
        return EndpointStatus(
            carrier=self.carrier,
            macs=sorted(":".join(f"{b:02x}" for b in mac) for mac in self.macs),
            counters=dict(self.counters),
            peer=self.peer,
        )


@dataclass(eq=False)
class Timer:
    """A callback due at ``at`` on the relay loop; ``cancel()`` keeps it from running."""

    at: float
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class _Request:
    conn: socket.socket
    data: bytearray = field(default_factory=bytearray)
    fds: list[int] = field(default_factory=list)


class Medium:
    """The relay loop and its control requests."""

    #: The pcap link type of what ``capture_frame`` writes.
    CAPTURE_LINKTYPE = LINKTYPE_ETHERNET

    def __init__(
        self,
        model: LinkModel,
        socket_path: str,
        clock: Callable[[], float] = time.monotonic,
        log: Callable[[str], None] | None = None,
        switch_carrier: Callable[[int, bool], None] = set_carrier,
    ) -> None:
        self.model = model
        self._initial = (model.phy, model.airtime, model.queue_ms)
        self._switch_carrier = switch_carrier
        self.clock = clock
        self.endpoints: dict[str, Endpoint] = {}
        self.capture: PcapWriter | None = None
        self.drops: Counter[str] = Counter()
        self._log = log or (lambda line: print(line, flush=True))
        self._by_fd: dict[int, Endpoint] = {}
        self._by_mac: dict[bytes, Endpoint] = {}
        self._due: list[tuple[float, int, Endpoint, bytes]] = []
        self._timers: list[tuple[float, int, Timer]] = []
        self._sequence = itertools.count()
        # select(2) takes microsecond timeouts; epoll rounds them up to whole milliseconds,
        # which would add up to a millisecond to every delayed frame. A medium has tens of
        # descriptors, far below select's limit.
        self._selector = selectors.SelectSelector()
        self._running = True
        self._requests: dict[int, _Request] = {}
        self._handlers = self.handlers()
        if os.path.exists(socket_path):
            os.unlink(socket_path)
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(socket_path)
        self._server.listen(16)
        self._server.setblocking(False)
        self._selector.register(self._server, selectors.EVENT_READ, self._accept)

    # --- loop -----------------------------------------------------------------------

    def serve_forever(self) -> None:
        while self._running:
            wakeups = [queue[0][0] for queue in (self._due, self._timers) if queue]
            timeout = max(0.0, min(wakeups) - self.clock()) if wakeups else None
            for key, _events in self._selector.select(timeout):
                key.data(key.fileobj)
            self._deliver_due()
            self._run_timers()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` on the relay loop after ``delay`` seconds (cancellable)."""
        timer = Timer(self.clock() + max(0.0, delay), callback)
        heapq.heappush(self._timers, (timer.at, next(self._sequence), timer))
        return timer

    def _run_timers(self) -> None:
        now = self.clock()
        while self._timers and self._timers[0][0] <= now:
            _at, _seq, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                try:
                    timer.callback()
                except Exception as exc:  # one broken timer must not stop the medium
                    self._log(f"timer {timer.callback!r} failed: {type(exc).__name__}: {exc}")

    def stop(self) -> None:
        self._running = False

    def close(self) -> None:
        while self.endpoints:  # detaching one end of a pair detaches both
            self.detach(next(iter(self.endpoints)))
        if self.capture is not None:
            self.capture.close()
            self.capture = None
        self._selector.close()
        self._server.close()

    def _deliver_due(self) -> None:
        now = self.clock()
        while self._due and self._due[0][0] <= now:
            _at, _seq, endpoint, frame = heapq.heappop(self._due)
            if endpoint.fd >= 0:
                self.deliver(endpoint, frame)

    # --- frames ---------------------------------------------------------------------

    def _on_readable(self, fd: int) -> None:
        source = self._by_fd.get(fd)
        if source is None:
            return
        for _ in range(READ_BATCH):
            try:
                frame = os.read(fd, MAX_PACKET if source.packet else MAX_FRAME)
            except BlockingIOError:
                return
            except OSError as exc:
                # The node's namespace is gone (container removed): its device went with it.
                self._log(f"endpoint {source.name}: read failed ({exc.strerror}); detached")
                self.detach(source.name)
                return
            self.relay(source, from_vnet(frame) if source.packet else frame)
            if source.held:
                return

    def relay(self, source: Endpoint, frame: bytes) -> None:
        """Put one frame the node behind ``source`` sent on the air."""
        if len(frame) < 14:
            return
        source.counters["sent"] += 1
        if not source.carrier:
            self._drop(source, "no carrier")
            return
        sender_mac = frame[6:12]
        if source.peer is None and sender_mac not in source.macs:
            self._learn(sender_mac, source)
        receivers = self.receivers(source, frame)
        if receivers is not None:
            self.transmit(source, frame, receivers)

    def receivers(self, source: Endpoint, frame: bytes) -> list[Endpoint] | None:
        """Who may hear a frame a node sent: the owner of its destination address, or
        everyone else for broadcast and unknown addresses; a paired endpoint's peer only.
        None: the frame is refused (a subclass's rule, already counted as a drop)."""
        if source.peer is not None:
            peer = self.endpoints.get(source.peer)
            return [peer] if peer is not None else []
        destination_mac = frame[0:6]
        owner = None if destination_mac[0] & 1 else self._by_mac.get(destination_mac)
        if owner is not None:
            return [owner] if owner is not source else []
        return [e for e in self.endpoints.values() if e is not source and e.peer is None]

    def transmit(self, source: Endpoint, frame: bytes, receivers: list[Endpoint]) -> None:
        """Send ``frame`` from ``source`` over the link model: capture it, spend airtime,
        and schedule it for each receiver that hears it."""
        now = self.clock()
        if self.capture is not None:
            try:
                self.capture_frame(source, frame, receivers)
            except Exception as exc:  # a capture must never stop the air
                self.drops["capture failed"] += 1
                if self.drops["capture failed"] == 1:
                    self._log(f"capture: frame not written: {type(exc).__name__}: {exc}")
        broadcast = bool(frame[0] & 1)
        waited = self.model.transmit(source.name, len(frame), now, broadcast)
        if isinstance(waited, Decision):
            self._drop(source, waited.reason)
            return
        if waited > BACKLOG_S:
            self._hold(source, waited - BACKLOG_S)
        for receiver in receivers:
            decision = self.model.receive(source.name, receiver.name, len(frame), now, waited)
            if not decision.deliver:
                self._drop(receiver, decision.reason)
            elif decision.delay <= 0:
                self.deliver(receiver, frame)
            else:
                entry = (now + decision.delay, next(self._sequence), receiver, frame)
                heapq.heappush(self._due, entry)

    def capture_frame(self, source: Endpoint, frame: bytes, receivers: list[Endpoint]) -> None:
        """Write one transmission to the running capture: here the Ethernet frame as it
        is; a subclass writes what its radio would put on the air instead."""
        assert self.capture is not None
        self.capture.write(frame)

    def _hold(self, endpoint: Endpoint, seconds: float) -> None:
        """Stop reading ``endpoint`` for ``seconds``: back-pressure on its node."""
        if endpoint.held or endpoint.fd < 0 or self._by_fd.get(endpoint.fd) is not endpoint:
            return
        endpoint.held = True
        endpoint.counters["held"] += 1
        self._selector.unregister(endpoint.fd)
        self.call_later(seconds, lambda: self._release(endpoint))

    def _release(self, endpoint: Endpoint) -> None:
        if not endpoint.held:
            return
        endpoint.held = False
        if endpoint.fd >= 0 and self._by_fd.get(endpoint.fd) is endpoint:
            self._selector.register(endpoint.fd, selectors.EVENT_READ, self._on_readable)

    def deliver(self, receiver: Endpoint, frame: bytes) -> None:
        """A frame reached ``receiver``: hand it to its node (a subclass may take frames
        meant for the radio itself, such as management frames)."""
        if not receiver.carrier:
            self._drop(receiver, "no carrier")
            return
        self._write(receiver, frame)

    def _learn(self, mac: bytes, endpoint: Endpoint) -> None:
        """Remember behind which endpoint a MAC address lives (it may have moved)."""
        previous = self._by_mac.get(mac)
        if previous is not None:
            previous.macs.discard(mac)
        endpoint.macs.add(mac)
        self._by_mac[mac] = endpoint

    def _write(self, receiver: Endpoint, frame: bytes) -> None:
        try:
            os.write(receiver.fd, VNET_PLAIN + frame if receiver.packet else frame)
            receiver.counters["received"] += 1
        except OSError as exc:
            self._drop(receiver, f"write failed: {exc.strerror}")

    def _drop(self, endpoint: Endpoint, reason: str) -> None:
        endpoint.counters[f"dropped: {reason}"] += 1
        self.drops[reason] += 1

    # --- endpoints ------------------------------------------------------------------

    def attach(
        self,
        name: str,
        fd: int,
        position: list[float] | None = None,
        carrier: bool = True,
        *,
        peer: str | None = None,
        packet: bool = False,
    ) -> None:
        """Relay the frames of ``fd`` (a TAP, or with ``packet`` a packet socket) as endpoint
        ``name``; with ``peer`` (an attached, unpaired endpoint) the two are a pair."""
        if name in self.endpoints:
            raise SpecError(f"medium: endpoint {name!r} is already attached; detach it first")
        if peer is not None:
            other = self._endpoint(peer)
            if other.peer is not None or peer == name:
                raise SpecError(f"medium: endpoint {peer!r} is already paired; detach it first")
        if not packet:
            self._switch_carrier(fd, carrier)
        self.model.add_node(name, position or (0.0, 0.0, 0.0))
        os.set_blocking(fd, False)
        endpoint = Endpoint(
            name=name,
            fd=fd,
            carrier=carrier,
            attached_at=self.model.position(name),
            attached_carrier=carrier,
            peer=peer,
            packet=packet,
        )
        if peer is not None:
            self.endpoints[peer].peer = name
        self.endpoints[name] = endpoint
        self._by_fd[fd] = endpoint
        self._selector.register(fd, selectors.EVENT_READ, self._on_readable)
        self._log(f"endpoint {name}: attached (carrier {'on' if carrier else 'off'})")

    def detach(self, name: str) -> None:
        endpoint = self._endpoint(name)
        if not endpoint.held:
            self._selector.unregister(endpoint.fd)
        endpoint.held = False
        del self._by_fd[endpoint.fd]
        for mac in endpoint.macs:
            del self._by_mac[mac]
        os.close(endpoint.fd)
        endpoint.fd = -1
        del self.endpoints[name]
        self.model.remove_node(name)
        self._log(f"endpoint {name}: detached")
        if endpoint.peer in self.endpoints:  # a pair is one wire: it goes as a whole
            self.detach(endpoint.peer)

    def set_endpoint_carrier(self, name: str, on: bool) -> None:
        endpoint = self._endpoint(name)
        if not endpoint.packet:
            self._switch_carrier(endpoint.fd, on)
        endpoint.carrier = on
        self._log(f"endpoint {name}: carrier {'on' if on else 'off'}")

    def _endpoint(self, name: str) -> Endpoint:
        try:
            return self.endpoints[name]
        except KeyError:
            known = ", ".join(self.endpoints) or "none"
            raise SpecError(f"medium: no endpoint {name!r} (attached: {known})") from None

    # --- control --------------------------------------------------------------------

    def _accept(self, server: socket.socket) -> None:
        try:
            conn, _ = server.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        self._selector.register(conn, selectors.EVENT_READ, self._on_request_data)
        self._requests[conn.fileno()] = _Request(conn)

    def _on_request_data(self, conn: socket.socket) -> None:
        request = self._requests[conn.fileno()]
        try:
            data, fds, _flags, _addr = socket.recv_fds(conn, MAX_REQUEST, 4)
        except BlockingIOError:
            return
        except OSError:
            data, fds = b"", []
        request.data += data
        request.fds += fds
        if data and b"\n" not in data and len(request.data) < MAX_REQUEST:
            return
        self._selector.unregister(conn)
        del self._requests[conn.fileno()]
        reply = self.handle(request.data.decode(errors="replace"), request.fds)
        try:
            conn.setblocking(True)
            conn.settimeout(2)
            conn.sendall(json.dumps(reply).encode() + b"\n")
        except OSError:
            pass
        finally:
            conn.close()

    def handle(self, line: str, fds: list[int] | None = None) -> dict[str, Any]:
        """Run one control request line; its reply in wire form. Any fd not taken by an
        attach is closed."""
        fds = list(fds or [])
        try:
            return ok_reply(self.dispatch(decode_request(line), fds))
        except CirqueError as exc:
            return error_reply(type(exc).__name__, str(exc))
        except OSError as exc:
            return error_reply("NodeError", f"medium: {exc}")
        finally:
            for fd in fds:
                os.close(fd)

    def dispatch(self, request: Request[R], fds: list[int]) -> R:
        """Run one decoded request through the handler its class has in the table."""
        handler = self._handlers.get(type(request))
        if handler is None:
            raise SpecError(
                f"medium: op {request.OP!r} is not served by a {type(self).__name__} "
                "(WiFi ops need a medium started with --wifi, Thread ops --thread)"
            )
        return handler(request, fds)  # type: ignore[return-value]

    def handlers(self) -> dict[type[Request[Any]], Handler]:
        """Which handler serves each request class; a subclass adds its own ops."""
        return {
            Ping: self._ping,
            Reset: self._reset,
            Stop: self._stop,
            Attach: self._attach,
            Detach: self._detach,
            Move: self._move,
            SetNode: self._set_node,
            SetLink: self._set_link,
            SetMedium: self._set_medium,
            Carrier: self._carrier,
            CaptureStart: self._capture_start,
            CaptureStop: self._capture_stop,
            Status: self._status,
        }

    def _ping(self, request: Ping, fds: list[int]) -> Endpoints:
        return Endpoints(endpoints=list(self.endpoints))

    def _reset(self, request: Reset, fds: list[int]) -> Done:
        """Back to the medium as attached: default model, attach positions and carriers, no
        capture. Lets one medium serve test after test, each starting clean."""
        phy, airtime, queue_ms = self._initial
        model = LinkModel(phy, airtime=airtime, queue_ms=queue_ms, rng=self.model.rng)
        for endpoint in self.endpoints.values():
            model.add_node(endpoint.name, endpoint.attached_at)
            if endpoint.carrier != endpoint.attached_carrier:
                self.set_endpoint_carrier(endpoint.name, endpoint.attached_carrier)
            endpoint.counters.clear()
        self.model = model
        self.drops.clear()
        self._due.clear()
        if self.capture is not None:
            self._capture_stop(CaptureStop(), fds)
        self._log("medium: reset")
        return Done()

    def _stop(self, request: Stop, fds: list[int]) -> Done:
        """Stop relaying after this reply; every endpoint's interface disappears."""
        self.stop()
        return Done()

    def _attach(self, request: Attach, fds: list[int]) -> Done:
        """Attach a TAP; with ``peer``, a wired pair: the node's TAP (first descriptor) and
        a packet socket on its real LAN interface (second), attached as ``peer``."""
        name, peer, position = request.name, request.peer, request.position
        carrier = request.carrier
        if peer is None:
            if len(fds) != 1:
                raise SpecError(f"medium: attach {name!r} needs exactly one TAP descriptor")
            self.attach(name, fds[0], position, carrier)
            fds.clear()
            return Done()
        if len(fds) != 2:
            raise SpecError(
                f"medium: attach {name!r} with peer {peer!r} needs two descriptors "
                "(the TAP, then a packet socket)"
            )
        if peer == name or name in self.endpoints or peer in self.endpoints:
            raise SpecError(
                f"medium: cannot attach the pair {name!r}/{peer!r}: a name is taken "
                f"(attached: {', '.join(self.endpoints) or 'none'}); detach it first"
            )
        tap, packet = fds
        self.attach(peer, packet, position, packet=True)
        fds.remove(packet)
        try:
            self.attach(name, tap, position, carrier, peer=peer)
        except BaseException:
            self.detach(peer)
            raise
        fds.clear()
        return Done()

    def _detach(self, request: Detach, fds: list[int]) -> Done:
        self.detach(request.name)
        return Done()

    def _move(self, request: Move, fds: list[int]) -> Done:
        self._endpoint(request.name)
        self.model.move(request.name, request.position)
        return Done()

    def _set_node(self, request: SetNode, fds: list[int]) -> Done:
        self._endpoint(request.name)
        self.model.set_node(request.name, **request.changes())
        return Done()

    def _set_link(self, request: SetLink, fds: list[int]) -> Done:
        self.model.set_link(
            request.a,
            request.b,
            cut=request.cut,
            symmetric=request.symmetric,
            **request.changes(),
        )
        return Done()

    def _set_medium(self, request: SetMedium, fds: list[int]) -> Done:
        self.model.set_medium(**request.changes())
        return Done()

    def _carrier(self, request: Carrier, fds: list[int]) -> Done:
        self.set_endpoint_carrier(request.name, request.on)
        return Done()

    def _capture_start(self, request: CaptureStart, fds: list[int]) -> Done:
        if self.capture is not None:
            self.capture.close()
        self.capture = PcapWriter(request.path, linktype=self.CAPTURE_LINKTYPE)
        self._log(f"capture: started to {request.path}")
        return Done()

    def _capture_stop(self, request: CaptureStop, fds: list[int]) -> CaptureStopped:
        if self.capture is None:
            return CaptureStopped(frames=0, path=None)
        capture, self.capture = self.capture, None
        capture.close()
        self._log(f"capture: stopped, {capture.frames} frames in {capture.path}")
        return CaptureStopped(frames=capture.frames, path=str(capture.path))

    def _status(self, request: Status, fds: list[int]) -> MediumStatus:
        return MediumStatus(
            model=self.model.snapshot(),
            endpoints={name: e.describe() for name, e in self.endpoints.items()},
            drops=dict(self.drops),
            pending=len(self._due),
            capture=None if self.capture is None else str(self.capture.path),
        )


def exchange(socket_path: str, line: str, fds: list[int] | None = None) -> str:
    """Send one request line to a running medium and return its reply line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(10)
        conn.connect(socket_path)
        payload = line.strip().encode() + b"\n"
        if fds:
            socket.send_fds(conn, [payload], fds)
        else:
            conn.sendall(payload)
        reply = bytearray()
        while chunk := conn.recv(65536):
            reply += chunk
    return reply.decode(errors="replace").strip()


def request(socket_path: str, message: Request[R], fds: list[int] | None = None) -> R:
    """Send one typed request to a running medium; its typed reply, or the error the
    relay named raised again."""
    return message.decode_reply(json.loads(exchange(socket_path, message.encode(), fds)))


def control_session(socket_path: str) -> int:
    """Forward request lines read from stdin, one reply line each, until stdin closes: the
    test process keeps one of these open instead of starting a process per request."""
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            reply = exchange(socket_path, line)
            json.loads(reply)
        except (OSError, ValueError) as exc:
            reply = json.dumps(error_reply("NodeError", f"medium: {exc}"))
        print(reply, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medium", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the relay")
    serve.add_argument("--socket", default=DEFAULT_SOCKET)
    serve.add_argument("--phy", default="802.11g", choices=sorted(PHYS))
    serve.add_argument("--no-airtime", action="store_true", help="no shared airtime budget")
    serve.add_argument("--wifi", action="store_true", help="run the WiFi layer (APs, stations)")
    serve.add_argument(
        "--stations-dir",
        help="with --wifi: the radio volume, where station nodes find the relay program "
        "and its stations socket",
    )
    serve.add_argument("--thread", action="store_true", help="run the Thread layer (802.15.4)")
    serve.add_argument(
        "--thread-dir",
        help="with --thread: the home's Thread volume, where Thread nodes find OpenThread",
    )
    ask = commands.add_parser("request", help="send one JSON control request, print the reply")
    ask.add_argument("message")
    ask.add_argument("--socket", default=DEFAULT_SOCKET)
    talk = commands.add_parser("session", help="requests from stdin, one JSON line each")
    talk.add_argument("--socket", default=DEFAULT_SOCKET)
    args = parser.parse_args(argv)
    if args.command == "request":
        reply = exchange(args.socket, args.message)
        print(reply)
        return 0 if json.loads(reply).get("ok") else 1
    if args.command == "session":
        return control_session(args.socket)
    model = LinkModel(PHYS[args.phy], airtime=not args.no_airtime)
    if args.wifi:
        from pytest_cirque.radios.relay.wifi import WifiMedium  # needs python3-cryptography

        medium: Medium = WifiMedium(model, args.socket, stations_dir=args.stations_dir)
    elif args.thread:
        from pytest_cirque.radios.relay.thread import ThreadMedium

        medium = ThreadMedium(model, args.socket, binaries_dir=args.thread_dir)
    else:
        medium = Medium(model, args.socket)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"medium ready on {args.socket} ({args.phy})", flush=True)
    try:
        medium.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        medium.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
