"""Cleanup on real Docker: the watchdog after kill -9 of pytest, reaping dead runs, and
never touching what is not ours (live runs, other hosts, unlabelled objects, kept homes)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pytest_cirque.core import identity
from pytest_cirque.core.docker_backend import Backend, DockerObject
from pytest_cirque.core.waiting import wait_until
from pytest_cirque.homes import cleanup
from pytest_cirque.homes.session import Cirque

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")


def objects_of_run(service: Cirque, run_id: str) -> list[DockerObject]:
    return Backend(service.client).find([f"{identity.RUN}={run_id}"])


def homes_of(objects: list[DockerObject]) -> set[str]:
    return {o.labels[identity.HOME] for o in objects if identity.HOME in o.labels}


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 120) -> None:
    """Wait until ``predicate()`` holds; an error of the predicate ends the wait at once."""
    wait_until(predicate, what, timeout, ignore=())


@pytest.fixture
def service() -> Iterator[Cirque]:
    svc = Cirque(worker=WORKER)
    try:
        yield svc
    finally:
        svc.close()
        assert objects_of_run(svc, svc.run_id) == []


def remove_run(service: Cirque, run_id: str) -> None:
    for home in homes_of(objects_of_run(service, run_id)):
        cleanup.remove_home(service.client, home)


VICTIM = """
import threading
from pytest_cirque.homes.session import Cirque

def test_block():
    svc = Cirque(run_id="{run_id}")
    home = svc.create_home({{"x": {{}}, "y": {{"capabilities": ["LanAccess"]}}}}, name="doomed")
    kept = svc.create_home({{"k": {{}}}}, name="kept")
    kept.keep()
    with open({ready!r}, "w") as ready:
        ready.write(home.name + " " + kept.name)
    threading.Event().wait()  # blocks until killed
"""


def test_kill_9_of_pytest_leaves_nothing_and_a_concurrent_home_survives(
    service: Cirque, pytester: pytest.Pytester
) -> None:
    survivor = service.create_home({"a": {}}, name="survivor")
    run_id = identity.new_run_id()
    ready = pytester.path / "ready.txt"
    pytester.makepyfile(test_victim=VICTIM.format(run_id=run_id, ready=str(ready)))
    victim = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_victim.py"],
        cwd=pytester.path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: ready.exists() and ready.read_text().strip(), "the victim's homes")
        doomed, kept = ready.read_text().split()
        assert homes_of(objects_of_run(service, run_id)) == {doomed, kept}
        victim.kill()  # SIGKILL: no teardown runs
        victim.wait()
        killed = time.monotonic()
        wait_for(
            lambda: homes_of(objects_of_run(service, run_id)) == {kept},
            "the watchdog to remove the killed run's home",
            timeout=60,
        )
        print(f"watchdog removed the killed run's home in {time.monotonic() - killed:.2f} s")
        kept_objects = objects_of_run(service, run_id)
        assert {o.labels.get(identity.NODE) for o in kept_objects} >= {"k"}
        assert survivor["a"].state == "running"
        assert survivor["a"].exec("true").exit_code == 0
        assert survivor.name in homes_of(objects_of_run(service, service.run_id))
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
        remove_run(service, run_id)
    assert objects_of_run(service, run_id) == []


DEAD_RUN = """
import os, sys
from pytest_cirque.homes.session import Cirque
svc = Cirque(run_id=sys.argv[1])
svc.create_home({"x": {}, "y": {"capabilities": ["LanAccess"]}}, name="left")
svc.create_home({"k": {}}, name="kept").keep()
os._exit(0)  # no teardown
"""


def test_reap_removes_dead_runs_only(service: Cirque, tmp_path: Path) -> None:
    live = service.create_home({"a": {}}, name="live")
    dead_run = identity.new_run_id()
    script = tmp_path / "dead_run.py"
    script.write_text(textwrap.dedent(DEAD_RUN))
    environment = {**os.environ, "CIRQUE_NO_WATCHDOG": "1"}  # as if the watchdog died too
    subprocess.run([sys.executable, str(script), dead_run], check=True, env=environment)
    try:
        left = objects_of_run(service, dead_run)
        assert len(homes_of(left)) == 2
        kept_home = next(h for h in homes_of(left) if h.endswith("-kept"))
        # Objects we must never touch: another host's, and one with no owner label.
        foreign_owner = identity.RunIdentity(
            service.run_id, "gw9", identity.Owner("elsewhere", 1, "1")
        )
        foreign = service.backend.create_network(
            identity.object_name(service.identity.home_id("foreign"), "lan"),
            labels=foreign_owner.labels(service.identity.home_id("foreign"), "network"),
        )
        unowned = service.backend.create_network(
            identity.object_name(service.identity.home_id("unowned"), "lan"),
            labels={identity.RUN: service.run_id, identity.HOME: "unowned"},
        )
        try:
            removed = cleanup.reap(service.client)
            remaining = objects_of_run(service, dead_run)
            assert homes_of(remaining) == {kept_home}
            assert any(name.endswith("-left.x") for name in removed)
            assert live["a"].state == "running"
            ours = {o.id for o in objects_of_run(service, service.run_id)}
            assert {foreign, unowned} <= ours
            listing = cleanup.list_homes(service.client)
            assert listing[kept_home]["kept"] and not listing[kept_home]["alive"]
            assert listing[live.name]["alive"]
        finally:
            service.backend.remove_network(foreign)
            service.backend.remove_network(unowned)
        cleanup.remove_home(service.client, kept_home)
    finally:
        remove_run(service, dead_run)
    assert objects_of_run(service, dead_run) == []


def test_watchdog_exits_quietly_after_a_normal_teardown(tmp_path: Path) -> None:
    """A process that tears down properly leaves its watchdog nothing to do: it exits."""
    script = tmp_path / "clean_run.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            from pytest_cirque.homes import watchdog
            from pytest_cirque.homes.session import Cirque
            svc = Cirque(run_id=sys.argv[1])
            svc.create_home({"x": {}})
            svc.close()
            print(watchdog._started_for)
            """
        )
    )
    run_id = identity.new_run_id()
    out = subprocess.run(
        [sys.executable, str(script), run_id], check=True, capture_output=True, text=True
    ).stdout.strip()
    owner = identity.Owner.from_label(out)
    assert owner is not None

    def watchdog_gone() -> bool:
        found = subprocess.run(
            ["pgrep", "-f", f"pytest_cirque.homes.watchdog {owner.label}"], capture_output=True
        )
        return found.returncode != 0

    wait_for(watchdog_gone, "the watchdog to exit after its owner", timeout=60)
