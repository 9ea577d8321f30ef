"""Host things a run owns: its run folder, temporary folders in it, and the processes it
started, ended and removed once the owner is gone, and never another owner's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pytest_cirque.core import ownership
from pytest_cirque.core.identity import Owner, process_start_time


@pytest.fixture(autouse=True)
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(ownership, "base_dir", lambda: tmp_path)
    return tmp_path


def dead_owner() -> Owner:
    """An owner whose process has exited: a child that ran and was reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    owner = Owner(Owner.current().host, child.pid, process_start_time(child.pid) or "1")
    child.wait()
    return owner


def sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])


def test_a_dead_runs_processes_are_ended_and_its_folders_removed(private_tmp: Path) -> None:
    owner = dead_owner()
    scratch = ownership.temp_dir("cirque-air-", owner)
    (scratch / "capture.pcap").write_bytes(b"\xd4\xc3\xb2\xa1")
    broker = sleeper()
    try:
        ownership.record_process(broker.pid, owner)
        done = ownership.reap()
        assert broker.wait(timeout=30) != 0, "the dead run's broker was ended"
    finally:
        broker.kill()
    assert f"process {broker.pid}" in done
    assert not ownership.run_folder(owner, create=False).exists()
    assert not scratch.exists()


def test_a_live_runs_things_are_left_alone(private_tmp: Path) -> None:
    mine = Owner.current()
    scratch = ownership.temp_dir("cirque-mqtt-", mine)
    broker = sleeper()
    try:
        ownership.record_process(broker.pid, mine)
        assert ownership.reap() == []
        assert broker.poll() is None and scratch.is_dir()
    finally:
        broker.kill()
        broker.wait()
        ownership.release(mine)


def test_a_recycled_pid_is_not_ended(private_tmp: Path) -> None:
    """A recorded pid now held by another process (its start time differs) survives."""
    owner = dead_owner()
    bystander = sleeper()
    try:
        folder = ownership.run_folder(owner) / ownership.PROCESSES
        folder.mkdir()
        (folder / str(bystander.pid)).write_text("1")  # started at another time
        ownership.reap()
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_folders_that_are_not_run_folders_are_never_touched(private_tmp: Path) -> None:
    other = private_tmp / "cirque-run.not-an-owner"
    other.mkdir()
    unrelated = private_tmp / "somebody-else"
    unrelated.mkdir()
    ownership.reap()
    assert other.is_dir() and unrelated.is_dir()
