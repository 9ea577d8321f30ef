"""Who owns a Docker object, and what it is called.

Every object pytest-cirque creates carries labels under ``io.cirque.`` and a name that
includes the run id and the xdist worker, so parallel workers and parallel pytest
sessions on one host never collide, and cleanup can select exactly its own objects.

The owner label identifies the creating process by host, pid and process start time: a
recycled pid is a different owner, so a dead run is never mistaken for a live one.
This module is pure (no Docker).
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from dataclasses import dataclass

LABEL_PREFIX = "io.cirque."
RUN = "io.cirque.run"
HOME = "io.cirque.home"
OWNER = "io.cirque.owner"
WORKER = "io.cirque.worker"
NODE = "io.cirque.node"
ROLE = "io.cirque.role"
KEPT = "io.cirque.kept"
#: What a node was made of, and which sidecar a helper container is.
IMAGE = "io.cirque.image"
CAPABILITIES = "io.cirque.capabilities"
SIDECAR = "io.cirque.sidecar"
#: A home network's segment and variant, and the medium an object belongs to.
SEGMENT = "io.cirque.segment"
VARIANT = "io.cirque.variant"
MEDIUM = "io.cirque.medium"
#: The recipe hash a project image was built from (with IMAGE, its recipe's name).
RECIPE = "io.cirque.recipe"
#: The labels every object must carry for cleanup to find and judge it.
OWNERSHIP = (RUN, HOME, OWNER)

#: Values of the io.cirque.role label.
ROLE_NODE = "node"
ROLE_SIDECAR = "sidecar"
ROLE_NETADMIN = "netadmin"
ROLE_NETWORK = "network"
ROLE_KEPT_MARKER = "kept-marker"
#: A home's radio or wired medium (relay container and its volume) and the short-lived
#: helpers that attach nodes to it.
ROLE_MEDIUM = "medium"
ROLE_MEDIUM_ENDPOINT = "medium-endpoint"
#: A test broker container of the device models (not part of any home's nodes).
ROLE_MQTT_BROKER = "mqtt-broker"

NAME_PREFIX = "cirque"
_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]+")


def new_run_id() -> str:
    """A short random run id (8 hex digits)."""
    return secrets.token_hex(4)


def current_worker() -> str:
    """The xdist worker of this process ("gw0", ...), or "main" outside xdist."""
    return os.environ.get("PYTEST_XDIST_WORKER") or "main"


def safe_name(text: str) -> str:
    """Text reduced to what Docker accepts in object names."""
    cleaned = _UNSAFE.sub("-", str(text)).strip("-.")
    return cleaned or "x"


def process_start_time(pid: int) -> str | None:
    """Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat), or
    None when the process does not exist or has exited (zombie). Without /proc, "0" for
    any live pid."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            text = stat.read()
    except FileNotFoundError:
        return None
    except OSError:
        return _start_time_without_proc(pid)
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = text[text.rfind(")") + 2 :].split()
    if not fields or fields[0] in ("Z", "X"):  # a zombie has exited: not alive
        return None
    return fields[19] if len(fields) > 19 else None


def _start_time_without_proc(pid: int) -> str | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return "0"
    return "0"


@dataclass(frozen=True)
class Owner:
    """A process on a host, identified across pid reuse by its start time."""

    host: str
    pid: int
    start_time: str

    @classmethod
    def current(cls) -> Owner:
        pid = os.getpid()
        return cls(socket.gethostname(), pid, process_start_time(pid) or "0")

    @classmethod
    def from_label(cls, label: str) -> Owner | None:
        """Parse an io.cirque.owner label ("host/pid/start"); None when malformed."""
        parts = str(label).rsplit("/", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        return cls(parts[0], int(parts[1]), parts[2])

    @property
    def label(self) -> str:
        return f"{self.host}/{self.pid}/{self.start_time}"

    def is_local(self) -> bool:
        return self.host == socket.gethostname()

    def is_alive(self) -> bool:
        """True unless this owner is on this host and certainly gone. An owner on another
        host is always considered alive: we cannot see its processes."""
        if not self.is_local():
            return True
        start = process_start_time(self.pid)
        if start is None:
            return False
        return self.start_time in ("0", start) or start == "0"


@dataclass(frozen=True)
class RunIdentity:
    """The run, worker and owner that label every object of one Cirque service."""

    run_id: str
    worker: str
    owner: Owner

    @classmethod
    def create(cls, run_id: str | None = None, worker: str | None = None) -> RunIdentity:
        return cls(
            safe_name(run_id or new_run_id())[:8],
            safe_name(worker or current_worker()),
            Owner.current(),
        )

    def home_id(self, home_name: str) -> str:
        """The globally unique id of a home (its io.cirque.home label and name stem). It
        holds no '.', which separates it from the parts of its objects' names."""
        home = safe_name(home_name.replace(".", "-"))
        return f"{NAME_PREFIX}-{self.run_id}-{self.worker.replace('.', '-')}-{home}"

    def labels(self, home_id: str, role: str, node: str | None = None) -> dict[str, str]:
        labels = {
            RUN: self.run_id,
            HOME: home_id,
            OWNER: self.owner.label,
            WORKER: self.worker,
            ROLE: role,
        }
        if node is not None:
            labels[NODE] = node
        return labels


def object_name(home_id: str, *parts: str) -> str:
    """Name of a Docker object of a home: the home id and the parts, joined by '.'.
    Neither home ids nor node names hold a '.', so two homes' objects never share a
    name (home "x" node "y-a" is x.y-a; home "x-y" node "a" is x-y.a), and objects that
    are not nodes use parts no node name can be ("_kept", "node.role")."""
    return ".".join([home_id, *(safe_name(p) for p in parts)])
