"""A home: its nodes and networks, created together and always removed together.

Creation order: validate (the spec was parsed), resolve images, let capabilities
configure each node, create the networks the nodes need, create and start the
containers (in parallel, with the home's namespace helper beside them), give them their
segment guards in one batch (networks.segment_guard, netns), then start capabilities. A
failure at any point removes what was made and raises one line. Teardown runs in
reverse, never stops half-way (also on Ctrl-C), and reports every problem in one line
at the end.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pytest_cirque.core import identity
from pytest_cirque.core.docker_backend import Backend, run_parallel
from pytest_cirque.core.errors import CirqueError, NodeError, SpecError
from pytest_cirque.homes import cleanup
from pytest_cirque.homes.netns import NamespaceHelper
from pytest_cirque.homes.networks import HomeNetworks, segment_guard
from pytest_cirque.homes.node import Node
from pytest_cirque.radios.client.container import MediumContainer
from pytest_cirque.spec import HomeSpec, NodeSpec

if TYPE_CHECKING:
    from pytest_cirque.homes.session import Cirque

#: How many containers are created, started or removed at once.
PARALLELISM = 8

#: The media a home can own, by kind: (phy of the link model, shared airtime budget,
#: whether it runs the WiFi layer: access points, stations and their control sockets).
MEDIA: dict[str, tuple[str, bool, bool]] = {
    "wifi": ("802.11g", True, True),
    "lan": ("wired", False, False),
}


def _one_line(errors: list[BaseException]) -> str:
    first = str(errors[0]).splitlines()[0] if str(errors[0]) else type(errors[0]).__name__
    more = (
        f" (and {len(errors) - 1} more: "
        + "; ".join((str(e).splitlines() or [type(e).__name__])[0] for e in errors[1:4])
        + ")"
        if len(errors) > 1
        else ""
    )
    return first + more


class Home:
    """One virtual home. Made by ``Cirque.create_home``."""

    def __init__(self, service: Cirque, name: str) -> None:
        self.service = service
        self.identity: identity.RunIdentity = service.identity
        self.backend: Backend = service.backend
        #: Globally unique: the io.cirque.home label and the stem of its objects' names.
        self.name = name
        self.nodes: dict[str, Node] = {}
        self.networks = HomeNetworks(self.backend, self.identity, name)
        self.namespaces = NamespaceHelper(self)
        #: kind -> the home's running medium of that kind (see ``medium``).
        self.media: dict[str, MediumContainer] = {}
        #: Media the home has without a node bringing them (HomeSpec.media).
        self.declared_media: set[str] = set()
        self.state = "creating"
        self.kept = False
        self._marker = ""
        self._lock = threading.RLock()
        self._media_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Home {self.name} {self.state} nodes={list(self.nodes)}>"

    def __getitem__(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            known = ", ".join(self.nodes) or "none"
            raise KeyError(f"home {self.name} has no node {name!r} (its nodes: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self.nodes

    def __enter__(self) -> Home:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.destroy()

    def resolve_image(self, name: str) -> str:
        return self.service.resolve_image(name)

    # ---- bring-up -------------------------------------------------------------------

    def _build(self, specs: list[NodeSpec]) -> None:
        """Create and start nodes of these specs; on failure remove them and raise."""
        images = {spec.image for spec in specs}
        resolved = {image: self.resolve_image(image) for image in sorted(images)}
        idle = {image: self.service.needs_idle_command(ref) for image, ref in resolved.items()}
        new_nodes = [Node(self, spec, resolved[spec.image]) for spec in specs]
        for node in new_nodes:
            node.prepare()
        with self._lock:
            for node in new_nodes:
                self.nodes[node.name] = node
        try:
            # Networks first (one per segment/variant in use), then every container.
            for node in new_nodes:
                if node.config.lan_segment is not None:
                    segment = node.config.lan_segment
                    node.network = self.networks.get(node.spec.docker_network, segment)

            def create_and_start(node: Node) -> None:
                node.create(node.network, idle[node.spec.image])
                self.backend.start(node.container_id)

            tasks = [lambda n=n: create_and_start(n) for n in new_nodes]
            if any(segment_guard(n.network) for n in new_nodes if n.network):
                tasks.insert(0, self.namespaces.start)  # first: ready when the nodes are
            self._raise_first(run_parallel(tasks, PARALLELISM), "creating nodes")
            self.guard_segments(new_nodes)
            with_capabilities = [n for n in new_nodes if n.capabilities]
            self._raise_first(
                run_parallel([n.post_start for n in with_capabilities], PARALLELISM),
                "starting capabilities",
            )
        except BaseException:
            errors = self._remove_nodes(new_nodes)
            if errors:
                self.service.report_teardown_errors(self.name, errors)
            raise

    def guard_segments(self, nodes: list[Node]) -> None:
        """Give running nodes their segment guards: one exec in the namespace helper for
        all of them; a per-node helper container for any it could not do."""
        scripts = [(n, segment_guard(n.network)) for n in nodes if n.network is not None]
        scripts = [(n, script) for n, script in scripts if script]
        if not scripts:
            return
        pids: dict[str, int] = {}
        self._raise_first(
            run_parallel(
                [lambda n=n: pids.__setitem__(n.name, n.host_pid()) for n, _ in scripts],
                PARALLELISM,
            ),
            "finding node processes",
        )
        failed = self.namespaces.run([(pids[n.name], script) for n, script in scripts])
        self._raise_first(
            run_parallel(
                [lambda n=scripts[i][0], s=scripts[i][1]: n.run_netadmin(s) for i in failed],
                PARALLELISM,
            ),
            "guarding LAN segments",
        )

    def _raise_first(self, errors: list[BaseException], doing: str) -> None:
        if not errors:
            return
        first = errors[0]
        if isinstance(first, CirqueError) and len(errors) == 1:
            raise first
        raise NodeError(f"home {self.name}: {doing} failed: {_one_line(errors)}") from first

    def add_node(self, name: str, spec_mapping: Mapping[str, Any] | NodeSpec | None = None) -> Node:
        """Add a node to the running home (validated first: a bad spec creates nothing)."""
        self._check_usable()
        spec = (
            spec_mapping
            if isinstance(spec_mapping, NodeSpec)
            else NodeSpec.parse(name, spec_mapping, f"home {self.name}")
        )
        if spec.name in self.nodes:
            raise SpecError(
                f"home {self.name}: node {spec.name!r} already exists; choose another name"
            )
        present = set(self.declared_media)
        for node in list(self.nodes.values()):
            present |= {c.medium for c in node.capabilities if c.medium and c.provides_medium}
        HomeSpec(nodes={spec.name: spec}).check_media(present)
        self._build([spec])
        return self.nodes[spec.name]

    def remove_node(self, name: str) -> None:
        """Remove one node (capabilities stopped, sidecars and container removed)."""
        node = self[name]
        errors = self._remove_nodes([node])
        if errors:
            raise CirqueError(f"home {self.name}: removing node {name}: {_one_line(errors)}")

    def _remove_nodes(self, nodes: list[Node]) -> list[BaseException]:
        errors: list[BaseException] = []
        try:
            errors += run_parallel([lambda n=n: errors.extend(n.remove()) for n in nodes])
        finally:
            with self._lock:
                for node in nodes:
                    self.nodes.pop(node.name, None)
        return errors

    def medium(self, kind: str) -> MediumContainer:
        """The home's medium of ``kind`` ("wifi", "lan"), started on first use. Every node
        attached to one kind shares it; it is removed after the nodes."""
        if kind not in MEDIA:
            raise SpecError(f"home {self.name}: unknown medium {kind!r}; known: {', '.join(MEDIA)}")
        with self._media_lock:
            medium = self.media.get(kind)
            if medium is None:
                self._check_usable()
                phy, airtime, wifi = MEDIA[kind]
                medium = MediumContainer(
                    self.backend.client,
                    name=identity.object_name(self.name, "_medium", kind),
                    image=self.resolve_image("medium"),
                    labels=self.identity.labels(self.name, identity.ROLE_MEDIUM),
                    phy=phy,
                    airtime=airtime,
                    wifi=wifi,
                )
                medium.start()
                if wifi:
                    # Always on, so a failure can show what was on the air (save_capture).
                    medium.start_capture("air.pcap")
                self.media[kind] = medium
        return medium

    def _remove_media(self) -> list[BaseException]:
        errors: list[BaseException] = []
        with self._media_lock:
            media, self.media = list(self.media.values()), {}
        for medium in media:
            try:
                medium.remove()
            except Exception as exc:
                errors.append(exc)
        return errors

    def _check_usable(self) -> None:
        if self.state in ("destroyed", "destroying"):
            raise CirqueError(f"home {self.name} is {self.state}; create a new home")

    # ---- queries --------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """State, networks and each node's state, addresses, image and capabilities."""
        return {
            "name": self.name,
            "state": self.state,
            "kept": self.kept,
            "run": self.identity.run_id,
            "worker": self.identity.worker,
            "networks": [net.describe() for net in self.networks.networks.values()],
            "nodes": {name: node.describe() for name, node in list(self.nodes.items())},
        }

    def topology(self) -> str:
        """A short human summary: networks, then one line per node."""
        lines = [f"home {self.name} ({self.state}{', kept' if self.kept else ''})"]
        for net in self.networks.networks.values():
            extra = f" {net.ipv6_subnet}" if net.ipv6_subnet else ""
            kind = "isolated" if net.describe()["isolated"] == "true" else net.driver
            lines.append(f"  network {net.name}: {net.subnet}{extra} ({kind})")
        for kind, medium in list(self.media.items()):
            lines += medium.topology_lines(kind)
        for name, node in list(self.nodes.items()):
            info = node.describe()
            caps = ", ".join(c["name"] for c in info["capabilities"]) or "-"
            where = info["ip"] or "-"
            lines.append(
                f"  node {name}: {info['state']} {where} image={node.spec.image} "
                f"segment={info['segment']} capabilities={caps}"
            )
        return "\n".join(lines)

    # ---- keep and destroy -----------------------------------------------------------

    def keep(self) -> str:
        """Mark the home kept: it survives session teardown, the watchdog and reaping,
        until `cirque down`. Returns how to reach it."""
        with self._lock:
            if not self.kept:
                labels = self.identity.labels(self.name, identity.ROLE_KEPT_MARKER)
                labels[identity.KEPT] = "1"
                # A created, never started container: seen by every label query, costs
                # nothing, removed by `cirque down`.
                image = next(iter(self.nodes.values())).image if self.nodes else None
                image = image or self.resolve_image("base")
                self._marker = self.backend.create_container(
                    identity.object_name(self.name, "_kept"),
                    image,
                    labels=labels,
                    command=["true"],
                )
                self.kept = True
        first = next(iter(self.nodes), "NODE")
        return (
            f"home {self.name} kept: `cirque exec {self.name} {first} sh`, "
            f"`cirque logs {self.name} {first}`, remove with `cirque down {self.name}`"
        )

    def destroy(self, force: bool = False) -> None:
        """Remove every node (capabilities stopped in reverse), then the networks. Always
        completes, idempotent; a kept home is left alone unless ``force``. Problems are
        reported together in one line once everything was attempted."""
        with self._lock:
            if self.state == "destroyed" or (self.kept and not force):
                return
            self.state = "destroying"
        errors: list[BaseException] = []
        interrupted = False
        try:
            try:
                nodes = list(reversed(list(self.nodes.values())))
                errors += run_parallel(
                    [lambda: errors.extend(self._remove_nodes(nodes)), self.namespaces.remove]
                )
            except KeyboardInterrupt:
                interrupted = True
            errors += self._remove_media()
            errors += self.networks.remove_all()
            if self._marker:
                try:
                    self.backend.remove_container(self._marker)
                except Exception as exc:
                    errors.append(exc)
            if interrupted or errors:
                # Something was cut short: sweep whatever still carries this home's label.
                try:
                    cleanup.remove_home(self.backend.client, self.name)
                except Exception as exc:
                    errors.append(exc)
        finally:
            self.state = "destroyed"
            self.service.forget(self)
        if interrupted:
            raise KeyboardInterrupt
        if errors:
            raise CirqueError(f"home {self.name}: teardown problems: {_one_line(errors)}")
