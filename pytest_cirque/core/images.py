"""Project images: built on first use, once per machine, tagged by a hash of their recipe.

Each folder under ``images/`` is a recipe: a Dockerfile plus the files it copies. Its tag is
``cirque/<name>:<hash12>``, where the hash covers every file of the folder and the identity
of each parent image, so a changed recipe (or a changed parent) builds a new tag and an
unchanged one never rebuilds. Images are a machine-wide cache, not a run's objects: nothing
here deletes them.

A Dockerfile names its parent in one of two ways:

- ``ARG BASE`` then ``FROM ${BASE}``: a Debian bookworm image the builder chooses:
  ``debian:bookworm-slim`` when present locally or pullable, otherwise a rootfs
  bootstrapped with mmdebstrap from the machine's own apt sources and ``docker import``-ed
  as ``cirque/debian:bookworm-<hash12>`` (never as ``debian:*``, so a user's own image is
  never shadowed).
- ``FROM cirque/<name>``: another project image; the builder builds it first and pins the
  reference to its exact tag.

A recipe may list source archives it builds from in ``sources.json`` (Rust crates, which
ship some C projects whole): before a build, and only then, each is taken from cargo's
download cache or fetched with cargo, checked against its pinned sha256, and added to the
build context, so the build itself needs no network. The list is a recipe file, so its
pins are part of the hash; the archives are not hashed again on every lookup.

Several processes (xdist workers, parallel sessions) may ask for the same image at once:
a file lock per tag in the user's cache directory makes one of them build while the others
wait, and each checks again after taking the lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import filelock

from pytest_cirque.core import identity
from pytest_cirque.core.docker_backend import Backend, as_backend
from pytest_cirque.core.errors import ImageError

Progress = Callable[[str], None]

#: Repository of every project image; tags are recipe hashes.
REPOSITORY = "cirque"
#: The Debian base a recipe's ``FROM ${BASE}`` gets when it exists or can be pulled.
DEBIAN_IMAGE = "debian:bookworm-slim"
DEBIAN_SUITE = "bookworm"
#: mmdebstrap's hook that merges /usr without installing the usrmerge package (and the perl
#: it drags in: about 50 MB); used when the installed mmdebstrap ships it.
MERGED_USR_HOOK = Path("/usr/share/mmdebstrap/hooks/merged-usr")
#: How the Debian base is bootstrapped when no Debian image can be had. Part of its tag.
MMDEBSTRAP_OPTIONS = (
    "--variant=minbase",
    # Like the slim images: no manuals, documentation or translations, in the rootfs and in
    # whatever apt installs later.
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    # Like Debian's Docker images: apt writes no package caches (80 MB) or translations into
    # the image's layers (the options stay in the rootfs, so later apt runs obey them too).
    '--aptopt=Dir::Cache::pkgcache ""',
    '--aptopt=Dir::Cache::srcpkgcache ""',
    '--aptopt=Acquire::Languages "none"',
)
#: Changes written into the imported rootfs so it behaves like a Debian image.
IMPORT_CHANGES = (
    'CMD ["bash"]',
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
)
#: Bump to rebuild every project image (changes every recipe hash).
HASH_VERSION = "cirque-recipe-1"
#: Longest wait for another process's build of the same image.
LOCK_TIMEOUT_S = 1800
#: Lines of build output kept for the error message of a failed build.
ERROR_TAIL_LINES = 15

#: A recipe's list of source archives, added to its build context (see the module docs).
SOURCES_FILE = "sources.json"
#: What to install when a recipe's archive must be fetched and cargo is missing.
CARGO_INSTALL_HINT = "install cargo (Debian: apt-get install cargo)"

_FROM_LINE = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*(?P<ref>\S+)(?P<rest>.*)$", re.IGNORECASE)
_PROJECT_REF = re.compile(rf"^{REPOSITORY}/(?P<name>[a-z0-9][a-z0-9._-]*)(?::latest)?$")
_BASE_REFS = ("${BASE}", "$BASE")


def default_images_root() -> Path:
    """The project's recipe folders (the installed ``pytest_cirque.images`` package)."""
    import pytest_cirque.images

    return Path(pytest_cirque.images.__file__).parent


def print_progress(line: str) -> None:
    """Default progress: one line to stderr."""
    print(line, file=sys.stderr, flush=True)


def project_images(images_root: Path | None = None) -> list[str]:
    """Names of the project images: the folders under images/ holding a Dockerfile."""
    root = images_root or default_images_root()
    return sorted(p.name for p in root.iterdir() if (p / "Dockerfile").is_file())


# --- recipes and their hashes (pure: no Docker) ---------------------------------------


@dataclass(frozen=True)
class Parent:
    """One FROM reference of a Dockerfile."""

    ref: str
    #: "debian" for ${BASE}, "project" for cirque/<name>, "external" for anything else.
    kind: str
    #: The project image name when kind is "project".
    project: str = ""


def recipe_files(folder: Path) -> list[Path]:
    """The files of a recipe folder that go into its hash and build context, sorted."""
    files = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") or part == "__pycache__" for part in relative.parts):
            continue
        if path.is_file():
            files.append(path)
    return files


def parents(dockerfile_text: str, project_names: Iterable[str]) -> list[Parent]:
    """The parent images a Dockerfile names, in order (build stages it names are skipped)."""
    known = set(project_names)
    stages: set[str] = set()
    found: list[Parent] = []
    for line in dockerfile_text.splitlines():
        match = _FROM_LINE.match(line)
        if not match:
            continue
        ref = match.group("ref")
        stage = re.search(r"\bAS\s+(\S+)", match.group("rest"), re.IGNORECASE)
        if ref.lower() in stages:
            pass
        elif ref in _BASE_REFS:
            found.append(Parent(ref, "debian"))
        elif (project := _PROJECT_REF.match(ref)) and project.group("name") in known:
            found.append(Parent(ref, "project", project.group("name")))
        else:
            found.append(Parent(ref, "external"))
        if stage:
            stages.add(stage.group(1).lower())
    return found


def recipe_hash(folder: Path, parent_identities: Iterable[str]) -> str:
    """Hash of a recipe: every file (path, content, executable bit) and its parents' identities."""
    digest = hashlib.sha256(HASH_VERSION.encode())
    for path in recipe_files(folder):
        relative = path.relative_to(folder).as_posix()
        executable = "x" if os.access(path, os.X_OK) else "-"
        file_digest = hashlib.sha256(path.read_bytes()).hexdigest()
        digest.update(f"file {relative} {executable} {file_digest}\n".encode())
    for parent_identity in parent_identities:
        digest.update(f"parent {parent_identity}\n".encode())
    return digest.hexdigest()


def image_tag(name: str, full_hash: str) -> str:
    """The tag of a project image built from a recipe with this hash."""
    return f"{REPOSITORY}/{name}:{full_hash[:12]}"


def mmdebstrap_options() -> list[str]:
    """The mmdebstrap options of the Debian base bootstrap on this machine."""
    options = list(MMDEBSTRAP_OPTIONS)
    if MERGED_USR_HOOK.is_dir():
        options.append(f"--hook-dir={MERGED_USR_HOOK}")
    return options


def debian_bootstrap_tag() -> str:
    """The tag of the Debian base bootstrapped with mmdebstrap (hash of how it is made)."""
    recipe = "\n".join([HASH_VERSION, DEBIAN_SUITE, *mmdebstrap_options(), *IMPORT_CHANGES])
    return f"{REPOSITORY}/debian:{DEBIAN_SUITE}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def pin_parents(dockerfile_text: str, pinned: dict[str, str]) -> str:
    """The Dockerfile with each project parent reference replaced by its exact tag."""
    lines = []
    for line in dockerfile_text.splitlines(keepends=True):
        match = _FROM_LINE.match(line)
        if match and match.group("ref") in pinned:
            start, end = match.span("ref")
            line = line[:start] + pinned[match.group("ref")] + line[end:]
        lines.append(line)
    return "".join(lines)


# --- source archives (no Docker) ----------------------------------------------------------


@dataclass(frozen=True)
class SourceArchive:
    """A crate a recipe builds from, pinned by its sha256, named ``file`` in the context."""

    crate: str
    version: str
    sha256: str
    file: str

    @property
    def cache_name(self) -> str:
        """The file name cargo gives the downloaded crate in its registry cache."""
        return f"{self.crate}-{self.version}.crate"


_CRATE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_CRATE_VERSION = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+[A-Za-z0-9.+-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_PLAIN_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def source_archives(folder: Path) -> list[SourceArchive]:
    """The archives a recipe's sources.json lists (none without the file)."""
    path = folder / SOURCES_FILE
    if not path.is_file():
        return []
    where = f"images/{folder.name}/{SOURCES_FILE}"
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ImageError(f"{where}: not readable JSON ({exc}); fix the file") from None
    if not isinstance(entries, list):
        raise ImageError(f"{where}: expected a list of archives; fix the file")
    archives: list[SourceArchive] = []
    for index, entry in enumerate(entries):
        fields = ("crate", "version", "sha256")
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in fields):
            raise ImageError(
                f"{where}: archive {index} needs string fields crate, version and sha256; "
                "fix the file"
            )
        crate, version, sha256 = entry["crate"], entry["version"], entry["sha256"].lower()
        file = entry.get("file", f"{crate}-{version}.crate")
        if not (
            _CRATE_NAME.match(crate)
            and _CRATE_VERSION.match(version)
            and _SHA256.match(sha256)
            and isinstance(file, str)
            and _PLAIN_FILE.match(file)
        ):
            raise ImageError(
                f"{where}: archive {index} ({crate} {version}) has a bad name, version, "
                "64-hex-digit sha256 or plain file name; fix the file"
            )
        if (folder / file).exists():
            raise ImageError(f"{where}: archive file {file} clashes with a recipe file; rename it")
        archives.append(SourceArchive(crate, version, sha256, file))
    return archives


def cargo_home() -> Path:
    """Where cargo keeps its downloads: $CARGO_HOME, else ~/.cargo (as cargo decides)."""
    configured = os.environ.get("CARGO_HOME")
    return Path(configured) if configured else Path.home() / ".cargo"


def _sha256_of(path: Path) -> str:
    """A file's sha256, read in chunks (crates run to megabytes)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cached_archive(archive: SourceArchive, where: str, home: Path | None = None) -> Path | None:
    """The archive in cargo's registry cache when it is there and matches its pin.

    A cached file with another sha256 is refused, never used: it is not what the recipe
    was reviewed with."""
    found = sorted((home or cargo_home()).glob(f"registry/cache/*/{archive.cache_name}"))
    mismatch: tuple[Path, str] | None = None
    for path in found:
        actual = _sha256_of(path)
        if actual == archive.sha256:
            return path
        mismatch = mismatch or (path, actual)
    if mismatch is not None:
        raise ImageError(
            f"{mismatch[0]}: sha256 {mismatch[1]} but {where} pins {archive.sha256}; "
            "delete the file so cargo fetches it again, or correct the pin"
        )
    return None


def _run_cargo(command: list[str], cwd: Path, progress: Progress) -> str:
    """Run a cargo command, its status lines to progress; returns its last line."""
    last = ""
    process = subprocess.Popen(
        command,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    assert process.stderr is not None
    for raw in process.stderr:
        line = raw.strip()
        if line:
            last = line
            progress(f"[cargo] {line}")
    process.wait()
    return last


def fetch_archive(
    archive: SourceArchive, where: str, progress: Progress, home: Path | None = None
) -> Path:
    """The checked archive: from cargo's cache, else downloaded into it with cargo."""
    cached = cached_archive(archive, where, home)
    if cached is not None:
        progress(f"using {cached} (sha256 checked)")
        return cached
    cargo = shutil.which("cargo")
    if cargo is None:
        raise ImageError(
            f"{where} needs crate {archive.crate} {archive.version}, which is not in "
            f"{(home or cargo_home()) / 'registry' / 'cache'}, and cargo is not on PATH to "
            f"fetch it; {CARGO_INSTALL_HINT}"
        )
    progress(f"fetching crate {archive.crate} {archive.version} with cargo")
    with tempfile.TemporaryDirectory(prefix="cirque-crate-") as tmp:
        spec = f"{archive.crate}@{archive.version}"
        # `cargo info` downloads the one crate; older cargo lacks it, and then a throwaway
        # manifest with `cargo fetch` downloads it (with its build dependencies).
        last = _run_cargo([cargo, "info", spec], Path(tmp), progress)
        if cached_archive(archive, where, home) is None:
            manifest = Path(tmp) / "Cargo.toml"
            manifest.write_text(
                '[package]\nname = "cirque-fetch"\nversion = "0.0.0"\nedition = "2018"\n'
                "[workspace]\n[dependencies]\n"
                f'{archive.crate} = {{ version = "={archive.version}", '
                "default-features = false }\n"
            )
            (Path(tmp) / "src").mkdir()
            (Path(tmp) / "src" / "lib.rs").write_text("")
            last = _run_cargo([cargo, "fetch"], Path(tmp), progress)
    fetched = cached_archive(archive, where, home)
    if fetched is None:
        raise ImageError(
            f"cargo did not fetch crate {archive.crate} {archive.version} for {where} "
            f"({last or 'no output'}); check that cargo can reach its registry"
        )
    progress(f"fetched {fetched.name} (sha256 checked)")
    return fetched


def fetch_sources(
    folder: Path, progress: Progress, home: Path | None = None
) -> list[tuple[str, Path]]:
    """Each archive of a recipe as (name in the build context, checked local file)."""
    where = f"images/{folder.name}/{SOURCES_FILE}"
    return [
        (archive.file, fetch_archive(archive, where, progress, home))
        for archive in source_archives(folder)
    ]


# --- Docker side -------------------------------------------------------------------------


# The engine's failures arrive as one-line project errors from the backend: a lost engine
# is DockerUnavailable, a refused request (a bad reference, a daemon error) ImageError.


def _pull(backend: Backend, ref: str, progress: Progress) -> str | None:
    """Pull an image; returns None on success, else why it failed (fast when offline)."""
    progress(f"pulling {ref}")
    return backend.pull_image(ref)


def _lock_dir() -> Path:
    """Per-user cache directory holding the build locks.

    Found from the user's passwd entry rather than $HOME, so that sessions which point HOME
    elsewhere (pytester does) still share the user's locks.
    """
    try:
        home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:
        home = Path(os.path.expanduser("~"))
    for path in (
        home / ".cache" / "pytest-cirque" / "locks",
        Path(tempfile.gettempdir()) / f"pytest-cirque-{os.getuid()}" / "locks",
    ):
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(path, os.W_OK):
            return path
    raise ImageError(
        f"no writable directory for image build locks (tried {home}/.cache and "
        f"{tempfile.gettempdir()}); make one of them writable"
    )


@contextlib.contextmanager
def _build_lock(tag: str, progress: Progress) -> Iterator[None]:
    """Hold the machine-wide lock for building one tag."""
    path = _lock_dir() / (re.sub(r"[^A-Za-z0-9._-]", "_", tag) + ".lock")
    lock = filelock.FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        progress(f"waiting for another process building {tag}")
        try:
            lock.acquire(timeout=LOCK_TIMEOUT_S)
        except filelock.Timeout:
            raise ImageError(
                f"waited {LOCK_TIMEOUT_S} s for another process building {tag} (lock {path}); "
                "check that build, or stop it and retry"
            ) from None
    try:
        yield
    finally:
        lock.release()


def _created_at(text: str) -> float:
    """When an image was created, as a Unix time, from Docker's RFC 3339 text."""
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?", text)
    if not match:
        return 0.0
    seconds = datetime.fromisoformat(match.group(1) + "+00:00").timestamp()
    return seconds + float(match.group(2) or 0)


def debian_base(backend: Backend | Any, *, progress: Progress | None = None) -> str:
    """The Debian image behind ``FROM ${BASE}``: existing, pulled, or bootstrapped."""
    backend = as_backend(backend)
    progress = progress or print_progress
    bootstrap_tag = debian_bootstrap_tag()
    for ref in (DEBIAN_IMAGE, bootstrap_tag):
        if backend.image(ref) is not None:
            return ref
    if _pull(backend, DEBIAN_IMAGE, progress) is None:
        return DEBIAN_IMAGE
    with _build_lock(bootstrap_tag, progress):
        if backend.image(bootstrap_tag) is None:
            _bootstrap_debian(backend, bootstrap_tag, progress)
    return bootstrap_tag


def apt_sources_file(apt_dir: Path = Path("/etc/apt")) -> Path:
    """The machine's deb822 apt sources file that serves the Debian suite of the base."""
    candidates = sorted((apt_dir / "sources.list.d").glob("*.sources"))
    for path in candidates:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() == "suites" and DEBIAN_SUITE in value.split():
                return path
    raise ImageError(
        f"cannot bootstrap the Debian base: no deb822 apt sources file under "
        f"{apt_dir}/sources.list.d serves '{DEBIAN_SUITE}'; load {DEBIAN_IMAGE} into Docker "
        f"(docker load) or run on a Debian {DEBIAN_SUITE} host"
    )


def _first_error(lines: Iterable[str]) -> str:
    """The first "E:" line of mmdebstrap's output (its cause), else its last line."""
    lines = list(lines)
    return next((line for line in lines if line.startswith("E:")), lines[-1] if lines else "")


def _bootstrap_debian(backend: Backend | Any, tag: str, progress: Progress) -> None:
    """Bootstrap a minimal Debian rootfs with mmdebstrap and import it as ``tag``."""
    backend = as_backend(backend)
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise ImageError(
            f"cannot build the Debian base image: {DEBIAN_IMAGE} is not available and "
            "mmdebstrap is not installed; install mmdebstrap and uidmap (apt-get install "
            "mmdebstrap uidmap) or load the image (docker load)"
        )
    if os.geteuid() != 0 and shutil.which("newuidmap") is None:
        raise ImageError(
            "cannot build the Debian base image as a non-root user: newuidmap is missing; "
            "install uidmap (apt-get install uidmap) so mmdebstrap can run in unshare mode"
        )
    sources = apt_sources_file()
    progress(f"{DEBIAN_IMAGE} unavailable: bootstrapping {tag} with mmdebstrap from {sources}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cirque-debian-") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        command = [mmdebstrap, *mmdebstrap_options(), DEBIAN_SUITE, str(rootfs), str(sources)]
        tail: deque[str] = deque(maxlen=ERROR_TAIL_LINES)
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.rstrip()
            if line:
                tail.append(line)
                progress(f"[mmdebstrap] {line}")
        if process.wait() != 0:
            raise ImageError(
                f"mmdebstrap failed (exit {process.returncode}) bootstrapping {tag}: "
                f"{_first_error(tail)}; if it cannot create user namespaces, install uidmap "
                "or run as root\n" + "\n".join(tail)
            )
        if backend.image(tag) is not None:
            progress(f"{tag} appeared meanwhile (another user's build); not importing")
            return
        progress(f"importing {rootfs.stat().st_size // 2**20} MiB rootfs as {tag}")
        version = tag.rpartition(":")[2]
        changes = [*IMPORT_CHANGES, f"LABEL {identity.IMAGE}=debian {identity.RECIPE}={version}"]
        backend.import_image(str(rootfs), ref=tag, changes=changes)
    progress(f"built {tag} in {time.monotonic() - started:.0f} s")


def _debian_identity(backend: Backend, base: str) -> str:
    """What a recipe hash records of its Debian base: our bootstrap's tag (itself a recipe
    hash, stable even if another user re-imports it), else the image id (a pulled
    debian:bookworm-slim changes with each Debian point release)."""
    if base.startswith(f"{REPOSITORY}/"):
        return base
    image = backend.image(base)
    if image is None:
        raise ImageError(f"the Debian base {base} vanished while in use; run the build again")
    return image.id


@dataclass(frozen=True)
class Recipe:
    """A project image recipe resolved against this engine: what it builds and from what."""

    name: str
    folder: Path
    tag: str
    full_hash: str
    #: Parent reference in the Dockerfile -> exact tag to build from.
    pinned: dict[str, str]
    #: Value for ``ARG BASE``, when the Dockerfile uses it.
    base: str | None


def resolve(
    backend: Backend | Any,
    name: str,
    *,
    images_root: Path | None = None,
    progress: Progress | None = None,
    build_parents: bool = True,
    _chain: tuple[str, ...] = (),
) -> Recipe | None:
    """Work out a project image's tag; parents are built first unless build_parents is False,
    in which case a missing parent makes the answer None (used by doctor)."""
    backend = as_backend(backend)
    root = images_root or default_images_root()
    folder = root / name
    dockerfile = folder / "Dockerfile"
    if not dockerfile.is_file():
        raise ImageError(f"{name!r} is not a project image: no {dockerfile}")
    if name in _chain:
        raise ImageError(f"images/{name}/Dockerfile: FROM cycle {' -> '.join([*_chain, name])}")
    text = dockerfile.read_text()
    identities: list[str] = []
    pinned: dict[str, str] = {}
    base: str | None = None
    for parent in parents(text, project_images(root)):
        if parent.kind == "debian":
            if build_parents:
                base = debian_base(backend, progress=progress)
            else:
                base = next(
                    (r for r in (DEBIAN_IMAGE, debian_bootstrap_tag()) if backend.image(r)),
                    None,
                )
                if base is None:
                    return None
            identities.append(f"debian {_debian_identity(backend, base)}")
        elif parent.kind == "project":
            if build_parents:
                parent_tag = _ensure_project(
                    backend,
                    parent.project,
                    root,
                    rebuild=False,
                    progress=progress,
                    chain=(*_chain, name),
                )
            else:
                recipe = resolve(
                    backend,
                    parent.project,
                    images_root=root,
                    build_parents=False,
                    _chain=(*_chain, name),
                )
                if recipe is None:
                    return None
                parent_tag = recipe.tag
            pinned[parent.ref] = parent_tag
            identities.append(f"project {parent_tag}")
        else:
            local = backend.image(parent.ref)
            identities.append(f"external {parent.ref} {local.id if local else ''}")
    full_hash = recipe_hash(folder, identities)
    return Recipe(name, folder, image_tag(name, full_hash), full_hash, pinned, base)


def _context(recipe: Recipe, archives: Iterable[tuple[str, Path]] = ()) -> io.BytesIO:
    """The build context: the recipe's files, with its Dockerfile's parents pinned, and its
    source archives (with fixed metadata, so Docker's layer cache keys on content only)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for arcname, archive_path in archives:
            info = tarfile.TarInfo(arcname)
            info.size = archive_path.stat().st_size
            info.mode = 0o644
            with archive_path.open("rb") as stream:
                tar.addfile(info, stream)
        for path in recipe_files(recipe.folder):
            relative = path.relative_to(recipe.folder).as_posix()
            data = path.read_bytes()
            if relative == "Dockerfile":
                data = pin_parents(data.decode(), recipe.pinned).encode()
            info = tarfile.TarInfo(relative)
            info.size = len(data)
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def _build(backend: Backend, recipe: Recipe, *, nocache: bool, progress: Progress) -> None:
    """Run the docker build of a recipe, streaming its steps to progress."""
    progress(f"building {recipe.tag} from images/{recipe.name}")
    started = time.monotonic()
    archives = fetch_sources(recipe.folder, progress)
    tail: deque[str] = deque(maxlen=ERROR_TAIL_LINES)
    step = "before the first step"
    buildargs = {"BASE": recipe.base} if recipe.base else None
    previous = backend.image(recipe.tag)
    stream = backend.build_image(
        _context(recipe, archives),
        tag=recipe.tag,
        buildargs=buildargs,
        labels={identity.IMAGE: recipe.name, identity.RECIPE: recipe.full_hash[:12]},
        nocache=nocache,
        timeout=LOCK_TIMEOUT_S,
    )
    for event in stream:
        if "error" in event:
            detail = str(event.get("error", "")).strip()
            raise ImageError(
                f"building {recipe.tag} (images/{recipe.name}) failed at {step!r}: "
                f"{detail.splitlines()[-1] if detail else 'unknown error'}\n" + "\n".join(tail)
            )
        for raw in str(event.get("stream", "")).splitlines():
            line = raw.rstrip()
            if not line:
                continue
            tail.append(line)
            if line.startswith("Step "):
                step = line
                progress(f"[{recipe.name}] {line}")
    built = backend.image(recipe.tag)
    if built is None:
        raise ImageError(
            f"building {recipe.tag} (images/{recipe.name}) ended without the image\n"
            + "\n".join(tail)
        )
    if previous is not None and previous.id != built.id:
        # A rebuild leaves the image it replaced untagged: remove it unless a container
        # still uses it (then Docker refuses, and it goes with that container's image).
        with contextlib.suppress(ImageError):
            backend.remove_image(previous.id)
    progress(f"built {recipe.tag} in {time.monotonic() - started:.0f} s")


def _ensure_project(
    backend: Backend,
    name: str,
    root: Path,
    *,
    rebuild: bool,
    progress: Progress | None,
    chain: tuple[str, ...] = (),
) -> str:
    progress = progress or print_progress
    asked_at = time.time()
    recipe = resolve(backend, name, images_root=root, progress=progress, _chain=chain)
    assert recipe is not None
    if not rebuild and backend.image(recipe.tag) is not None:
        return recipe.tag
    with _build_lock(recipe.tag, progress):
        existing = backend.image(recipe.tag)
        # Double check under the lock: another process may have built it meanwhile (or,
        # for a rebuild, rebuilt it after we asked: one rebuild serves every waiter).
        if existing is not None and (not rebuild or _created_at(existing.created) > asked_at):
            return recipe.tag
        _build(backend, recipe, nocache=rebuild, progress=progress)
    return recipe.tag


def ensure_image(
    backend: Backend | Any,
    name: str,
    *,
    rebuild: bool = False,
    progress: Progress | None = None,
    images_root: Path | None = None,
) -> str:
    """The image reference to create a node from.

    A project image name (a folder under images/) gives the tag of an up-to-date build,
    built now (once per machine) when missing, or rebuilt without cache when ``rebuild``.
    Any other name is a user's image: returned when present locally or pullable.
    ``backend`` is the engine's Backend (a docker client is still accepted).
    """
    root = images_root or default_images_root()
    if not name or not name.strip() or name != name.strip():
        raise ImageError(f"image name {name!r} is empty or has spaces; name an image")
    backend = as_backend(backend)
    if name in project_images(root):
        return _ensure_project(backend, name, root, rebuild=rebuild, progress=progress)
    progress = progress or print_progress
    if backend.image(name) is not None:
        return name
    why = _pull(backend, name, progress)
    if why is None:
        return name
    raise ImageError(
        f"unknown image {name!r}: not a project image ({', '.join(project_images(root))}), "
        f"not present locally, and pulling failed ({why.splitlines()[0]}); "
        "build or load it (docker build / docker load) or use a project image"
    )


def build_images(
    backend: Backend | Any,
    names: Iterable[str] | None = None,
    *,
    rebuild: bool = False,
    progress: Progress | None = None,
    images_root: Path | None = None,
) -> dict[str, str]:
    """Build (or, with ``rebuild``, rebuild) project images; returns name -> tag."""
    root = images_root or default_images_root()
    wanted = list(names) if names is not None else project_images(root)
    known = project_images(root)
    for name in wanted:
        if name not in known:
            raise ImageError(f"{name!r} is not a project image; choose among: {', '.join(known)}")
    backend = as_backend(backend)
    return {
        name: _ensure_project(backend, name, root, rebuild=rebuild, progress=progress)
        for name in wanted
    }


@dataclass(frozen=True)
class ImageStatus:
    """Whether a project image is built for its current recipe (for doctor)."""

    name: str
    #: The tag the current recipe builds, or None when a parent is not built yet.
    tag: str | None
    present: bool
    #: Other local tags of this image (builds of older recipes).
    stale: tuple[str, ...]


def image_status(
    backend: Backend | Any, name: str, *, images_root: Path | None = None
) -> ImageStatus:
    """Whether the project image ``name`` is built for its current recipe; never builds."""
    backend = as_backend(backend)
    recipe = resolve(backend, name, images_root=images_root, build_parents=False)
    tags = set(backend.image_tags(f"{REPOSITORY}/{name}"))
    current = recipe.tag if recipe else None
    return ImageStatus(
        name,
        current,
        current in tags,
        tuple(sorted(t for t in tags if t != current)),
    )
