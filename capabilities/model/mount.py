"""Mount: bind host paths into the node (read-write, or read-only on request).

Forms accepted, alone or together:
- one mount: ``{source: /host/path, target: /node/path, read_only: false}``
- several: ``{mounts: [{source: ..., target: ..., read_only: ...}, [source, target], ...]}``
- Cirque's ``mount_pairs: [[host, target], ...]`` (beside the node's keys, or as a field)

Host paths must be absolute and exist, targets absolute: checked when the spec is parsed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_cirque.capabilities.model.base import (
    Capability,
    ContainerConfig,
    Mount,
    Params,
    check_host_path,
    check_node_path,
    register,
    subject,
)
from pytest_cirque.core.errors import SpecError


@register
class MountCapability(Capability):
    """Host path -> node path bind mounts."""

    name = "Mount"

    def __init__(self, mounts: Sequence[Mount]) -> None:
        super().__init__()
        self.mounts = list(mounts)

    @classmethod
    def params_from_cirque(cls, node_config: Mapping[str, Any]) -> dict[str, Any]:
        if "mount_pairs" in node_config:
            return {"mount_pairs": node_config["mount_pairs"]}
        return {}

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None, where: str) -> MountCapability:
        reader = Params(params, where, cls.name)
        read_only = reader.boolean("read_only", default=False, aliases=("readOnly",))
        allow_socket = reader.boolean("allow_host_socket", default=False)
        mounts: list[Mount] = []
        _, source = reader.raw("source", aliases=("host_path",))
        _, target = reader.raw("target", aliases=("target_path",))
        if source is not None or target is not None:
            mounts.append(_one_mount({"source": source, "target": target}, "", read_only, reader))
        for field_name in ("mounts", "mount_pairs"):
            _, entries = reader.raw(field_name)
            if entries is None:
                continue
            if isinstance(entries, (str, bytes)) or not isinstance(entries, Sequence):
                raise reader.error(field_name, f"must be a list of mounts (got {entries!r})")
            for index, entry in enumerate(entries):
                mounts.append(_one_mount(entry, f"{field_name}[{index}]", read_only, reader))
        reader.done()
        for mount in mounts:
            _refuse_host_takeover(mount, allow_socket, where)
        if not mounts:
            raise SpecError(
                f"{subject(where, cls.name)} needs at least one mount; give source and target, "
                "mounts: [{source: /host/path, target: /node/path}], or mount_pairs"
            )
        targets = [mount.target for mount in mounts]
        duplicates = sorted({t for t in targets if targets.count(t) > 1})
        if duplicates:
            raise SpecError(
                f"{subject(where, cls.name)} mounts two host paths on {duplicates[0]}; "
                "give each target once"
            )
        return cls(mounts)

    def configure(self, config: ContainerConfig, node_name: str) -> None:
        config.mounts.extend(self.mounts)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mounts": [
                {"source": m.source, "target": m.target, "read_only": m.read_only}
                for m in self.mounts
            ],
        }


def _one_mount(entry: Any, label: str, read_only: bool, reader: Params) -> Mount:
    """One mount from ``{source, target, read_only}`` or ``[source, target]``."""
    prefix = f"{label}." if label else ""
    if isinstance(entry, Mapping):
        unknown = sorted(set(entry) - {"source", "target", "read_only", "host_path", "target_path"})
        if unknown:
            raise reader.error(
                label, f"unknown field(s) {', '.join(unknown)}; use source, target, read_only"
            )
        source = entry.get("source", entry.get("host_path"))
        target = entry.get("target", entry.get("target_path"))
        entry_read_only = entry.get("read_only", read_only)
        if not isinstance(entry_read_only, bool):
            raise reader.error(
                f"{prefix}read_only", f"must be true or false (got {entry_read_only!r})"
            )
    elif isinstance(entry, Sequence) and not isinstance(entry, (str, bytes)) and len(entry) == 2:
        source, target = entry
        entry_read_only = read_only
    else:
        raise reader.error(
            label, f"must be [host_path, node_path] or {{source, target}} (got {entry!r})"
        )
    if source is None:
        raise reader.error(f"{prefix}source", "is required: the host path to mount")
    if target is None:
        raise reader.error(f"{prefix}target", "is required: the absolute path inside the node")
    return Mount(
        source=check_host_path(source, f"{prefix}source", reader.where, reader.capability),
        target=check_node_path(target, f"{prefix}target", reader.where, reader.capability),
        read_only=entry_read_only,
    )


#: Node paths a bind mount must not replace: the node's root, and what the runtime
#: provides there (the engine fails late, after other objects exist, on these).
RESERVED_TARGETS = ("/", "/proc", "/sys", "/dev")


def _refuse_host_takeover(mount: Mount, allow_socket: bool, where: str) -> None:
    """Refuse a mount that hands a node the host: its whole filesystem, or a Docker
    socket (which runs anything as root on the host) unless ``allow_host_socket``; and a
    target that would replace the node's own root or runtime filesystems."""
    label = subject(where, MountCapability.name)
    if mount.target in RESERVED_TARGETS:
        raise SpecError(
            f"{label} field 'target': {mount.target!r} would replace the node's own "
            f"{'root' if mount.target == '/' else mount.target}; mount under another path "
            "such as /mnt/host"
        )
    real = os.path.realpath(mount.source)
    if real == "/":
        raise SpecError(
            f"{label} field 'source': mounting the host's root / gives the node the whole "
            "host; mount the folder it needs"
        )
    if _is_docker_socket(real) and not allow_socket:
        raise SpecError(
            f"{label} field 'source': {mount.source} is a Docker socket, which lets the "
            "node run anything as root on the host; set allow_host_socket: true if the "
            "node really must drive the engine"
        )


def _is_docker_socket(path: str) -> bool:
    try:
        is_socket = stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False
    return is_socket and os.path.basename(path) in ("docker.sock", "containerd.sock")
