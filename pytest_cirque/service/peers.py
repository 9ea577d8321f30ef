"""Who is on the other end of a loopback connection, and whether the service lets them in.

The service drives Docker, which is root on the host: anyone who reaches it can do what
Docker can. Without a token it therefore serves only the user it runs as. For a loopback
connection the kernel knows that user: the client's socket is a row of /proc/net/tcp (or
tcp6) whose local end is the peer's address and port and whose remote end is ours, and the
row carries its owner's uid. A peer that cannot be found there (another network
namespace, a remote host) is refused.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

TCP_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(hex_text: str) -> Address:
    """An address as /proc/net/tcp{,6} writes it: 32-bit words in host (little-endian)
    byte order."""
    raw = bytes.fromhex(hex_text)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.IPv4Address(words) if len(words) == 4 else ipaddress.IPv6Address(words)


def _same(a: Address, b: Address) -> bool:
    """Equal, counting an IPv4-mapped IPv6 address as its IPv4 address."""
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped:
        a = a.ipv4_mapped
    if isinstance(b, ipaddress.IPv6Address) and b.ipv4_mapped:
        b = b.ipv4_mapped
    return a == b


def socket_rows(tables: Iterable[str] = TCP_TABLES) -> Iterable[tuple[str, str, int]]:
    """(local "ADDR:PORT", remote "ADDR:PORT", uid) of every TCP socket of this network
    namespace; unreadable tables are skipped."""
    for table in tables:
        try:
            with open(table, encoding="ascii") as rows:
                next(rows, None)  # the header
                for row in rows:
                    fields = row.split()
                    if len(fields) > 7:
                        yield fields[1], fields[2], int(fields[7])
        except OSError:
            continue


def peer_uid(
    peer: tuple[str, int], server: tuple[str, int], tables: Iterable[str] = TCP_TABLES
) -> int | None:
    """The uid owning the client socket of a connection from ``peer`` to ``server``
    (host, port pairs as the server sees them; an empty server host matches any), or None
    when no such socket is here."""
    try:
        peer_host = ipaddress.ip_address(peer[0].strip("[]"))
        server_host = ipaddress.ip_address(server[0].strip("[]")) if server[0] else None
    except ValueError:
        return None
    for local, remote, uid in socket_rows(tables):
        local_host, _, local_port = local.rpartition(":")
        remote_host, _, remote_port = remote.rpartition(":")
        try:
            if int(local_port, 16) != peer[1] or int(remote_port, 16) != server[1]:
                continue
            if not _same(_address(local_host), peer_host):
                continue
            if server_host is None or _same(_address(remote_host), server_host):
                return uid
        except ValueError:
            continue
    return None


@dataclass(frozen=True)
class Gate:
    """Who may use the service: the holders of ``token`` when one is set, else only the
    processes of ``uid`` (the service's own user) on this host."""

    token: str | None = None
    uid: int = field(default_factory=os.getuid)

    def refusal(
        self,
        peer: tuple[str, int] | None,
        server: tuple[str, int] | None,
        headers: Mapping[str, str],
        query_token: str | None,
    ) -> str | None:
        """Why this caller is refused (one line), or None to let it in. ``headers`` are
        lower-case names."""
        if self.token is not None:
            given = query_token
            authorization = headers.get("authorization", "")
            if authorization.lower().startswith("bearer "):
                given = authorization[7:].strip()
            if given and hmac.compare_digest(given.encode(), self.token.encode()):
                return None
            return (
                "this service needs its token: send 'Authorization: Bearer TOKEN' or ?token=TOKEN"
            )
        if peer is None or server is None:
            return "cannot tell who is connecting; this service serves only its own user"
        uid = peer_uid(peer, server)
        if uid is None:
            return (
                f"cannot find the connection from {peer[0]}:{peer[1]} in this host's socket "
                "table; without a token this service serves only its own user on this host"
            )
        if uid != self.uid:
            return (
                f"user {uid} may not use this service, which serves only user {self.uid} "
                "without a token; start it with --token to share it"
            )
        return None
