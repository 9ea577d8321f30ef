"""The Cirque service of one process: the homes it made, and the guarantee they go away.

``Cirque`` connects to Docker, names everything it creates with its run id and worker,
labels it with its owner (this process), and starts the watchdog that removes those
objects if this process dies without tearing down (kill -9).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pytest_cirque.core import identity
from pytest_cirque.core.docker_backend import Backend, connect
from pytest_cirque.core.errors import CirqueError, ImageError, one_line
from pytest_cirque.homes import watchdog
from pytest_cirque.homes.home import Home, HomeContext, Images
from pytest_cirque.spec import HomeSpec, check_home_name

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


class Cirque:
    """The session service: creates homes, and destroys every one it made at ``close``."""

    def __init__(
        self,
        docker_client: Any | None = None,
        *,
        run_id: str | None = None,
        worker: str = "main",
        rebuild_images: bool = False,
        progress: Progress | None = None,
    ) -> None:
        self.client = connect(docker_client)
        self.backend = Backend(self.client)
        self.identity = identity.RunIdentity.create(run_id, worker)
        self.rebuild_images = rebuild_images
        self.progress = progress
        self._homes: dict[str, Home] = {}
        self._used_names: set[str] = set()
        self._images: dict[str, str] = {}
        self._idle: dict[str, bool] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._home_context = HomeContext(
            backend=self.backend,
            identity=self.identity,
            images=Images(self.resolve_image, self.needs_idle_command),
            on_destroyed=self._forget,
            on_cleanup_problems=self._report_cleanup_problems,
        )

    @property
    def run_id(self) -> str:
        return self.identity.run_id

    @property
    def worker(self) -> str:
        return self.identity.worker

    def __enter__(self) -> Cirque:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- homes ----------------------------------------------------------------------

    def create_home(
        self, spec: HomeSpec | Mapping[str, Any] | str | Path, name: str | None = None
    ) -> Home:
        """Validate the spec, then build the home. A bad spec or image creates nothing; a
        failure half-way removes what was made."""
        if self._closed:
            raise CirqueError("this Cirque service is closed; create a new one")
        if name is not None:
            check_home_name(name)
        parsed = HomeSpec.parse(spec)
        parsed.check_media()
        for node_spec in parsed.nodes.values():
            self.resolve_image(node_spec.image)  # unknown image: fail before anything exists
        home = Home(self._home_context, self._home_name(name), parsed)
        watchdog.ensure_running(self.identity.owner)
        with self._lock:
            self._homes[home.name] = home
        return home.build()

    def _home_name(self, name: str | None) -> str:
        with self._lock:
            stem = identity.safe_name(name)[:40] if name else "home"
            candidate, number = stem, 1
            if not name:
                candidate = f"{stem}{number}"
            while self.identity.home_id(candidate) in self._used_names:
                number += 1
                candidate = f"{stem}{number}" if not name else f"{stem}-{number}"
            home_id = self.identity.home_id(candidate)
            self._used_names.add(home_id)
            return home_id

    def homes(self) -> list[Home]:
        """This process's live homes (kept ones included)."""
        with self._lock:
            return list(self._homes.values())

    def _forget(self, home: Home) -> None:
        """Told by a destroyed home."""
        with self._lock:
            self._homes.pop(home.name, None)

    def close(self) -> None:
        """Destroy every home this service made that is not kept. Always completes; the
        problems are raised together in one line afterwards."""
        self._closed = True
        errors: list[BaseException] = []
        interrupted = False
        for home in reversed(self.homes()):
            if home.kept:
                continue
            try:
                home.destroy()
            except KeyboardInterrupt:
                interrupted = True
            except Exception as exc:
                errors.append(exc)
        if interrupted:
            raise KeyboardInterrupt
        if errors:
            raise CirqueError(f"run {self.run_id}: closing homes: {one_line(errors)}")

    def _report_cleanup_problems(self, home: str, errors: list[BaseException]) -> None:
        """Problems met while undoing a failed creation: logged, the creation error wins."""
        log.warning("home %s: cleanup after a failed creation: %s", home, one_line(errors))

    # ---- images ---------------------------------------------------------------------

    def resolve_image(self, name: str) -> str:
        """The image reference for a spec's image name, built or found once per service."""
        with self._lock:
            if name in self._images:
                return self._images[name]
        from pytest_cirque.core.images import ensure_image

        reference = ensure_image(
            self.backend, name, rebuild=self.rebuild_images, progress=self.progress
        )
        with self._lock:
            self._images[name] = reference
        return reference

    def needs_idle_command(self, reference: str) -> bool:
        """Whether an image has no command of its own (an imported rootfs): its nodes then
        run ``sleep infinity`` under Docker's init so they stay up and stop fast."""
        with self._lock:
            if reference in self._idle:
                return self._idle[reference]
        config = self.backend.image_config(reference)
        if config is None:
            raise ImageError(f"image {reference!r} is not present locally; build or pull it")
        idle = not config.get("Cmd") and not config.get("Entrypoint")
        with self._lock:
            self._idle[reference] = idle
        return idle


def default_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
