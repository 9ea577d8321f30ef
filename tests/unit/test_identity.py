"""Owner identity, liveness, labels, names and subnet choice: pure logic, no Docker."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys

import pytest

from pytest_cirque.core import identity
from pytest_cirque.core.identity import Owner, RunIdentity
from pytest_cirque.homes.networks import candidate_subnets, subnet_pool, ula_subnet


def test_current_owner_is_alive_and_round_trips() -> None:
    owner = Owner.current()
    assert owner.pid == os.getpid() and owner.host == socket.gethostname()
    assert owner.is_alive()
    assert Owner.from_label(owner.label) == owner


def test_dead_process_is_not_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not Owner(socket.gethostname(), child.pid, "1").is_alive()


def test_reused_pid_is_a_different_owner() -> None:
    me = Owner.current()
    assert not Owner(me.host, me.pid, str(int(me.start_time) + 1)).is_alive()


def test_zombie_is_not_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped
        assert not Owner(socket.gethostname(), child.pid, "0").is_alive()
    finally:
        child.wait()


def test_other_hosts_owner_counts_as_alive() -> None:
    assert Owner("elsewhere.invalid", 1, "1").is_alive()


@pytest.mark.parametrize("label", ["", "host", "host/pid/1", "a/b"])
def test_malformed_owner_labels(label: str) -> None:
    assert Owner.from_label(label) is None


def test_host_with_slashes_round_trips() -> None:
    assert Owner.from_label("a/b/12/34") == Owner("a/b", 12, "34")


def test_names_and_labels_carry_run_and_worker() -> None:
    ids = RunIdentity.create("abcdef1234", "gw3")
    assert ids.run_id == "abcdef12"
    home = ids.home_id("my home!")
    assert home == "cirque-abcdef12-gw3-my-home"
    assert identity.object_name(home, "hub") == "cirque-abcdef12-gw3-my-home.hub"
    assert identity.object_name(home, "hub", "xvnc") == "cirque-abcdef12-gw3-my-home.hub.xvnc"
    assert ids.home_id("a.b") == "cirque-abcdef12-gw3-a-b"
    labels = ids.labels(home, identity.ROLE_NODE, "hub")
    assert labels == {
        identity.RUN: "abcdef12",
        identity.HOME: home,
        identity.OWNER: Owner.current().label,
        identity.WORKER: "gw3",
        identity.ROLE: "node",
        identity.NODE: "hub",
    }
    assert all(key.startswith("io.cirque.") for key in labels)


def test_worker_comes_from_xdist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw7")
    assert RunIdentity.create().worker == "gw7"
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    assert RunIdentity.create().worker == "main"
    assert RunIdentity.create().run_id != RunIdentity.create().run_id


def test_candidate_subnets_skip_used_ones_and_spread() -> None:
    pool = ipaddress.IPv4Network("10.213.0.0/22")
    used = ["10.213.1.0/24", "172.17.0.0/16", "fd00::/64", "10.213.2.128/25", "garbage"]
    free = candidate_subnets(pool, used, "seed")
    assert sorted(map(str, free)) == ["10.213.0.0/24", "10.213.3.0/24"]
    starts = {str(candidate_subnets(pool, [], f"seed{i}")[0]) for i in range(40)}
    assert len(starts) == 4  # different homes start at different places
    assert candidate_subnets(pool, ["10.0.0.0/8"], "x") == []


def test_subnet_pool_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIRQUE_SUBNET_POOL", "10.99.0.0/20")
    assert str(subnet_pool()) == "10.99.0.0/20"
    monkeypatch.setenv("CIRQUE_SUBNET_POOL", "10.99.0.0/25")
    with pytest.raises(Exception, match="CIRQUE_SUBNET_POOL"):
        subnet_pool()
    monkeypatch.setenv("CIRQUE_SUBNET_POOL", "not-a-net")
    with pytest.raises(Exception, match="not an IPv4 network"):
        subnet_pool()


def test_ula_subnet_is_unique_local() -> None:
    net = ipaddress.IPv6Network(ula_subnet("home-a"))
    assert net.prefixlen == 64 and net.subnet_of(ipaddress.IPv6Network("fd00::/8"))
    assert ula_subnet("home-a") != ula_subnet("home-b")


def test_every_label_key_is_spelled_once_under_the_prefix() -> None:
    keys = [
        value
        for name, value in vars(identity).items()
        if name.isupper() and isinstance(value, str) and value.startswith(identity.LABEL_PREFIX)
    ]
    assert len(keys) == len(set(keys)), "two constants spell the same label key"
    assert {identity.IMAGE, identity.RECIPE, identity.SIDECAR, identity.MEDIUM} <= set(keys)
    assert set(identity.OWNERSHIP) <= set(RunIdentity.create().labels("h", "node"))


def test_broker_labels_name_an_owner_that_cleanup_can_judge() -> None:
    """The owner label is "host/pid/start": a process-made label in any other form would
    never be reaped (from_label rejects it)."""
    run = RunIdentity.create("brkr")
    labels = run.labels(run.home_id("device-models"), identity.ROLE_MQTT_BROKER)
    assert Owner.from_label(labels[identity.OWNER]) == Owner.current()
    assert Owner.from_label(f"{socket.gethostname()}:{os.getpid()}") is None
