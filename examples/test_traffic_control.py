"""TrafficControl: a worse network on a node's LAN interface.

``loss`` is the percent of round trips through the node that are lost; ``rateKbit``
shapes what the node sends. Both work on any kernel (iptables statistic and tbf).
"""

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


@pytest.mark.home({"slow": {"capabilities": [{"TrafficControl": {"rateKbit": 256}}]}})
def test_rate_is_shaped_with_tbf(home):
    qdisc = home["slow"].exec("tc qdisc show dev eth0", check=True).stdout
    assert "tbf" in qdisc and "256Kbit" in qdisc, qdisc
