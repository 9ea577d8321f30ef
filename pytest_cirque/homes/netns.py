"""One helper per home that enters its nodes' network namespaces.

Every bridge node gets its segment guard (networks.segment_guard) before the home is
handed over. A short-lived NET_ADMIN container per node costs a create, start, wait and
remove each (about 0.4 s on a loaded 2-core machine), which a home of 20 nodes cannot
afford. A privileged exec in the node itself would be cheaper, but it needs ``ip`` in the
node's image and fails outright on engines whose daemon lacks a capability ("unable to
apply caps"). So each home runs one helper, started alongside its first nodes: it shares
the host's pid namespace, may open and enter other processes' network namespaces
(SYS_PTRACE, SYS_ADMIN) and change them (NET_ADMIN), and one exec in it applies the
scripts of a whole batch of nodes with nsenter.

Where the engine refuses such a helper (user-namespace remapping, a restrictive
policy), ``run`` reports every script as not applied and the caller falls back to the
per-node helper containers, which work everywhere.
"""

from __future__ import annotations

import logging
import shlex
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pytest_cirque.core import identity

if TYPE_CHECKING:
    from pytest_cirque.homes.home import Home

log = logging.getLogger(__name__)

#: Image of the helper (has nsenter, ip, tc, iptables).
IMAGE = "base"
#: Name part of the helper's container; no node name starts with "_".
NAME_PART = "_netns"
#: Printed by the batch script for each script that failed.
FAILED_MARK = "cirque-netns-failed"


class NamespaceHelper:
    """The long-lived helper of one home; started on first use, removed with the home."""

    def __init__(self, home: Home) -> None:
        self._home = home
        self._backend = home.backend
        self._lock = threading.Lock()
        self.container_id = ""
        #: Why the engine refused the helper, once it did (then every script falls back).
        self.refused = ""

    def start(self) -> None:
        """Create and start the helper unless it runs or was refused. Never raises: a
        refusal is remembered and makes ``run`` hand every script back."""
        with self._lock:
            if self.container_id or self.refused:
                return
            home = self._home
            container = ""
            try:
                container = self._backend.create_container(
                    identity.object_name(home.name, NAME_PART),
                    home.resolve_image(IMAGE),
                    labels=home.identity.labels(home.name, identity.ROLE_NETADMIN),
                    command=["sleep", "infinity"],
                    environment={"TINI_SUBREAPER": "1"},
                    network_mode="none",
                    pid_mode="host",
                    cap_add=["NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"],
                )
                self._backend.start(container)
            except Exception as exc:
                self.refused = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                log.info("home %s: namespace helper refused (%s)", home.name, self.refused)
                if container:
                    self._backend.remove_container(container)
                return
            self.container_id = container

    def run(self, jobs: Sequence[tuple[int, str]]) -> list[int]:
        """Run each (host pid, script) in that process's network namespace, all in one
        exec, the jobs side by side. A script is lines of simple commands (no shell
        syntax beyond words), each run directly under nsenter. Returns the indexes of the
        jobs that were not applied."""
        if not jobs:
            return []
        self.start()
        if not self.container_id:
            return list(range(len(jobs)))
        lines = []
        for index, (pid, script) in enumerate(jobs):
            commands = [
                "nsenter -t {} -n {}".format(pid, " ".join(map(shlex.quote, shlex.split(line))))
                for line in script.splitlines()
                if line.strip()
            ]
            lines.append(f"{{ {' && '.join(commands)} || echo {FAILED_MARK} {index}; }} &")
        lines.append("wait")
        try:
            result = self._backend.exec(
                self.container_id,
                ["sh", "-c", "\n".join(lines)],
                node=f"{self._home.name} namespace helper",
                timeout=30,
            )
        except Exception as exc:
            log.info("home %s: namespace helper failed (%s)", self._home.name, exc)
            return list(range(len(jobs)))
        if result.exit_code != 0:
            return list(range(len(jobs)))
        failed = []
        for line in result.stdout.splitlines():
            mark, _, index = line.partition(" ")
            if mark == FAILED_MARK and index.isdigit():
                failed.append(int(index))
        return failed

    def remove(self) -> None:
        """Remove the helper (nothing when it never started)."""
        with self._lock:
            container, self.container_id = self.container_id, ""
        if container:
            self._backend.remove_container(container)
