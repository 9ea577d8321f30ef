"""The watchdog: removes a process's Docker objects when that process dies unannounced.

``ensure_running(owner)`` starts, once per owner process, a detached child
``python -m pytest_cirque.homes.watchdog OWNER_LABEL`` in its own session (so Ctrl-C in the
terminal does not reach it) with no inherited pipes (so nobody waits on its output).
It waits for the owner to exit: with a pidfd where the kernel has one (woken at the
instant of death), otherwise by polling /proc every POLL_INTERVAL_S. Then it ends the
host processes the owner recorded and removes its temporary folders (core.ownership),
removes every Docker object labelled with that owner, except kept homes, and exits. After a normal
teardown there is nothing left and it exits at once.

Bound: removal starts within POLL_INTERVAL_S of the owner's death (immediately with a
pidfd) and takes what Docker needs to remove the objects, typically 1-3 s for a home of
a few nodes. What a watchdog itself misses (it was killed too, the host rebooted) is
reaped by the next session start (``cleanup.reap``).
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
import time

from pytest_cirque.core import ownership
from pytest_cirque.core.identity import Owner

#: Seconds between liveness checks when the kernel has no pidfd.
POLL_INTERVAL_S = 0.5
#: Attempts to remove the objects when Docker is briefly unreachable.
REMOVE_ATTEMPTS = 5

_started_for: str | None = None
_lock = threading.Lock()


def ensure_running(owner: Owner) -> None:
    """Start this process's watchdog unless it runs already."""
    global _started_for
    with _lock:
        if _started_for == owner.label:
            return
        if os.environ.get("CIRQUE_NO_WATCHDOG") == "1":
            return
        subprocess.Popen(
            [sys.executable, "-m", "pytest_cirque.homes.watchdog", owner.label],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
        _started_for = owner.label


def wait_for_death(owner: Owner) -> None:
    """Return once the owner process is gone."""
    pidfd = None
    if hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(owner.pid)
        except OSError:
            pidfd = None
    try:
        # Opened after the check would race with pid reuse: check with the fd held.
        if not owner.is_alive():
            return
        if pidfd is not None:
            select.select([pidfd], [], [])
            return
        while owner.is_alive():
            time.sleep(POLL_INTERVAL_S)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or Owner.from_label(argv[0]) is None:
        print("usage: python -m pytest_cirque.homes.watchdog HOST/PID/START", file=sys.stderr)
        return 2
    owner = Owner.from_label(argv[0])
    assert owner is not None
    wait_for_death(owner)
    from pytest_cirque.core.docker_backend import connect_backend
    from pytest_cirque.homes import cleanup

    ownership.release(owner)  # its brokers and temporary folders first: no Docker needed
    for attempt in range(REMOVE_ATTEMPTS):
        try:
            cleanup.remove_owner(connect_backend(), owner.label)
            return 0
        except Exception:
            if attempt == REMOVE_ATTEMPTS - 1:
                return 1
            time.sleep(1 + attempt)  # Docker busy or restarting: back off, try again
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
