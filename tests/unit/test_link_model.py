"""The link model: signal, loss, latency, jitter, rates and airtime, changed at runtime."""

from __future__ import annotations

import math
import random

import pytest

from pytest_cirque.core.errors import SpecError
from pytest_cirque.radios.relay.link_model import (
    PHY_80211G,
    PHY_WIRED,
    Decision,
    LinkModel,
    TokenBucket,
)


def make_model(*names: str, seed: int = 1, **options: object) -> LinkModel:
    model = LinkModel(rng=random.Random(seed), **options)  # type: ignore[arg-type]
    for index, name in enumerate(names):
        model.add_node(name, (index * 5.0, 0.0))
    return model


def delivered_share(model: LinkModel, src: str, dst: str, frames: int = 20_000) -> float:
    delivered = sum(model.receive(src, dst, 100, now=i * 0.01).deliver for i in range(frames))
    return delivered / frames


def binomial_bounds(p: float, n: int, sigmas: float = 5.0) -> tuple[float, float]:
    spread = sigmas * math.sqrt(p * (1 - p) / n)
    return p - spread, p + spread


class TestSignal:
    def test_path_loss_at_one_metre_is_free_space_loss(self) -> None:
        model = make_model("a")
        model.add_node("b", (1.0, 0.0, 0.0))
        assert model.path_loss_db("a", "b") == pytest.approx(40.2, abs=0.1)

    def test_rssi_falls_with_distance_by_the_path_loss_exponent(self) -> None:
        model = make_model("a")
        model.add_node("b", (10.0, 0.0))
        near = model.rssi_dbm("a", "b")
        model.move("b", (100.0, 0.0))
        far = model.rssi_dbm("a", "b")
        assert near - far == pytest.approx(10 * PHY_80211G.path_loss_exponent)
        assert near == pytest.approx(-50.2, abs=0.1)

    def test_nearby_nodes_are_lossless(self) -> None:
        model = make_model("a", "b")
        assert model.radio_loss("a", "b") == 0.0
        assert delivered_share(model, "a", "b", 1000) == 1.0

    def test_far_nodes_are_out_of_range(self) -> None:
        model = make_model("a", "b")
        model.move("b", (1000.0, 0.0))
        assert not model.in_range("a", "b")
        assert model.receive("a", "b", 100, now=0.0) == Decision(False, reason="out of range")

    def test_at_the_sensitivity_half_the_frames_are_lost(self) -> None:
        model = make_model("a", "b")
        # Find the distance where RSSI equals the sensitivity, then check the loss there.
        exponent = (PHY_80211G.tx_power_dbm - PHY_80211G.sensitivity_dbm - 40.19) / 30
        model.move("b", (10**exponent, 0.0))
        assert model.radio_loss("a", "b") == pytest.approx(0.5, abs=0.01)
        low, high = binomial_bounds(0.5, 20_000)
        assert low <= delivered_share(model, "a", "b") <= high

    def test_moving_a_node_changes_its_links_at_once(self) -> None:
        model = make_model("a", "b")
        model.move("b", (1000.0, 0.0))
        assert not model.receive("a", "b", 100, now=0.0).deliver
        model.move("b", (3.0, 4.0))
        assert model.distance_m("a", "b") == 5.0
        assert model.receive("a", "b", 100, now=1.0).deliver


class TestImpairments:
    def test_link_loss_is_within_statistical_bounds(self) -> None:
        model = make_model("a", "b")
        model.set_link("a", "b", loss=0.3)
        low, high = binomial_bounds(0.7, 20_000)
        assert low <= delivered_share(model, "a", "b") <= high

    def test_node_and_link_losses_combine(self) -> None:
        model = make_model("a", "b")
        model.set_node("a", loss=0.2)
        model.set_link("a", "b", loss=0.5)
        assert model.loss_probability("a", "b") == pytest.approx(0.6)
        assert model.loss_probability("b", "a") == pytest.approx(0.5)

    def test_node_impairment_acts_on_what_the_node_sends(self) -> None:
        model = make_model("a", "b")
        model.set_node("a", latency_ms=30)
        assert model.receive("a", "b", 100, now=0.0).delay == pytest.approx(0.030)
        assert model.receive("b", "a", 100, now=0.0).delay == 0.0

    def test_link_latency_adds_to_node_latency(self) -> None:
        model = make_model("a", "b")
        model.set_node("a", latency_ms=5)
        model.set_link("a", "b", latency_ms=20)
        assert model.receive("a", "b", 100, now=0.0).delay == pytest.approx(0.025)

    def test_asymmetric_link_changes_one_direction(self) -> None:
        model = make_model("a", "b")
        model.set_link("a", "b", latency_ms=10, symmetric=False)
        assert model.receive("a", "b", 100, now=0.0).delay == pytest.approx(0.010)
        assert model.receive("b", "a", 100, now=0.0).delay == 0.0

    def test_jitter_spreads_delays_around_the_latency(self) -> None:
        model = make_model("a", "b")
        model.set_link("a", "b", latency_ms=20, jitter_ms=5)
        delays = [model.receive("a", "b", 100, now=i * 0.1).delay for i in range(2000)]
        assert min(delays) < 0.012 and max(delays) > 0.028
        assert sum(delays) / len(delays) == pytest.approx(0.020, abs=0.001)

    def test_jitter_never_reorders_frames(self) -> None:
        model = make_model("a", "b")
        model.set_link("a", "b", latency_ms=20, jitter_ms=5)
        arrivals = [
            i * 0.001 + model.receive("a", "b", 100, now=i * 0.001).delay for i in range(2000)
        ]
        assert arrivals == sorted(arrivals)

    def test_cut_link_drops_everything_until_restored(self) -> None:
        model = make_model("a", "b", "c")
        model.set_link("a", "b", cut=True)
        assert model.receive("a", "b", 100, now=0.0).reason == "cut"
        assert model.receive("b", "a", 100, now=0.0).reason == "cut"
        assert model.receive("a", "c", 100, now=0.0).deliver
        model.set_link("a", "b", cut=False)
        assert model.receive("a", "b", 100, now=0.0).deliver

    def test_cutting_keeps_the_links_other_parameters(self) -> None:
        model = make_model("a", "b")
        model.set_link("a", "b", latency_ms=7)
        model.set_link("a", "b", cut=True)
        model.set_link("a", "b", cut=False)
        assert model.receive("a", "b", 100, now=0.0).delay == pytest.approx(0.007)

    def test_removing_a_node_forgets_its_links(self) -> None:
        model = make_model("a", "b")
        model.set_link("a", "b", cut=True)
        model.remove_node("b")
        model.add_node("b")
        assert model.receive("a", "b", 100, now=0.0).deliver


class TestRates:
    def test_token_bucket_waits_for_tokens_and_drops_past_the_queue_limit(self) -> None:
        bucket = TokenBucket(rate=1000.0, burst=100.0)
        assert bucket.reserve(100, now=0.0, max_wait=1.0) == 0.0
        assert bucket.reserve(500, now=0.0, max_wait=1.0) == pytest.approx(0.5)
        assert bucket.reserve(1000, now=0.0, max_wait=1.0) is None
        assert bucket.reserve(100, now=1.0, max_wait=1.0) == 0.0

    @pytest.mark.parametrize("where", ["node", "link"])
    def test_rate_limit_holds_throughput_to_the_rate(self, where: str) -> None:
        model = make_model("a", "b", airtime=False, queue_ms=1000)
        if where == "node":
            model.set_node("a", rate_kbit=800)  # 100,000 bytes/s
        else:
            model.set_link("a", "b", rate_kbit=800)
        arrivals = []
        for i in range(300):  # offered: 1000 bytes every ms = 8 Mbit/s
            now = i * 0.001
            waited = model.transmit("a", 1000, now)
            if isinstance(waited, Decision):
                continue
            decision = model.receive("a", "b", 1000, now, waited)
            if decision.deliver:
                arrivals.append(now + decision.delay)
        assert len(arrivals) < 300  # the queue overflowed: the rest were dropped
        span = arrivals[-1] - arrivals[0]
        assert (len(arrivals) - 1) * 1000 / span == pytest.approx(100_000, rel=0.05)

    def test_full_queue_drops(self) -> None:
        model = make_model("a", "b", airtime=False, queue_ms=10)
        model.set_node("a", rate_kbit=80)  # 10 bytes per ms
        outcomes = [model.transmit("a", 1000, now=0.0) for _ in range(10)]
        assert any(isinstance(o, Decision) and o.reason == "queue full" for o in outcomes)

    def test_80211g_airtime_of_a_full_frame(self) -> None:
        model = make_model("a")
        assert model.airtime_s(1514) == pytest.approx(381.6e-6, rel=0.01)
        assert model.airtime_s(1514, broadcast=True) > 5 * model.airtime_s(1514)

    def test_airtime_budget_caps_the_medium_near_80211g_practical_rate(self) -> None:
        model = make_model("a", "b", "c", "d")
        sent = 0
        last_arrival = 0.0
        for i in range(4000):  # two senders, each offering 1514 bytes every 100 us
            now = i * 0.0001
            for src, dst in (("a", "b"), ("c", "d")):
                waited = model.transmit(src, 1514, now)
                if isinstance(waited, Decision):
                    continue
                sent += 1
                arrival = now + model.receive(src, dst, 1514, now, waited).delay
                last_arrival = max(last_arrival, arrival)
        payload_mbit = sent * 1500 * 8 / last_arrival / 1e6
        assert 25 <= payload_mbit <= 33

    def test_slower_phy_rate_lowers_capacity(self) -> None:
        model = make_model("a")
        fast = model.airtime_s(1514)
        model.set_medium(data_rate_mbps=11)
        assert model.airtime_s(1514) > 3 * fast
        model.set_medium(phy="802.11g")
        assert model.airtime_s(1514) == fast

    def test_airtime_can_be_switched_off(self) -> None:
        model = make_model("a", "b")
        model.set_medium(airtime=False)
        assert all(model.transmit("a", 1514, now=0.0) == 0.0 for _ in range(1000))


class TestBadInput:
    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"loss": 1.5}, "loss must be between 0 and 1"),
            ({"latency_ms": -1}, "latency_ms and jitter_ms must be >= 0"),
            ({"rate_kbit": 0}, "rate_kbit must be > 0"),
            ({"delay": 3}, "unknown field 'delay'"),
            ({"loss": "lots"}, "must be numbers"),
        ],
    )
    def test_bad_impairment_names_node_and_field(self, changes: dict, message: str) -> None:
        model = make_model("a", "b")
        with pytest.raises(SpecError, match=f"node 'a': .*{message}"):
            model.set_node("a", **changes)
        assert model.snapshot()["nodes"]["a"]["egress"]["loss"] == 0.0  # type: ignore[index]

    def test_unknown_node_lists_the_known_ones(self) -> None:
        model = make_model("a", "b")
        with pytest.raises(SpecError, match=r"no node 'x' on the medium \(nodes: a, b\)"):
            model.set_link("a", "x", cut=True)

    def test_bad_position(self) -> None:
        model = make_model("a")
        with pytest.raises(SpecError, match="node 'a': position must be 2 or 3 numbers"):
            model.move("a", (1.0,))

    def test_duplicate_node(self) -> None:
        model = make_model("a")
        with pytest.raises(SpecError, match="already on the medium"):
            model.add_node("a")

    def test_unknown_phy(self) -> None:
        with pytest.raises(SpecError, match=r"unknown phy '802\.11ax'; known: 802\.11g, 802"):
            make_model().set_medium(phy="802.11ax")

    def test_link_to_itself(self) -> None:
        with pytest.raises(SpecError, match="a link joins two different nodes"):
            make_model("a").set_link("a", "a", cut=True)


def test_wired_phy_has_no_range_and_only_configured_impairments() -> None:
    model = LinkModel(PHY_WIRED, airtime=False, rng=random.Random(2))
    model.add_node("a")
    model.add_node("b", (1e6, 0.0))
    assert model.radio_loss("a", "b") == 0.0
    assert model.receive("a", "b", 1514, now=0.0) == Decision(True, delay=0.0)
    model.set_node("a", latency_ms=40, loss=0.1)
    assert model.loss_probability("a", "b") == pytest.approx(0.1)


def test_snapshot_is_plain_data() -> None:
    import json

    model = make_model("a", "b")
    model.set_link("a", "b", cut=True)
    snapshot = json.loads(json.dumps(model.snapshot()))
    assert snapshot["links"]["a->b"]["cut"] is True
    assert snapshot["rssi_dbm"]["a->b"] == pytest.approx(-41.2, abs=0.1)
    assert snapshot["phy"]["name"] == "802.11g"
