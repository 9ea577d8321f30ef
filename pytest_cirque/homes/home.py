"""A home: its nodes and networks, created together and always removed together.

Creation order: validate (the spec was parsed), resolve images, let capabilities
configure each node, check the segments' room, create the networks and volumes the nodes
need, create and start the containers in parallel, each followed at once by its segment
guard (networks.segment_guard, from a NET_ADMIN-only helper in that node's own network
namespace), start capabilities, route the LAN nodes to what a node routes for them (a
Thread border router's prefix), then wait for what the nodes' ``wait_for`` asks. A
failure at any point removes what was made and raises one line. Teardown runs in
reverse, never stops half-way (also on Ctrl-C), and reports every problem in one line at
the end.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from pytest_cirque.capabilities.runtime.base import LanRouter
from pytest_cirque.core import identity
from pytest_cirque.core.docker_backend import Backend, run_parallel
from pytest_cirque.core.errors import CirqueError, NodeError, SpecError, one_line
from pytest_cirque.homes import cleanup
from pytest_cirque.homes.networks import HomeNetworks
from pytest_cirque.homes.node import Node, NodeContext, home_volume_name
from pytest_cirque.radios.client.container import MediumContainer
from pytest_cirque.radios.relay.protocol import (
    STATIONS_VOLUME,
    THREAD_MAX_NODES,
    THREAD_MEDIUM,
    THREAD_VOLUME,
)
from pytest_cirque.spec import NETWORK_IPVLAN, SEGMENT_ROOM, HomeSpec, NodeSpec

#: How many containers are created, started or removed at once.
PARALLELISM = 8

#: The media a home can own, by kind: (phy of the link model, shared airtime budget,
#: the layer it runs: "wifi" for access points, stations and their control sockets,
#: "thread" for OpenThread's simulated 802.15.4 radios, "" for none).
MEDIA: dict[str, tuple[str, bool, str]] = {
    "wifi": ("802.11g", True, "wifi"),
    "lan": ("wired", False, ""),
    "thread": ("802.15.4", True, "thread"),
}


class Images:
    """What a home needs to know of images: the reference a spec's image name runs, and
    whether an image has a command of its own. The session service caches both."""

    def __init__(
        self, resolve: Callable[[str], str], needs_idle_command: Callable[[str], bool]
    ) -> None:
        self.resolve = resolve
        self.needs_idle_command = needs_idle_command


@dataclass(frozen=True)
class HomeContext:
    """What a home needs from the service that made it."""

    backend: Backend
    identity: identity.RunIdentity
    images: Images
    #: Told when the home is gone, so the service stops tracking it.
    on_destroyed: Callable[[Home], None]
    #: Told of problems met while undoing a failed creation (the creation error wins).
    on_cleanup_problems: Callable[[str, list[BaseException]], None]


class Home:
    """One virtual home. Made by ``Cirque.create_home``, which hands it a context and a
    validated spec and asks it to ``build`` itself; nothing sets its state from outside."""

    def __init__(self, context: HomeContext, name: str, spec: HomeSpec) -> None:
        self.context = context
        self.identity: identity.RunIdentity = context.identity
        self.backend: Backend = context.backend
        #: Globally unique: the io.cirque.home label and the stem of its objects' names.
        self.name = name
        self._spec = spec
        self.nodes: dict[str, Node] = {}
        self.networks = HomeNetworks(self.backend, self.identity, name)
        #: kind -> the home's running medium of that kind (see ``medium``).
        self.media: dict[str, MediumContainer] = {}
        #: Media the home has without a node bringing them (HomeSpec.media).
        self.declared_media: frozenset[str] = frozenset(spec.media)
        #: logical name -> the home's volume of that name (see ``volume``).
        self.volumes: dict[str, str] = {}
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
        return self.context.images.resolve(name)

    # ---- bring-up -------------------------------------------------------------------

    def build(self) -> Home:
        """Bring up the nodes of the home's spec. A failure half-way removes everything
        the home made and raises; on success the home is running."""
        if self.state != "creating":
            raise CirqueError(f"home {self.name} is {self.state}; build a home only once")
        try:
            self._build(list(self._spec.nodes.values()))
        except BaseException:
            try:
                self.destroy(force=True)
            except CirqueError as exc:
                self.context.on_cleanup_problems(self.name, [exc])
            raise
        self.state = "running"
        return self

    def _node_context(self) -> NodeContext:
        return NodeContext(
            backend=self.backend,
            identity=self.identity,
            home_id=self.name,
            resolve_image=self.resolve_image,
            medium=self.medium,
            rewire=lambda node: self._route_lans([node]),
        )

    def _build(self, specs: list[NodeSpec]) -> None:
        """Create and start nodes of these specs; on failure remove them and raise."""
        images = {spec.image for spec in specs}
        resolved = {image: self.resolve_image(image) for image in sorted(images)}
        idle = {
            image: self.context.images.needs_idle_command(ref) for image, ref in resolved.items()
        }
        context = self._node_context()
        new_nodes = [Node(context, spec, resolved[spec.image]) for spec in specs]
        for node in new_nodes:
            node.prepare()
        self._check_room(new_nodes)
        for logical in sorted({v for n in new_nodes for v in n.config.home_volumes}):
            self.volume(logical)  # before any container that mounts it
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
                node.guard_segment()

            self._raise_first(
                run_parallel([partial(create_and_start, n) for n in new_nodes], PARALLELISM),
                "creating nodes",
            )
            with_capabilities = [n for n in new_nodes if n.capabilities]
            self._raise_first(
                run_parallel([n.post_start for n in with_capabilities], PARALLELISM),
                "starting capabilities",
            )
            self._route_lans(new_nodes)
            waiting = [n for n in new_nodes if n.spec.wait_for is not None]
            self._raise_first(
                run_parallel([n.wait_for_spec for n in waiting], PARALLELISM),
                "waiting for what the nodes' wait_for asks",
            )
        except BaseException:
            errors = self._remove_nodes(new_nodes)
            if errors:
                self.context.on_cleanup_problems(self.name, errors)
            raise

    def _route_lans(self, nodes: list[Node]) -> None:
        """Give every node on the LAN network of a node that routes prefixes for it (a
        Thread border router) a route to them through that node's LAN address, for the
        pairs that involve ``nodes``. Each comes from a NET_ADMIN-only helper in the
        node's own network namespace (Node.run_netadmin): LAN nodes need no privilege."""
        present = list(self.nodes.values())
        routes: dict[str, list[str]] = {}
        for router in present:
            prefixes = [
                prefix
                for driver in router.drivers
                if isinstance(driver, LanRouter)
                for prefix in driver.lan_routes()
            ]
            if not prefixes or router.network is None or not router.ipv6:
                continue
            for peer in present:
                if (
                    peer is router
                    or peer.network is None
                    or peer.network.name != router.network.name
                    or (router not in nodes and peer not in nodes)
                ):
                    continue
                routes.setdefault(peer.name, []).extend(
                    f"ip -6 route replace {prefix} via {router.ipv6[0]}\n" for prefix in prefixes
                )
        self._raise_first(
            run_parallel(
                [
                    partial(self.nodes[name].run_netadmin, "".join(lines), output=False)
                    for name, lines in routes.items()
                ],
                PARALLELISM,
            ),
            "routing LAN nodes to a Thread border router",
        )

    def _check_room(self, new_nodes: list[Node]) -> None:
        """Refuse, before anything is created, more nodes on a LAN segment than its /24
        subnet holds (hybrid networks take the host LAN's addresses: not counted), or more
        Thread nodes than the Thread medium has radio ids."""
        count: dict[tuple[str, str], int] = {}
        for node in [*self.nodes.values(), *new_nodes]:
            segment = node.config.lan_segment
            if segment is None or node.spec.docker_network == NETWORK_IPVLAN:
                continue
            key = (node.spec.docker_network, segment)
            count[key] = count.get(key, 0) + 1
        radios = sum(
            1
            for node in [*self.nodes.values(), *new_nodes]
            if any(c.medium == THREAD_MEDIUM for c in node.capabilities)
        )
        if radios > THREAD_MAX_NODES:
            raise SpecError(
                f"home {self.name}: {radios} Thread nodes, and a Thread medium holds "
                f"{THREAD_MAX_NODES} radios; split them over several homes"
            )
        for (network, segment), nodes in count.items():
            if nodes > SEGMENT_ROOM:
                raise SpecError(
                    f"home {self.name}: {nodes} nodes on the {segment} segment of the "
                    f"{network} network, which holds {SEGMENT_ROOM} (a /24); split them "
                    "over several homes or networks"
                )

    def _raise_first(self, errors: list[BaseException], doing: str) -> None:
        if not errors:
            return
        first = errors[0]
        if isinstance(first, CirqueError) and len(errors) == 1:
            raise first
        raise NodeError(f"home {self.name}: {doing} failed: {one_line(errors)}") from first

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
            raise CirqueError(f"home {self.name}: removing node {name}: {one_line(errors)}")

    def _remove_nodes(self, nodes: list[Node]) -> list[BaseException]:
        errors: list[BaseException] = []

        def remove(node: Node) -> None:
            errors.extend(node.remove())

        try:
            errors += run_parallel([partial(remove, n) for n in nodes])
        finally:
            with self._lock:
                for node in nodes:
                    self.nodes.pop(node.name, None)
        return errors

    def medium(self, kind: str) -> MediumContainer:
        """The home's medium of ``kind`` ("wifi", "lan", "thread"), started on first use.
        Every node attached to one kind shares it; it is removed after the nodes."""
        if kind not in MEDIA:
            raise SpecError(f"home {self.name}: unknown medium {kind!r}; known: {', '.join(MEDIA)}")
        with self._media_lock:
            medium = self.media.get(kind)
            if medium is None:
                self._check_usable()
                phy, airtime, layer = MEDIA[kind]
                wifi, thread = layer == "wifi", layer == "thread"
                stations = self.volume(STATIONS_VOLUME) if wifi else None
                medium = MediumContainer(
                    self.backend,
                    name=identity.object_name(self.name, "_medium", kind),
                    # A Thread medium runs from the image that has OpenThread, which it
                    # hands to its nodes through the home's Thread volume.
                    image=self.resolve_image("thread" if thread else "medium"),
                    labels=self.identity.labels(self.name, identity.ROLE_MEDIUM),
                    phy=phy,
                    airtime=airtime,
                    wifi=wifi,
                    stations_volume=stations,
                    thread=thread,
                    thread_volume=self.volume(THREAD_VOLUME) if thread else None,
                )
                medium.start()
                if wifi or thread:
                    # Always on, so a failure can show what was on the air (save_capture).
                    medium.start_capture("air.pcap")
                self.media[kind] = medium
        return medium

    def volume(self, logical: str) -> str:
        """The home's volume of that logical name, created (labelled as the home's) on
        first use; removed with the home, after its nodes and media."""
        with self._lock:
            name = self.volumes.get(logical)
            if name is None:
                name = home_volume_name(self.name, logical)
                labels = self.identity.labels(self.name, identity.ROLE_MEDIUM)
                if self.backend.create_labelled_volume(name, labels) != labels:
                    raise NodeError(
                        f"home {self.name}: volume {name} exists and is not this home's; "
                        "remove it (docker volume rm) or run `cirque reap`"
                    )
                self.volumes[logical] = name
        return name

    def _remove_volumes(self) -> list[BaseException]:
        errors: list[BaseException] = []
        with self._lock:
            names, self.volumes = list(self.volumes.values()), {}
        for name in names:
            try:
                self.backend.remove_volume(name)
            except Exception as exc:
                errors.append(exc)
        return errors

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
                errors += self._remove_nodes(nodes)
            except KeyboardInterrupt:
                interrupted = True
            errors += self._remove_media()
            errors += self._remove_volumes()
            errors += self.networks.remove_all()
            if self._marker:
                try:
                    self.backend.remove_container(self._marker)
                except Exception as exc:
                    errors.append(exc)
            if interrupted or errors:
                # Something was cut short: sweep whatever still carries this home's label.
                try:
                    cleanup.remove_home(self.backend, self.name)
                except Exception as exc:
                    errors.append(exc)
        finally:
            self.state = "destroyed"
            self.context.on_destroyed(self)
        if interrupted:
            raise KeyboardInterrupt
        if errors:
            raise CirqueError(f"home {self.name}: teardown problems: {one_line(errors)}")
