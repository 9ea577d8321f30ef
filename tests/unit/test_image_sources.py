"""Source archives of image recipes: found in cargo's cache, fetched with cargo, checked.

No network and no real cargo: the cargo home is a folder of tmp_path, and ``cargo`` on
PATH is a small script that plays the part (and records how it was called).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from pytest_cirque.core import images as image_builder
from pytest_cirque.core.errors import ImageError
from pytest_cirque.core.images import SourceArchive

CRATE = b"pretend gzipped tar of a crate"
CRATE_SHA = hashlib.sha256(CRATE).hexdigest()
OTHER_SHA = hashlib.sha256(b"something else").hexdigest()


def make_recipe(root: Path, sha256: str = CRATE_SHA, **entry: str) -> Path:
    """A recipe folder "demo" whose sources.json lists demo-sys 1.2.3."""
    folder = root / "images" / "demo"
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text("FROM ${BASE}\nCOPY demo-sys-1.2.3.crate /src/\n")
    archive = {"crate": "demo-sys", "version": "1.2.3", "sha256": sha256, **entry}
    (folder / "sources.json").write_text(json.dumps([archive]))
    return folder


def put_in_cache(cargo_home: Path, data: bytes = CRATE, registry: str = "index.example-1") -> Path:
    cache = cargo_home / "registry" / "cache" / registry
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / "demo-sys-1.2.3.crate"
    path.write_bytes(data)
    return path


@pytest.fixture
def cargo_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "cargo-home"
    home.mkdir()
    monkeypatch.setenv("CARGO_HOME", str(home))
    return home


@pytest.fixture
def no_cargo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PATH with no cargo on it."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def fake_cargo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> Path:
    """Put a ``cargo`` shell script first on PATH; it logs its arguments to calls.log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    script = bin_dir / "cargo"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{log}"\n'
        f'CRATE_FILE="$CARGO_HOME/registry/cache/index.example-1/demo-sys-1.2.3.crate"\n'
        f"{body}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    return log


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


# --- the list ----------------------------------------------------------------------------


def test_sources_list_names_file_after_the_crate_unless_told(tmp_path: Path) -> None:
    folder = make_recipe(tmp_path)
    assert image_builder.source_archives(folder) == [
        SourceArchive("demo-sys", "1.2.3", CRATE_SHA, "demo-sys-1.2.3.crate")
    ]
    assert image_builder.source_archives(tmp_path) == []  # no sources.json: nothing to fetch


@pytest.mark.parametrize(
    "entry",
    [
        {"sha256": "abc"},
        {"file": "../escape.crate"},
        {"version": "latest"},
    ],
)
def test_a_bad_sources_list_is_one_line_naming_the_file(
    tmp_path: Path, entry: dict[str, str]
) -> None:
    folder = make_recipe(tmp_path, **entry)
    with pytest.raises(ImageError) as raised:
        image_builder.source_archives(folder)
    message = str(raised.value)
    assert "\n" not in message
    assert "images/demo/sources.json" in message


def test_the_pin_is_part_of_the_recipe_hash(tmp_path: Path) -> None:
    folder = make_recipe(tmp_path)
    before = image_builder.recipe_hash(folder, ["debian abc"])
    (folder / "sources.json").write_text(
        (folder / "sources.json").read_text().replace(CRATE_SHA, OTHER_SHA)
    )
    assert image_builder.recipe_hash(folder, ["debian abc"]) != before


# --- the cache and cargo -----------------------------------------------------------------


def test_cache_hit_uses_the_cached_crate_without_running_cargo(
    tmp_path: Path, cargo_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_recipe(tmp_path)
    put_in_cache(cargo_home, b"a corrupt download", registry="index.example-0")
    cached = put_in_cache(cargo_home)
    log = fake_cargo(tmp_path, monkeypatch, "exit 1")
    lines: list[str] = []
    assert image_builder.fetch_sources(folder, lines.append) == [("demo-sys-1.2.3.crate", cached)]
    assert calls(log) == []
    assert any("sha256 checked" in line for line in lines)


def test_cache_under_home_dot_cargo_without_cargo_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_cargo: None
) -> None:
    monkeypatch.delenv("CARGO_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    cached = put_in_cache(tmp_path / "user" / ".cargo")
    assert image_builder.fetch_sources(make_recipe(tmp_path), print) == [
        ("demo-sys-1.2.3.crate", cached)
    ]


def test_sha256_mismatch_is_refused_in_one_line_naming_file_and_both_hashes(
    tmp_path: Path, cargo_home: Path, no_cargo: None
) -> None:
    folder = make_recipe(tmp_path, sha256=OTHER_SHA)
    cached = put_in_cache(cargo_home)
    with pytest.raises(ImageError) as raised:
        image_builder.fetch_sources(folder, print)
    message = str(raised.value)
    assert "\n" not in message
    assert str(cached) in message
    assert CRATE_SHA in message and OTHER_SHA in message
    assert "images/demo/sources.json" in message


def test_missing_cargo_is_one_line_saying_what_to_install(
    tmp_path: Path, cargo_home: Path, no_cargo: None
) -> None:
    with pytest.raises(ImageError) as raised:
        image_builder.fetch_sources(make_recipe(tmp_path), print)
    message = str(raised.value)
    assert "\n" not in message
    assert "demo-sys 1.2.3" in message
    assert "apt-get install cargo" in message


def test_missing_crate_is_fetched_with_cargo_info_and_progress_shown(
    tmp_path: Path, cargo_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_recipe(tmp_path)
    log = fake_cargo(
        tmp_path,
        monkeypatch,
        '[ "$1" = info ] || exit 101\n'
        'mkdir -p "$(dirname "$CRATE_FILE")"\n'
        f'printf %s "{CRATE.decode()}" > "$CRATE_FILE"\n'
        'echo "  Downloaded demo-sys v1.2.3" >&2\n'
        "echo 'demo-sys: what cargo info prints on stdout'",
    )
    lines: list[str] = []
    [(name, path)] = image_builder.fetch_sources(folder, lines.append)
    assert name == "demo-sys-1.2.3.crate"
    assert path.read_bytes() == CRATE
    assert calls(log) == ["info demo-sys@1.2.3"]
    assert "[cargo] Downloaded demo-sys v1.2.3" in lines
    assert not any("what cargo info prints" in line for line in lines)


def test_cargo_without_info_falls_back_to_a_throwaway_manifest_and_fetch(
    tmp_path: Path, cargo_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = fake_cargo(
        tmp_path,
        monkeypatch,
        "if [ \"$1\" = info ]; then echo 'error: no such command: `info`' >&2; exit 101; fi\n"
        f'cat Cargo.toml >> "{tmp_path}/manifest.seen"\n'
        'mkdir -p "$(dirname "$CRATE_FILE")"\n'
        f'printf %s "{CRATE.decode()}" > "$CRATE_FILE"',
    )
    [(_, path)] = image_builder.fetch_sources(make_recipe(tmp_path), print)
    assert path.read_bytes() == CRATE
    assert calls(log) == ["info demo-sys@1.2.3", "fetch"]
    assert 'demo-sys = { version = "=1.2.3"' in (tmp_path / "manifest.seen").read_text()


def test_a_fetched_crate_with_the_wrong_sha256_is_refused(
    tmp_path: Path, cargo_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_cargo(
        tmp_path,
        monkeypatch,
        'mkdir -p "$(dirname "$CRATE_FILE")"\nprintf tampered > "$CRATE_FILE"',
    )
    with pytest.raises(ImageError, match=r"sha256 [0-9a-f]+ but images/demo/sources\.json pins"):
        image_builder.fetch_sources(make_recipe(tmp_path), print)


def test_cargo_that_fetches_nothing_is_one_line_with_its_last_words(
    tmp_path: Path, cargo_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_cargo(tmp_path, monkeypatch, "echo 'error: failed to query the index' >&2; exit 101")
    with pytest.raises(ImageError) as raised:
        image_builder.fetch_sources(make_recipe(tmp_path), print)
    message = str(raised.value)
    assert "\n" not in message
    assert "demo-sys 1.2.3" in message and "failed to query the index" in message


# --- the build context -------------------------------------------------------------------


def test_archives_go_into_the_build_context_with_fixed_metadata(
    tmp_path: Path, cargo_home: Path
) -> None:
    folder = make_recipe(tmp_path)
    cached = put_in_cache(cargo_home)
    os.utime(cached, (12345, 12345))
    recipe = image_builder.Recipe("demo", folder, "cirque/demo:x", "x" * 64, {}, "debian")
    context = image_builder._context(recipe, [("demo-sys-1.2.3.crate", cached)])
    with tarfile.open(fileobj=io.BytesIO(context.getvalue())) as tar:
        member = tar.getmember("demo-sys-1.2.3.crate")
        assert (member.mtime, member.mode, member.uid) == (0, 0o644, 0)
        extracted = tar.extractfile(member)
        assert extracted is not None and extracted.read() == CRATE
        assert {"Dockerfile", "sources.json"} <= set(tar.getnames())


def test_the_thread_recipe_copies_the_archive_it_lists() -> None:
    folder = image_builder.default_images_root() / "thread"
    [archive] = image_builder.source_archives(folder)
    assert (archive.crate, archive.version) == ("openthread-sys", "0.4.0")
    assert f"COPY {archive.file} " in (folder / "Dockerfile").read_text()
