"""The radio medium on real Docker: a relay in its helper container, three plain nodes
with wlan0 on it, real ping across it.

One medium and its nodes serve the whole module (attaching costs a helper container per
node); each test starts from ``reset`` (positions, carriers, no impairment, no capture).
Everything created carries this run's io.cirque.* labels and is removed at the end, and
the teardown checks that nothing with those labels is left.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from pytest_cirque.core import identity
from pytest_cirque.core.docker_backend import Backend
from pytest_cirque.core.errors import ImageError, NodeError, SpecError
from pytest_cirque.core.images import ensure_image
from pytest_cirque.core.waiting import wait_until
from pytest_cirque.radios.client.container import MediumContainer
from pytest_cirque.radios.relay.pcap import read_pcap

ADDRESSES = {"n1": "10.77.0.1", "n2": "10.77.0.2", "n3": "10.77.0.3"}
ICMP = 1


class Home:
    """The module's medium, its nodes (containers) and the labels they carry."""

    def __init__(
        self, client: Any, medium: MediumContainer, labels: dict[str, str], base_image: str
    ) -> None:
        self.client = client
        self.medium = medium
        self.labels = labels
        self.base_image = base_image
        self.nodes: dict[str, Any] = {}

    def add_node(self, name: str) -> Any:
        node = self.client.containers.run(
            self.base_image,
            name=f"{self.medium.name}-{name}",
            labels={**self.labels, identity.ROLE: identity.ROLE_NODE, identity.NODE: name},
            network_mode="none",
            detach=True,
        )
        self.nodes[name] = node
        return node

    def sh(self, node: str, command: str) -> tuple[int, str]:
        # Through the backend: docker-py's exec_run can lose a fast command's output. Its
        # stderr joins stdout in the shell, in the order written, as exec_run gave it.
        result = Backend(self.client).exec(
            self.nodes[node].id, ["sh", "-c", f"exec 2>&1; {command}"], node=node, timeout=None
        )
        return result.exit_code, result.stdout

    def ping(self, node: str, target: str, count: int, interval: float = 0.2) -> dict:
        """Run ping; returns transmitted, received and the rtt min/avg/max/mdev in ms."""
        _code, output = self.sh(
            node, f"ping -n -q -c {count} -i {interval} -W 1 {ADDRESSES[target]}"
        )
        counts = re.search(r"(\d+) packets transmitted, (\d+) received", output)
        assert counts, f"unexpected ping output from {node}: {output!r}"
        rtt = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", output)
        result = {"transmitted": int(counts[1]), "received": int(counts[2])}
        if rtt:
            result.update(zip(("min", "avg", "max", "mdev"), map(float, rtt.groups()), strict=True))
        return result

    def wait_for_ping(self, node: str, target: str) -> None:
        """Wait until one ping gets through (ARP may have to resolve again first)."""
        wait_until(
            lambda: self.ping(node, target, 1)["received"] == 1,
            f"a ping from {node} to {target} across medium {self.medium.name}",
            15,
            log=self.medium.log,
            ignore=(AssertionError,),  # ping's output not parsed yet: try again
        )


@pytest.fixture(scope="module")
def home() -> Iterator[Home]:
    client = docker.from_env()
    run = identity.RunIdentity.create()
    home_id = run.home_id("medium")
    labels = {
        identity.RUN: run.run_id,
        identity.HOME: home_id,
        identity.OWNER: run.owner.label,
        identity.WORKER: run.worker,
    }
    medium = MediumContainer(
        Backend(client),
        name=identity.object_name(home_id, "wifi"),
        image=ensure_image(client, "medium"),
        labels=labels,
    )
    home = Home(client, medium, labels, ensure_image(client, "base"))
    try:
        medium.start()
        for name, address in ADDRESSES.items():
            home.add_node(name)
            medium.attach(home.nodes[name], name, addresses=[f"{address}/24"])
        yield home
    finally:
        for node in home.nodes.values():
            with contextlib.suppress(docker.errors.NotFound):
                node.remove(force=True)
        medium.remove()
        selector = {"label": f"{identity.RUN}={run.run_id}"}
        left = [c.name for c in client.containers.list(all=True, filters=selector)]
        left += [v.name for v in client.volumes.list(filters=selector)]
        client.close()
        assert not left, f"objects left behind by the medium tests: {left}"


@pytest.fixture
def medium(home: Home) -> MediumContainer:
    home.medium.reset()
    return home.medium


def test_nodes_see_a_standard_interface(home: Home, medium: MediumContainer) -> None:
    code, output = home.sh("n1", "ip -o address show dev wlan0")
    assert code == 0
    assert f"inet {ADDRESSES['n1']}/24" in output
    code, output = home.sh("n1", "ip -o link show dev wlan0")
    assert "LOWER_UP" in output and "NO-CARRIER" not in output


def test_frames_cross_the_medium(home: Home, medium: MediumContainer) -> None:
    home.wait_for_ping("n1", "n2")
    assert home.ping("n1", "n2", 5)["received"] == 5
    assert home.ping("n3", "n1", 5)["received"] == 5
    counters = medium.status().endpoints["n2"].counters
    assert counters["received"] >= 5 and counters["sent"] >= 5


def test_loss_is_within_statistical_bounds(home: Home, medium: MediumContainer) -> None:
    home.wait_for_ping("n1", "n2")
    # Only the requests cross the lossy direction, so each ping survives with p = 0.7.
    medium.set_link("n1", "n2", loss=0.3, symmetric=False)
    result = home.ping("n1", "n2", 300, interval=0.01)
    # Binomial(300, 0.7): mean 210, standard deviation 7.9; five deviations either side.
    assert 170 <= result["received"] <= 250, result
    assert medium.status().drops["loss"] >= 300 - result["received"]


def test_configured_latency_shows_in_rtt(home: Home, medium: MediumContainer) -> None:
    home.wait_for_ping("n1", "n2")
    medium.set_link("n1", "n2", latency_ms=20)  # each direction
    medium.set_node("n2", latency_ms=5)  # what n2 sends: the replies
    result = home.ping("n1", "n2", 5)
    assert result["received"] == 5
    # The minimum: a loaded machine may delay replies, never speed them up. The upper
    # bounds only tell "configured once" from "applied twice" or "applied everywhere".
    assert 45.0 <= result["min"] < 80.0, result
    unaffected = home.ping("n1", "n3", 3)
    assert unaffected["min"] < 20.0, unaffected


def test_jitter_spreads_rtt(home: Home, medium: MediumContainer) -> None:
    home.wait_for_ping("n1", "n2")
    medium.set_link("n1", "n2", latency_ms=30, jitter_ms=8)
    result = home.ping("n1", "n2", 20)
    assert result["received"] == 20
    assert result["max"] - result["min"] > 8.0, result


def test_rate_limit_holds_the_sender_back(home: Home, medium: MediumContainer) -> None:
    home.wait_for_ping("n1", "n2")
    medium.set_node("n1", rate_kbit=800)  # 100 kB/s out of n1; the pings offer about 700
    _code, output = home.sh("n1", f"ping -n -q -s 1400 -i 0.002 -c 100 -W 3 {ADDRESSES['n2']}")
    rtt = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/", output)
    assert rtt and float(rtt[3]) > 50.0, output  # frames waited...
    status = medium.status()
    # ...in n1's own interface queue: the relay stopped reading n1 instead of dropping.
    assert status.endpoints["n1"].counters["held"] > 0
    assert "queue full" not in status.drops


def test_cutting_a_link_stops_traffic_until_restored(home: Home, medium: MediumContainer) -> None:
    home.wait_for_ping("n1", "n2")
    medium.cut("n1", "n2")
    assert home.ping("n1", "n2", 3)["received"] == 0
    assert home.ping("n1", "n3", 3)["received"] == 3
    assert medium.status().drops["cut"] >= 3
    medium.restore("n1", "n2")
    home.wait_for_ping("n1", "n2")


def test_moving_out_of_range_and_back(home: Home, medium: MediumContainer) -> None:
    home.wait_for_ping("n1", "n2")
    medium.move("n2", (1000.0, 0.0))
    status = medium.status()
    assert status.model["rssi_dbm"]["n1->n2"] < -92
    assert home.ping("n1", "n2", 3)["received"] == 0
    medium.move("n2", (20.0, 0.0))
    home.wait_for_ping("n1", "n2")


def test_carrier_off_shows_no_carrier(home: Home, medium: MediumContainer) -> None:
    medium.carrier("n2", False)
    _code, output = home.sh("n2", "ip -o link show dev wlan0")
    assert "NO-CARRIER" in output
    assert home.ping("n1", "n2", 2)["received"] == 0
    medium.carrier("n2", True)
    _code, output = home.sh("n2", "ip -o link show dev wlan0")
    assert "NO-CARRIER" not in output and "LOWER_UP" in output
    home.wait_for_ping("n1", "n2")


def test_capture_opens_in_tcpdump(home: Home, medium: MediumContainer, tmp_path: Path) -> None:
    home.wait_for_ping("n1", "n2")
    path = medium.start_capture("ping.pcap")
    assert home.ping("n1", "n2", 3)["received"] == 3
    assert medium.stop_capture() >= 6
    output = medium.read_capture(path, "icmp")
    requests = re.findall(r"IP 10\.77\.0\.1 > 10\.77\.0\.2: ICMP echo request", output)
    replies = re.findall(r"IP 10\.77\.0\.2 > 10\.77\.0\.1: ICMP echo reply", output)
    assert (len(requests), len(replies)) == (3, 3), output
    copy = medium.fetch(path, tmp_path / "ping.pcap")
    icmp = [f for _, f in read_pcap(copy) if f[12:14] == b"\x08\x00" and f[23] == ICMP]
    assert len(icmp) == 6


def test_station_seam_attaches_without_carrier(home: Home, medium: MediumContainer) -> None:
    """A WiFi station's wlan0 exists before association, with no carrier."""
    node = home.add_node("sta")
    medium.attach(node, "sta", carrier=False)
    _code, output = home.sh("sta", "ip -o link show dev wlan0")
    assert "NO-CARRIER" in output
    medium.detach("sta")
    code, _output = home.sh("sta", "ip link show dev wlan0")
    assert code != 0  # the interface went with the medium's descriptor


def test_a_removed_node_detaches_cleanly(home: Home, medium: MediumContainer) -> None:
    """The relay holds the node's namespace through the TAP descriptor, so the node's
    teardown detaches it; that must work after the container is already gone."""
    node = home.add_node("gone")
    medium.attach(node, "gone", addresses=["10.77.0.9/24"])
    node.remove(force=True)
    del home.nodes["gone"]
    medium.detach("gone")
    assert "gone" not in medium.status().endpoints
    home.wait_for_ping("n1", "n2")


def test_bad_requests_fail_in_one_line_and_leave_nothing(
    home: Home, medium: MediumContainer
) -> None:
    with pytest.raises(SpecError, match=r"^medium: no endpoint 'nobody' \(attached: n1, n2, n3"):
        medium.set_node("nobody", loss=0.5)
    with pytest.raises(SpecError, match="node 'n1': loss must be between 0 and 1"):
        medium.set_node("n1", loss=2)
    with pytest.raises(NodeError, match=r"cannot attach n2: .*already attached") as failure:
        medium.attach(home.nodes["n1"], "n2", ifname="wlan1")
    assert "\n" not in str(failure.value)
    code, _output = home.sh("n1", "ip link show dev wlan1")
    assert code != 0  # the refused interface did not stay behind
    with pytest.raises(SpecError, match="ifname 'wlan-far-too-long0' is not a Linux interface"):
        medium.attach(home.nodes["n1"], "n4", ifname="wlan-far-too-long0")
    with pytest.raises(NodeError, match=r"attaching 'n4': .*(No such container|not running)"):
        medium.attach("0123456789ab", "n4")
    assert "n4" not in medium.status().endpoints
    endpoint_helpers = [f"io.cirque.medium={medium.name}", "io.cirque.role=medium-endpoint"]
    helpers = home.client.containers.list(all=True, filters={"label": endpoint_helpers})
    assert helpers == []


def test_a_medium_that_cannot_start_leaves_nothing(home: Home) -> None:
    labels = {**home.labels, identity.HOME: f"{home.labels[identity.HOME]}-broken"}
    name = f"{home.medium.name}-broken"
    missing = "cirque/no-such-image:0"
    with pytest.raises(ImageError, match=r"^medium .*-broken: image 'cirque/no-such-image:0'"):
        MediumContainer(Backend(home.client), name=name, image=missing, labels=labels).start()
    with pytest.raises(SpecError, match=r"unknown phy '802\.11n'"):
        MediumContainer(
            Backend(home.client), name=name, image=missing, labels=labels, phy="802.11n"
        )
    selector = {"label": f"{identity.HOME}={labels[identity.HOME]}"}
    assert home.client.containers.list(all=True, filters=selector) == []
    assert home.client.volumes.list(filters=selector) == []


def test_a_lost_control_session_fails_once_then_reopens(medium: MediumContainer) -> None:
    medium.status()  # the session is open
    session = "ps -eo pid,args | grep '[r]elay.medium session' | awk '{print $1}'"
    container = medium.backend.client.containers.get(medium.container_id)
    result = container.exec_run(["sh", "-c", f"kill $({session})"])
    assert result.exit_code == 0, result.output
    with pytest.raises(NodeError, match=r"control request status got no answer"):
        medium.status()
    assert set(medium.status().endpoints) >= set(ADDRESSES)
