"""Thread in tests: form a network, join a node, wait for a role, ping over the mesh, and
see who hears whom.

Every helper drives the node's own OpenThread through ``ot-ctl``, exactly as device
software and the original Cirque's tests do, so what a test sees is what a device sees.
Each wait has a deadline; a failed one names the node, the step and what it waited for,
and carries each concerned node's ``ot-ctl state``, neighbour table and daemon log
(``ProvisioningError.log``) and a capture of the air (``.capture``, 802.15.4 pcap).

Roles, as ``ot-ctl state`` prints them: ``disabled`` (Thread not started), ``detached``
(looking for a network), ``child``, ``router`` and ``leader``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pytest_cirque.capabilities.model.thread import Thread
from pytest_cirque.capabilities.runtime.thread import ThreadDriver
from pytest_cirque.core import ownership
from pytest_cirque.core.errors import CirqueError, NodeError, ProvisioningError, WaitTimeout
from pytest_cirque.core.waiting import wait_until
from pytest_cirque.homes.ping import PingResult
from pytest_cirque.homes.ping import ping as node_ping
from pytest_cirque.radios.relay.protocol import THREAD_INTERFACE, THREAD_MEDIUM, ThreadDataset
from pytest_cirque.radios.relay.thread import dataset_tlvs

if TYPE_CHECKING:
    from pytest_cirque.homes.home import Home
    from pytest_cirque.homes.node import Node

#: Roles of a node that is part of a network.
ATTACHED = ("leader", "router", "child")
#: A lone node becomes leader within seconds; a first attach takes a few more.
FORM_TIMEOUT_S = 60.0
JOIN_TIMEOUT_S = 60.0
#: Seconds past ``routerselectionjitter`` that ``settle`` gives a child's upgrade to router
#: (an address solicit to the leader, its answer, links to the routers around).
UPGRADE_GRACE_S = 5.0
#: How long ``ping`` waits for a first echo: longer than OpenThread's 15 s between a
#: failed address query and the next.
REACH_TIMEOUT_S = 30.0
#: The leader weight of the node ``form`` starts first (OpenThread's default is 64).
FIRST_LEADER_WEIGHT = 96
#: Lines of each node's daemon log attached to a failure.
DAEMON_LOG_TAIL = 30


# --- one node ---------------------------------------------------------------------------


def driver_of(node: Node) -> ThreadDriver:
    """The node's Thread driver; NodeError when the node has no Thread capability."""
    driver = node.driver(Thread)
    if not isinstance(driver, ThreadDriver):
        raise NodeError(f"node {node.name} has no Thread radio; give it the Thread capability")
    return driver


def ctl(node: Node, *args: str, record: bool = True) -> list[str]:
    """Run ``ot-ctl ARGS`` in the node; its answer's lines without the closing ``Done``.
    NodeError with OpenThread's own words when it answers an error. The command is kept in
    the node's history for a failure report unless ``record=False``."""
    output = driver_of(node).ctl(node, *args, record=record)
    return [line for line in output.splitlines() if line.strip() and line.strip() != "Done"]


def _read(node: Node, *args: str) -> list[str]:
    """A question the helpers ask (a role, a table): kept out of the node's history, which
    shows what the test and the node's software did."""
    return ctl(node, *args, record=False)


def state(node: Node) -> str:
    """The node's role: disabled, detached, child, router or leader."""
    answer = _read(node, "state")
    return answer[0].strip() if answer else ""


def mesh_address(node: Node) -> str:
    """The node's mesh-local EID: its stable IPv6 address inside the Thread network."""
    return _read(node, "ipaddr", "mleid")[0].strip()


def extended_address(node: Node) -> str:
    """The node's 802.15.4 extended address (16 hex digits), as neighbour tables show it."""
    return _read(node, "extaddr")[0].strip()


def parent(node: Node) -> str | None:
    """A child's parent, by extended address (as ``extended_address`` gives it); None when
    the node is no child."""
    if state(node) != "child":
        return None
    # "Ext Addr: 1eb9ba8a6522636b" opens ot-ctl's answer.
    first = _read(node, "parent")[0]
    return first.split(":", 1)[1].strip() if first.startswith("Ext Addr:") else None


def table(node: Node, *command: str) -> list[dict[str, str]]:
    """An ot-ctl table (``neighbor table``, ``router table``, ``child table``) as one dict
    per row, keyed by the header's column names."""
    rows = [line for line in _read(node, *command) if line.lstrip().startswith("|")]
    if not rows:
        return []
    header = [cell.strip() for cell in rows[0].strip().strip("|").split("|")]
    body = [row for row in rows[1:] if not set(row.strip()) <= set("|+-= ")]
    return [
        dict(
            zip(header, (cell.strip() for cell in row.strip().strip("|").split("|")), strict=False)
        )
        for row in body
    ]


def report(node: Node) -> str:
    """What a person debugging Thread looks at first: the node's role, its neighbour
    table and the end of its daemon's log."""
    lines = [f"--- thread node {node.name} ---"]
    for command in (("state",), ("neighbor", "table")):
        try:
            answer = "\n".join(_read(node, *command)) or "(none)"
        except CirqueError as exc:
            answer = f"(unavailable: {exc})"
        lines.append(f"ot-ctl {' '.join(command)}: {answer}")
    try:
        log = driver_of(node).daemon_log().strip().splitlines()[-DAEMON_LOG_TAIL:]
    except CirqueError:
        log = []
    if log:
        lines += ["ot-daemon log:", *log]
    return "\n".join(lines)


def failure(nodes: Iterable[Node], step: str, message: str) -> ProvisioningError:
    """The error of a failed Thread step: every node's report and the air so far."""
    nodes = list(nodes)
    saved = None
    if nodes:
        try:
            # In the run's folder: gone with the run unless a failure report keeps it.
            target = ownership.temp_dir("cirque-thread-air-") / f"{step}.pcap"
            saved = nodes[0].medium(THREAD_MEDIUM).save_capture(target)
        except (CirqueError, OSError):
            saved = None
    log = "\n".join(report(node) for node in nodes)
    return ProvisioningError(message, step=step, log=log, capture=saved)


def wait_for_state(
    node: Node,
    states: str | Sequence[str] = ATTACHED,
    timeout: float = JOIN_TIMEOUT_S,
    *,
    others: Iterable[Node] = (),
) -> str:
    """Wait until the node's role is one of ``states``; returns the role. On timeout a
    ProvisioningError carries this node's report (and those of ``others``)."""
    wanted = (states,) if isinstance(states, str) else tuple(states)

    def reached() -> str | None:
        role = state(node)
        return role if role in wanted else None

    try:
        return wait_until(reached, f"node {node.name} to be {' or '.join(wanted)}", timeout)
    except WaitTimeout:
        raise failure(
            [node, *others],
            "state",
            f"node {node.name}: not {' or '.join(wanted)} within {timeout:g} s "
            f"(it is {state(node) or 'silent'})",
        ) from None


def start(node: Node) -> None:
    """``ot-ctl ifconfig up`` and ``ot-ctl thread start``: the node looks for its network."""
    ctl(node, "ifconfig", "up")
    ctl(node, "thread", "start")


def join(
    node: Node,
    dataset: ThreadDataset | str | None = None,
    timeout: float = JOIN_TIMEOUT_S,
    states: Sequence[str] = ("router", "child"),
) -> str:
    """Give the node a dataset (a ThreadDataset or its TLVs in hex; None keeps the one it
    has), start Thread and wait until it is attached to an existing network as router or
    child, and (see ``settle``) until a router it is about to become. Returns its role."""
    if dataset is not None:
        tlvs = dataset if isinstance(dataset, str) else dataset_tlvs(dataset)
        ctl(node, "dataset", "set", "active", tlvs)
    start(node)
    role = wait_for_state(node, states, timeout)
    if role == "child" and "router" in states:
        settle([node])
        role = state(node)
    return role


def upgrading(node: Node) -> bool:
    """Whether OpenThread is about to make this child a router: a router-eligible full
    device whose partition has fewer routers than its upgrade threshold asks the leader
    for a router ID within ``routerselectionjitter`` seconds of attaching."""
    return _below_threshold(node, _upgrade_threshold(node))


def _upgrade_threshold(node: Node) -> int | None:
    """The node's ``routerupgradethreshold`` if it may become a router (a full device with
    ``routereligible`` on), else None."""
    if "d" not in "".join(_read(node, "mode")):
        return None
    if "".join(_read(node, "routereligible")).strip() != "Enabled":
        return None
    return int(_read(node, "routerupgradethreshold")[0])


def _below_threshold(node: Node, threshold: int | None) -> bool:
    """A child that may become a router, in a partition with fewer routers than
    ``threshold``."""
    if threshold is None or state(node) != "child":
        return False
    return len(" ".join(_read(node, "router", "list")).split()) < threshold


def settle(nodes: Sequence[Node]) -> None:
    """Wait until no node is a child about to become a router (see ``upgrading``), up to
    the longest ``routerselectionjitter`` of them plus UPGRADE_GRACE_S; a child that
    OpenThread has not made a router by then stays a child.

    The helpers that attach nodes call it, so that the role they return is the one the
    node keeps: while a child becomes a router its traffic stalls for a second or two
    (a new short address, new links), and pings sent then are lost."""
    nodes = list(nodes)
    if not nodes:
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(nodes))) as pool:
        # What does not change while Thread runs is asked once; each poll asks only the
        # role, and a child also its partition's routers.
        thresholds = list(pool.map(_upgrade_threshold, nodes))
        eligible = [
            node for node, threshold in zip(nodes, thresholds, strict=True) if threshold is not None
        ]
        if not eligible:
            return
        jitters = pool.map(lambda node: int(_read(node, "routerselectionjitter")[0]), eligible)
        longest = max(jitters)

        def none_upgrading() -> bool:
            return not any(pool.map(_below_threshold, nodes, thresholds))

        with contextlib.suppress(WaitTimeout):
            wait_until(
                none_upgrading,
                f"nodes {', '.join(node.name for node in nodes)} to end their upgrades to router",
                longest + UPGRADE_GRACE_S,
            )


# --- a network --------------------------------------------------------------------------


@dataclass
class ThreadNetwork:
    """The Thread nodes of a home, as one network: its dataset, its leader, its roles."""

    home: Home
    dataset: ThreadDataset
    nodes: list[Node] = field(default_factory=list)

    def __getitem__(self, name: str) -> Node:
        return next(node for node in self.nodes if node.name == name)

    def roles(self) -> dict[str, str]:
        """Each node's role now, by node name."""
        return {node.name: state(node) for node in self.nodes}

    def with_role(self, *roles: str) -> list[Node]:
        """The nodes whose role is one of ``roles`` now."""
        now = self.roles()
        return [node for node in self.nodes if now[node.name] in roles]

    @property
    def leader(self) -> Node:
        """The leader of the network (NodeError when no node leads)."""
        leaders = self.with_role("leader")
        if not leaders:
            raise NodeError(
                f"home {self.home.name}: no Thread node is leader ({self.roles()}); "
                "form the network first (thread.form or @pytest.mark.thread(form=True))"
            )
        return leaders[0]

    @property
    def routers(self) -> list[Node]:
        """Leader and routers: the nodes that route."""
        return self.with_role("leader", "router")

    @property
    def children(self) -> list[Node]:
        return self.with_role("child")

    def form(self, timeout: float = FORM_TIMEOUT_S) -> ThreadNetwork:
        """Form the network of these nodes (see ``form``)."""
        form(self.nodes, timeout=timeout)
        return self

    def topology(self) -> str:
        """The network as a person reads it (see ``topology``)."""
        return topology(self.nodes, self.dataset)


def thread_nodes(home: Home) -> list[Node]:
    """The home's nodes with a Thread radio, in the spec's order."""
    return [node for node in list(home.nodes.values()) if node.driver(Thread) is not None]


def network(home: Home) -> ThreadNetwork:
    """The home's Thread network: the home's dataset and its Thread nodes."""
    nodes = thread_nodes(home)
    if not nodes:
        raise NodeError(f"home {home.name} has no Thread node; give a node the Thread capability")
    # The home's dataset, with what the first node sets itself (a marker's channel, say).
    home_dataset = home.medium(THREAD_MEDIUM).as_thread().dataset()
    return ThreadNetwork(home, driver_of(nodes[0]).capability.dataset_for(home_dataset), nodes)


def form(
    nodes: Sequence[Node],
    dataset: ThreadDataset | None = None,
    timeout: float = FORM_TIMEOUT_S,
) -> list[str]:
    """Form one network of ``nodes`` and return their roles, in order, once every node is
    attached and all are one partition.

    The first node starts alone and becomes leader, with a raised leader weight so that
    the partition it leads wins a merge; then the others start together. A node out of
    everyone's reach at first leads a partition of its own for a while, until it hears
    the rest and the partitions merge: the wait covers that. ``dataset`` (if given) is
    given to every node first; otherwise each keeps the one it was commissioned with."""
    if not nodes:
        raise NodeError("thread.form: give at least one node")
    first, others = nodes[0], list(nodes[1:])
    if dataset is not None:
        for node in nodes:
            ctl(node, "dataset", "set", "active", dataset_tlvs(dataset))
    ctl(first, "leaderweight", str(FIRST_LEADER_WEIGHT))
    start(first)
    wait_for_state(first, "leader", timeout, others=others)
    for node in others:
        start(node)
    what = f"nodes {', '.join(node.name for node in nodes)} to be one Thread partition"
    try:
        wait_until(lambda: one_partition(nodes), what, timeout)
        settle(nodes)
        return wait_until(lambda: one_partition(nodes), what, timeout)
    except WaitTimeout:
        raise failure(nodes, "form", f"{what}: not within {timeout:g} s") from None


def roles_and_partitions(nodes: Sequence[Node]) -> list[tuple[str, str]]:
    """Each node's role and partition ID, in order ("" where a node does not answer)."""

    def role_and_partition(node: Node) -> tuple[str, str]:
        answer = _read(node, "state") + _read(node, "partitionid")
        return (answer[0].strip(), answer[1].strip()) if len(answer) == 2 else ("", "")

    # Asking is mostly waiting for the node: one thread per node keeps a poll short.
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(nodes))) as pool:
        return list(pool.map(role_and_partition, nodes))


def one_partition(
    nodes: Sequence[Node], seen: Sequence[tuple[str, str]] | None = None
) -> list[str] | None:
    """The nodes' roles when all are attached to one partition with one leader, else None;
    from ``seen`` (roles_and_partitions) when given, else asked now."""
    if seen is None:
        seen = roles_and_partitions(nodes)
    roles = [role for role, _ in seen]
    partitions = {partition for role, partition in seen if role in ATTACHED}
    attached = all(role in ATTACHED for role in roles)
    return roles if attached and len(partitions) == 1 and roles.count("leader") == 1 else None


def ping(
    source: Node,
    target: Node | str,
    count: int = 3,
    max_loss: float = 0.0,
    interval: float = 0.5,
    reach_timeout: float = REACH_TIMEOUT_S,
) -> PingResult:
    """ping6 from ``source`` over its wpan0 to ``target`` (a node, whose mesh-local EID is
    used, or an IPv6 address), and judge the loss of ``count`` echoes on a path that works.

    First it waits up to ``reach_timeout`` seconds (0: no wait) for one echo to come back,
    as device software retries: a node that has just attached or become a router may have
    no route yet, and OpenThread asks again for an address whose query went unanswered
    only 15 s later. ProvisioningError, with both nodes' reports, when no echo comes back
    or more than ``max_loss`` (0..1) of the counted echoes is lost."""
    address = target if isinstance(target, str) else mesh_address(target)
    involved = [source] if isinstance(target, str) else [source, target]
    if reach_timeout > 0:
        _reach(source, address, reach_timeout, involved)
    outcome = node_ping(source, address, count, interval, interface=THREAD_INTERFACE)
    if outcome.loss > max_loss:
        raise failure(
            involved,
            "ping",
            f"node {source.name}: {outcome.received}/{outcome.sent} replies from {address} "
            f"over {THREAD_INTERFACE} (loss {outcome.loss:.0%} > {max_loss:.0%})",
        )
    return outcome


def _reach(source: Node, address: str, timeout: float, involved: list[Node]) -> None:
    """Wait until one echo from ``address`` comes back to ``source`` over wpan0."""

    def answered() -> bool:
        return node_ping(source, address, 1, interface=THREAD_INTERFACE).received == 1

    try:
        wait_until(answered, f"an echo from {address} to node {source.name}", timeout)
    except WaitTimeout:
        raise failure(
            involved,
            "ping",
            f"node {source.name}: no echo from {address} over {THREAD_INTERFACE} "
            f"within {timeout:g} s",
        ) from None


def routers(home: Home) -> list[Node]:
    """The home's Thread nodes that route now (leader and routers)."""
    return network(home).routers


def topology(nodes: Sequence[Node], dataset: ThreadDataset | None = None) -> str:
    """Who is what and who hears whom, one line per node: role, RLOC16, partition, parent
    (for a child) and neighbours, by node name where the neighbour is one of ``nodes``."""
    names: dict[str, str] = {}
    rows: list[tuple[Node, str, str, str]] = []
    for node in nodes:
        try:
            names[extended_address(node)] = node.name
            rows.append(
                (node, state(node), _read(node, "rloc16")[0], _read(node, "partitionid")[0])
            )
        except (CirqueError, IndexError) as exc:
            rows.append((node, f"(unavailable: {exc})", "", ""))
    lines = []
    if dataset is not None:
        lines.append(
            f"thread network {dataset.network_name!r}: channel {dataset.channel}, "
            f"PAN ID 0x{dataset.panid:04x}, extended PAN ID {dataset.extended_panid}"
        )
    for node, role, rloc16, partition in rows:
        line = f"  {node.name}: {role}"
        if rloc16:
            line += f", rloc16 0x{rloc16.removeprefix('0x')}, partition {partition}"
            try:
                neighbours = table(node, "neighbor", "table")
            except CirqueError:
                neighbours = []
            # The Role column holds R (a router) or C (a child).
            heard = [
                f"{names.get(row.get('Extended MAC', ''), row.get('Extended MAC', '?'))}"
                f" ({'router' if row.get('Role') == 'R' else 'child'})"
                for row in neighbours
            ]
            line += f"; neighbours: {', '.join(heard) or 'none'}"
            if role == "child":
                with contextlib.suppress(CirqueError, IndexError):
                    address = parent(node) or "?"
                    line += f"; parent: {names.get(address, address)}"
        lines.append(line)
    return "\n".join(lines)
