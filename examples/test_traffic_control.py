"""TrafficControl: a worse network on a node's LAN interface.

``loss`` is the percent of round trips through the node that are lost; ``latencyMs``,
``jitterMs`` and ``rateKbit`` act on what the node sends. All of them work on any kernel:
the node's LAN runs through the home's userspace LAN medium, which applies them.
"""

import re
import statistics

import pytest

PINGS = 60


def received(node, address, count=PINGS) -> int:
    """How many of ``count`` pings got an answer."""
    out = node.exec(["ping", "-n", "-q", "-c", str(count), "-i", "0.05", "-W", "1", address])
    summary = next(line for line in out.stdout.splitlines() if "received" in line)
    return int(summary.split(",")[1].split()[0])


@pytest.mark.home(
    {
        "lossy": {"capabilities": ["LanAccess", {"TrafficControl": {"loss": 50}}]},
        "peer": {"capabilities": ["LanAccess"]},
    }
)
def test_half_the_round_trips_are_lost(home):
    got = received(home["peer"], home["lossy"].ip)
    # 60 round trips at 50 % loss: far from none and far from all (binomial, 1e-8 tails).
    assert 8 <= got <= 52, f"{got}/{PINGS} answered"


@pytest.mark.home({"cut": {}, "peer": {}})
@pytest.mark.capabilities("LanAccess")
@pytest.mark.capabilities({"TrafficControl": {"loss": 100}}, nodes=["cut"])
def test_full_loss_cuts_the_node_off(home):
    assert received(home["peer"], home["cut"].ip, count=5) == 0
    assert received(home["cut"], home["peer"].ip, count=5) == 0


@pytest.mark.home(
    {
        "far": {"capabilities": ["LanAccess", {"TrafficControl": {"latencyMs": 50}}]},
        "peer": {"capabilities": ["LanAccess"]},
    }
)
def test_latency_shows_once_in_a_round_trip(home):
    far, peer = home["far"], home["peer"]
    far.exec(["ping", "-c", "1", "-W", "2", peer.ip])  # resolve the address first
    out = far.exec(["ping", "-n", "-c", "10", "-i", "0.2", peer.ip]).stdout
    rtt = statistics.median(float(t) for t in re.findall(r"time=([\d.]+) ms", out))
    assert 45 <= rtt <= 80, f"median round trip {rtt} ms"


@pytest.mark.home({"slow": {"capabilities": [{"TrafficControl": {"rateKbit": 256}}]}})
def test_the_lan_interface_keeps_its_name_and_runs_through_the_medium(home):
    link = home["slow"].exec("ip -d link show dev eth0", check=True).stdout
    assert "tun type tap" in link, link  # the medium's TAP, under the LAN interface's name
    assert home["slow"].ip in home["slow"].exec("ip -4 address show dev eth0").stdout
