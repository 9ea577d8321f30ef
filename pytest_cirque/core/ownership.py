"""What a run owns on the host besides Docker objects: temporary folders and processes.

Docker objects carry their owner in a label; host things carry it in a folder. Each
owner process gets one run folder in the system's temporary directory, named after its
owner (host, pid and process start time, so a recycled pid is another owner). Temporary
folders of the run are made inside it, and every process the run starts on the host (a
broker) is recorded there with its start time. A normal close removes the folder; when
the owner dies unannounced, the watchdog (and, failing that, the next reap) ends the
recorded processes, only while pid and start time still match, and removes the folder.

Stdlib only, and nothing here touches what another owner made.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import tempfile
from pathlib import Path

from pytest_cirque.core.errors import WaitTimeout
from pytest_cirque.core.identity import Owner, process_start_time
from pytest_cirque.core.waiting import wait_until

#: Name of a run folder: PREFIX + owner label with "/" as ".".
PREFIX = "cirque-run."
PROCESSES = "processes"
#: How long a recorded process is given to end after SIGTERM before SIGKILL.
TERM_GRACE_S = 5.0


def _folder_name(owner: Owner) -> str:
    return PREFIX + f"{owner.host}.{owner.pid}.{owner.start_time}".replace("/", "_")


def _owner_of(name: str) -> Owner | None:
    """The owner a run folder's name stands for (None for anything else)."""
    if not name.startswith(PREFIX):
        return None
    parts = name[len(PREFIX) :].rsplit(".", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return Owner(parts[0], int(parts[1]), parts[2])


def base_dir() -> Path:
    return Path(tempfile.gettempdir())


_released_at_exit: set[Owner] = set()


def run_folder(owner: Owner | None = None, *, create: bool = True) -> Path:
    """The run folder of ``owner`` (this process by default), made private when missing.
    This process's own folder is released when it exits: by then whatever it started
    should have been stopped by whoever started it, and anything left is a leak."""
    owner = owner or Owner.current()
    folder = base_dir() / _folder_name(owner)
    if create:
        folder.mkdir(mode=0o700, exist_ok=True)
        if owner == Owner.current() and owner not in _released_at_exit:
            _released_at_exit.add(owner)
            atexit.register(release, owner)
    return folder


def temp_dir(prefix: str, owner: Owner | None = None) -> Path:
    """A new temporary folder owned by the run: removed with its run folder."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=run_folder(owner)))


def record_process(pid: int, owner: Owner | None = None) -> None:
    """Remember a process the run started, so a dead run's processes can be ended."""
    start = process_start_time(pid)
    if start is None:
        return
    processes = run_folder(owner) / PROCESSES
    processes.mkdir(mode=0o700, exist_ok=True)
    (processes / str(pid)).write_text(start)


def forget_process(pid: int, owner: Owner | None = None) -> None:
    """The process ended on its own (or was stopped by its owner)."""
    with contextlib.suppress(FileNotFoundError):
        (run_folder(owner, create=False) / PROCESSES / str(pid)).unlink()


def _end(pid: int, start: str) -> bool:
    """End one recorded process if it is still the one recorded; True when it was."""
    if process_start_time(pid) != start:
        return False
    # A process started in a session of its own (brokers are) is ended with its group:
    # a wrapper's children (RabbitMQ's Erlang VM) go with it.
    group = False
    with contextlib.suppress(OSError):
        group = os.getpgid(pid) == pid
    kill = (lambda sig: os.killpg(pid, sig)) if group else (lambda sig: os.kill(pid, sig))
    with contextlib.suppress(ProcessLookupError, PermissionError):
        kill(signal.SIGTERM)
    try:
        wait_until(
            lambda: process_start_time(pid) != start,
            f"process {pid} to end after SIGTERM",
            TERM_GRACE_S,
        )
    except WaitTimeout:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(signal.SIGKILL)
    return True


def release(owner: Owner) -> list[str]:
    """End the owner's recorded processes and remove its run folder; what was done."""
    folder = run_folder(owner, create=False)
    done: list[str] = []
    processes = folder / PROCESSES
    if processes.is_dir():
        for entry in sorted(processes.iterdir()):
            with contextlib.suppress(OSError, ValueError):
                if entry.name.isdigit() and _end(int(entry.name), entry.read_text().strip()):
                    done.append(f"process {entry.name}")
    if folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
        done.append(f"folder {folder}")
    return done


def reap() -> list[str]:
    """Release every run folder of this user on this host whose owner is gone."""
    done: list[str] = []
    uid = os.getuid()
    with contextlib.suppress(OSError):
        for entry in base_dir().iterdir():
            owner = _owner_of(entry.name)
            if owner is None or not owner.is_local() or owner.is_alive():
                continue
            with contextlib.suppress(OSError):
                if entry.stat().st_uid != uid:
                    continue  # another user's run: not ours to end
            done += release(owner)
    return done
