"""Thread image: a cold build from the pinned openthread-sys crate, then the no-op lookup.

The cold build is what the first Thread test on a fresh machine pays: the crate fetched
with cargo into an empty cargo home (``--keep-cargo-cache`` uses the user's cache
instead), then every step of images/thread built without Docker's layer cache. It
builds a copy of the recipe with a nonce file added, so its tag is one that no other run
made, and it removes only that tag and the intermediate images its own build created
(never the machine's cached images, its base or its Debian base). The no-op is what every
later session pays: ``ensure_image`` finding the image already built for its recipe.
Prints JSON and writes benchmarks/results/thread_image.json.

    .venv/bin/python benchmarks/bench_thread_image.py [--keep-cargo-cache] [--no-save]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
from machine import machine, write_result

from pytest_cirque.core import identity
from pytest_cirque.core import images as image_builder
from pytest_cirque.core.docker_backend import Backend
from pytest_cirque.core.errors import ImageError

NAME = "thread"
_LAYER_ID = re.compile(r"^ ---> ([0-9a-f]{12,64})$")


class RecordingBackend(Backend):
    """The builder's backend, noting each image its builds create (not the FROM images),
    so that the benchmark can remove exactly those afterwards."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.created: list[str] = []

    def build_image(self, context: Any, **options: Any) -> Iterator[dict[str, Any]]:
        after_from = False
        for event in super().build_image(context, **options):
            for line in str(event.get("stream", "")).splitlines():
                if line.startswith("Step "):
                    after_from = " : FROM " in line.upper()
                elif (match := _LAYER_ID.match(line)) and not after_from:
                    self.created.append(match.group(1))
            yield event


def recipe_copy(root: Path) -> Path:
    """A copy of the project's recipes whose thread recipe has a nonce: its own tag."""
    images = root / "images"
    shutil.copytree(
        image_builder.default_images_root(),
        images,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    (images / NAME / "bench-nonce").write_text(secrets.token_hex(8) + "\n")
    return images


def step_durations(lines: list[tuple[float, str]], end: float) -> list[dict[str, Any]]:
    """Seconds from each progress line of the build to the next: the fetch, then each step."""
    marks = [
        (at, line)
        for at, line in lines
        if line.startswith(f"[{NAME}] Step ") or line.startswith("building ")
    ]
    phases = []
    for index, (at, line) in enumerate(marks):
        until = marks[index + 1][0] if index + 1 < len(marks) else end
        what = "fetch sources" if line.startswith("building ") else line[len(NAME) + 3 :]
        phases.append({"what": what[:100], "s": round(until - at, 1)})
    return phases


def remove_own(backend: RecordingBackend, tag: str, full_hash: str) -> list[str]:
    """Remove the benchmark's tag (after checking it is the recipe it built) and the
    intermediate images of its own build; returns what could not be removed."""
    left: list[str] = []
    image = backend.image(tag)
    if image is not None:
        labels = backend.api.inspect_image(tag)["Config"].get("Labels") or {}
        if labels.get(identity.IMAGE) == NAME and labels.get(identity.RECIPE) == full_hash[:12]:
            backend.remove_image(tag)
        else:
            left.append(tag)
    for image_id in reversed(backend.created):
        try:
            backend.remove_image(image_id)
        except ImageError:
            left.append(image_id)  # another build took it as cache meanwhile: it stays
    return [ref for ref in left if backend.image(ref) is not None]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--keep-cargo-cache",
        action="store_true",
        help="take the crate from the user's cargo cache rather than fetching it",
    )
    parser.add_argument("--noop-count", type=int, default=20)
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()

    client = docker.from_env(timeout=300)
    backend = RecordingBackend(client)
    load_at_start = os.getloadavg()[0]
    lines: list[tuple[float, str]] = []

    def progress(line: str) -> None:
        lines.append((time.monotonic(), line))
        print(line, flush=True)

    with tempfile.TemporaryDirectory(prefix="cirque-bench-thread-") as tmp:
        root = recipe_copy(Path(tmp))
        saved_cargo_home = os.environ.get("CARGO_HOME")
        if not args.keep_cargo_cache:
            os.environ["CARGO_HOME"] = str(Path(tmp) / "cargo-home")
        # The parents (base, the Debian base) are the machine's cache: built first, if
        # missing, and outside the measurement.
        recipe = image_builder.resolve(backend, NAME, images_root=root, progress=progress)
        assert recipe is not None
        tag = recipe.tag
        try:
            started = time.monotonic()
            built = image_builder.ensure_image(
                backend, NAME, rebuild=True, images_root=root, progress=progress
            )
            cold_s = time.monotonic() - started
            assert built == tag, (built, tag)
            if saved_cargo_home is None:
                os.environ.pop("CARGO_HOME", None)
            else:
                os.environ["CARGO_HOME"] = saved_cargo_home
            noop: list[float] = []
            for _ in range(args.noop_count):
                began = time.perf_counter()
                image_builder.ensure_image(backend, NAME, images_root=root, progress=progress)
                noop.append(time.perf_counter() - began)
            size_mb = round(backend.api.inspect_image(tag)["Size"] / 1e6, 1)
        finally:
            left = remove_own(backend, tag, recipe.full_hash)
    client.close()

    block = machine()
    block["docker_version"] = backend.engine_version().get("Version")
    block["load_average_1m_at_start"] = round(load_at_start, 2)
    report = {
        "benchmark": "bench_thread_image",
        "what": "build of images/thread from the pinned openthread-sys crate, cold and no-op",
        "crate_fetched_with_cargo": not args.keep_cargo_cache,
        "results": {
            "cold_build_s": round(cold_s, 1),
            "phases": step_durations(lines, started + cold_s),
            "noop_ensure_image_median_ms": round(1000 * statistics.median(noop), 2),
            "noop_ensure_image_max_ms": round(1000 * max(noop), 2),
            "noop_count": len(noop),
            "image_size_mb": size_mb,
        },
        "left_behind": left,
        "machine": block,
    }
    print(json.dumps(report, indent=2))
    if not args.no_save:
        write_result("thread_image", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
