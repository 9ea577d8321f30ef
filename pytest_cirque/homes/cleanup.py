"""Removing what runs left behind, selected by labels and nothing else.

Three ways objects go away besides a normal teardown:

* ``remove_owner``: the watchdog of a process that died (kill -9) removes that process's
  objects, except kept homes.
* ``reap``: at session start (and `cirque reap`), the objects of every dead owner on this
  host, except kept homes. Live owners and other hosts' owners are never touched.
* ``remove_home``: `cirque down HOME` removes one home, kept or not.

Only objects carrying the owner label (``identity.OWNER``) are ever considered. Containers go first
(sidecars and helpers before nodes), then networks, then volumes.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from functools import partial
from typing import Any

from pytest_cirque.core import identity, ownership
from pytest_cirque.core.docker_backend import (
    KIND_CONTAINER,
    KIND_NETWORK,
    Backend,
    DockerObject,
    as_backend,
    run_parallel,
)
from pytest_cirque.core.errors import CirqueError, StaleNetwork
from pytest_cirque.homes.networks import warn_stale

_ROLE_ORDER = {
    identity.ROLE_NETADMIN: 0,
    identity.ROLE_MEDIUM_ENDPOINT: 0,
    identity.ROLE_SIDECAR: 1,
    identity.ROLE_NODE: 2,
    identity.ROLE_MEDIUM: 3,
    identity.ROLE_KEPT_MARKER: 4,
}


def _is_kept_marker(obj: DockerObject) -> bool:
    return obj.labels.get(identity.ROLE) == identity.ROLE_KEPT_MARKER or obj.labels.get(
        identity.KEPT, ""
    ) not in ("", "0", "false")


def kept_homes(objects: Iterable[DockerObject]) -> set[str]:
    """Homes marked kept among these objects."""
    return {o.labels.get(identity.HOME, "") for o in objects if _is_kept_marker(o)} - {""}


def owned_objects(backend: Backend) -> list[DockerObject]:
    """Every object carrying an owner label."""
    return backend.find([identity.OWNER])


def remove_objects(
    backend: Backend, objects: Iterable[DockerObject], *, strict: bool = True
) -> list[str]:
    """Remove objects in a safe order: containers (in parallel), networks, volumes.
    Returns the names removed. What could not be removed is one CirqueError line when
    ``strict``, else a warning (reaping must never stop a session from starting). A
    network left stale by the engine is always only a warning."""
    objects = list(objects)
    containers = sorted(
        (o for o in objects if o.kind == KIND_CONTAINER),
        key=lambda o: _ROLE_ORDER.get(o.labels.get(identity.ROLE, ""), 2),
    )
    networks = [o for o in objects if o.kind == KIND_NETWORK]
    volumes = [o for o in objects if o.kind not in (KIND_CONTAINER, KIND_NETWORK)]
    removed: list[str] = []
    errors: list[BaseException] = []

    def remove(obj: DockerObject) -> None:
        try:
            backend.remove(obj)
        except StaleNetwork as exc:
            warn_stale(str(exc))
            return
        removed.append(obj.name)

    for group in (containers, networks, volumes):
        errors += run_parallel([partial(remove, o) for o in group])
    if errors:
        message = (
            f"could not remove {len(errors)} object(s): {str(errors[0]).splitlines()[0]}; "
            "run `cirque reap` again or remove them with docker"
        )
        if strict:
            raise CirqueError(message)
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    return removed


def remove_owner(backend: Backend | Any, owner_label: str) -> list[str]:
    """Remove every object of one owner process, except kept homes (the watchdog's job).
    Every function here takes the engine's Backend (a docker client is still accepted)."""
    backend = as_backend(backend)
    objects = backend.find([f"{identity.OWNER}={owner_label}"])
    kept = kept_homes(objects)
    return remove_objects(
        backend, [o for o in objects if o.labels.get(identity.HOME, "") not in kept]
    )


def reap(backend: Backend | Any, *, dead_only: bool = True) -> list[str]:
    """Remove objects whose owner process is gone (on this host), except kept homes.
    ``dead_only=False`` also removes live owners' objects on this host, for a machine you
    own; objects of other hosts and kept homes are never removed."""
    backend = as_backend(backend)
    objects = owned_objects(backend)
    kept = kept_homes(objects)
    alive: dict[str, bool] = {}
    doomed = []
    for obj in objects:
        if obj.labels.get(identity.HOME, "") in kept:
            continue
        label = obj.labels.get(identity.OWNER, "")
        owner = identity.Owner.from_label(label)
        if owner is None or not owner.is_local():
            continue
        if label not in alive:
            alive[label] = owner.is_alive()
        if dead_only and alive[label]:
            continue
        doomed.append(obj)
    # Host processes and temporary folders of dead runs first: they need no engine.
    host = ownership.reap()
    return host + remove_objects(backend, doomed, strict=False)


def remove_home(backend: Backend | Any, home: str) -> list[str]:
    """Remove one home and everything it owns, kept or not (`cirque down HOME`)."""
    backend = as_backend(backend)
    objects = [o for o in backend.find([f"{identity.HOME}={home}"]) if identity.OWNER in o.labels]
    return remove_objects(backend, objects)


def list_homes(backend: Backend | Any) -> dict[str, dict[str, Any]]:
    """Every home on this engine by id: run, worker, owner, alive, kept, node states."""
    backend = as_backend(backend)
    objects = owned_objects(backend)
    kept = kept_homes(objects)
    homes: dict[str, dict[str, Any]] = {}
    for obj in objects:
        home = obj.labels.get(identity.HOME)
        if not home:
            continue
        entry = homes.setdefault(
            home,
            {
                "home": home,
                "run": obj.labels.get(identity.RUN, ""),
                "worker": obj.labels.get(identity.WORKER, ""),
                "owner": obj.labels.get(identity.OWNER, ""),
                "kept": home in kept,
                "nodes": [],
                "objects": 0,
            },
        )
        entry["objects"] += 1
        if obj.kind == KIND_CONTAINER and obj.labels.get(identity.ROLE) == identity.ROLE_NODE:
            entry["nodes"].append(obj.labels.get(identity.NODE, obj.name))
    for entry in homes.values():
        owner = identity.Owner.from_label(entry["owner"])
        entry["alive"] = owner is not None and owner.is_alive()
        entry["nodes"].sort()
    return homes
