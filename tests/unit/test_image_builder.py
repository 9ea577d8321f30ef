"""Recipe hashing, tags, parent pinning and the other pure parts of the image builder."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from pytest_cirque.core import images as image_builder
from pytest_cirque.core.errors import DockerUnavailable, ImageError
from pytest_cirque.core.images import Parent


def make_recipe(root: Path, name: str, dockerfile: str, **files: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text(dockerfile)
    for filename, text in files.items():
        (folder / filename).write_text(text)
    return folder


def test_project_images_are_the_folders_with_a_dockerfile(tmp_path: Path) -> None:
    make_recipe(tmp_path, "b-image", "FROM ${BASE}\n")
    make_recipe(tmp_path, "a-image", "FROM ${BASE}\n")
    (tmp_path / "notes").mkdir()
    (tmp_path / "README").write_text("not a recipe")
    assert image_builder.project_images(tmp_path) == ["a-image", "b-image"]


def test_the_shipped_recipes_are_project_images() -> None:
    names = image_builder.project_images()
    assert {"base", "wifi-ap", "mqtt-broker"} <= set(names)


def test_parents_tells_debian_base_project_images_and_external_images() -> None:
    text = "\n".join(
        [
            "ARG BASE=debian:bookworm-slim",
            "FROM ${BASE} AS build",
            "FROM build",
            "from --platform=linux/amd64 $BASE",
            "FROM cirque/base",
            "FROM cirque/wifi-ap:latest",
            "FROM cirque/not-a-recipe",
            "FROM alpine:3.19",
        ]
    )
    assert image_builder.parents(text, ["base", "wifi-ap"]) == [
        Parent("${BASE}", "debian"),
        Parent("$BASE", "debian"),
        Parent("cirque/base", "project", "base"),
        Parent("cirque/wifi-ap:latest", "project", "wifi-ap"),
        Parent("cirque/not-a-recipe", "external"),
        Parent("alpine:3.19", "external"),
    ]


def test_recipe_hash_is_stable_for_unchanged_files(tmp_path: Path) -> None:
    folder = make_recipe(tmp_path, "x", "FROM ${BASE}\nCOPY conf /etc/conf\n", conf="a=1\n")
    first = image_builder.recipe_hash(folder, ["debian abc"])
    os.utime(folder / "conf", (1, 1))  # a touched file is not a changed recipe
    (folder / ".hidden").write_text("editor state")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert image_builder.recipe_hash(folder, ["debian abc"]) == first


@pytest.mark.parametrize("change", ["content", "new file", "exec bit", "parent", "rename"])
def test_recipe_hash_changes_with_the_recipe_or_its_parent(tmp_path: Path, change: str) -> None:
    folder = make_recipe(tmp_path, "x", "FROM ${BASE}\nCOPY conf /etc/conf\n", conf="a=1\n")
    before = image_builder.recipe_hash(folder, ["debian abc"])
    parent = "debian abc"
    if change == "content":
        (folder / "conf").write_text("a=2\n")
    elif change == "new file":
        (folder / "extra.sh").write_text("echo\n")
    elif change == "exec bit":
        (folder / "conf").chmod(0o755)
    elif change == "parent":
        parent = "debian def"
    elif change == "rename":
        (folder / "conf").rename(folder / "conf2")
    assert image_builder.recipe_hash(folder, [parent]) != before


def test_image_tag_is_the_repository_name_and_twelve_hash_digits() -> None:
    digest = "0123456789abcdef" * 4
    assert image_builder.image_tag("wifi-ap", digest) == "cirque/wifi-ap:0123456789ab"


def test_bootstrapped_debian_base_never_takes_a_debian_name() -> None:
    tag = image_builder.debian_bootstrap_tag()
    assert tag.startswith("cirque/debian:bookworm-")
    assert len(tag.rsplit("-", 1)[1]) == 12
    assert tag == image_builder.debian_bootstrap_tag()


def test_pin_parents_rewrites_only_project_references_in_from_lines() -> None:
    text = "FROM cirque/base AS stage\nRUN echo cirque/base\nFROM stage\n"
    pinned = image_builder.pin_parents(text, {"cirque/base": "cirque/base:0123456789ab"})
    assert pinned == ("FROM cirque/base:0123456789ab AS stage\nRUN echo cirque/base\nFROM stage\n")


def test_build_context_holds_the_pinned_dockerfile_and_file_modes(tmp_path: Path) -> None:
    folder = make_recipe(tmp_path, "child", "FROM cirque/base\nCOPY run.sh /\n", **{"run.sh": ""})
    (folder / "run.sh").chmod(0o755)
    recipe = image_builder.Recipe(
        "child", folder, "cirque/child:0", "0" * 64, {"cirque/base": "cirque/base:111"}, None
    )
    with tarfile.open(fileobj=image_builder._context(recipe)) as tar:
        names = tar.getnames()
        dockerfile = tar.extractfile("Dockerfile").read().decode()  # type: ignore[union-attr]
        mode = tar.getmember("run.sh").mode
    assert sorted(names) == ["Dockerfile", "run.sh"]
    assert dockerfile.startswith("FROM cirque/base:111\n")
    assert mode == 0o755


def test_apt_sources_file_picks_the_deb822_file_serving_bookworm(tmp_path: Path) -> None:
    sources = tmp_path / "sources.list.d"
    sources.mkdir()
    (sources / "other.sources").write_text(
        "Types: deb\nURIs: http://example.invalid\nSuites: jammy\n"
    )
    (sources / "debian.sources").write_text(
        "Types: deb\nURIs: http://example.invalid/debian\nSuites: bookworm bookworm-updates\n"
    )
    (sources / "debian.sources.disabled").write_text("Suites: bookworm\n")
    assert image_builder.apt_sources_file(tmp_path) == sources / "debian.sources"


def test_apt_sources_file_missing_is_one_line_saying_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    with pytest.raises(ImageError) as caught:
        image_builder.apt_sources_file(tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert "bookworm" in message and "docker load" in message


def test_first_error_is_mmdebstraps_cause_not_its_last_words() -> None:
    lines = ["I: downloading", "E: cannot find package file x.deb", "E: mmdebstrap failed to run"]
    assert image_builder._first_error(lines) == "E: cannot find package file x.deb"
    assert image_builder._first_error(["I: only info"]) == "I: only info"
    assert image_builder._first_error([]) == ""


def test_created_at_reads_dockers_nanosecond_timestamps() -> None:
    created = "2026-11-21T16:15:41.409872841Z"
    assert image_builder._created_at(created) == pytest.approx(1795277741.409872, abs=1e-3)


def test_build_locks_live_in_the_users_home_even_when_home_is_moved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = image_builder._lock_dir()
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert image_builder._lock_dir() == expected
    assert not (tmp_path / "cache").exists()


def test_default_progress_prints_one_line_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    image_builder.print_progress("[base] Step 1/7 : FROM x")
    captured = capsys.readouterr()
    assert captured.err == "[base] Step 1/7 : FROM x\n"
    assert captured.out == ""


def test_docker_unreachable_is_one_line_and_nothing_else_happens(tmp_path: Path) -> None:
    import docker

    client = docker.DockerClient(base_url=f"unix://{tmp_path}/no-docker.sock", version="1.41")
    for name in ("base", "someones/image:1"):
        with pytest.raises(DockerUnavailable) as caught:
            image_builder.ensure_image(client, name, progress=pytest.fail)
        assert "\n" not in str(caught.value)
        assert "start Docker or set DOCKER_HOST" in str(caught.value)


@pytest.mark.parametrize("name", ["", " base", "base "])
def test_blank_image_names_are_refused_before_docker_is_asked(name: str) -> None:
    with pytest.raises(ImageError, match="empty or has spaces"):
        image_builder.ensure_image(None, name)  # type: ignore[arg-type]


def test_a_from_cycle_between_recipes_is_refused_before_docker_is_asked(tmp_path: Path) -> None:
    make_recipe(tmp_path, "loop-a", "FROM cirque/loop-b\n")
    make_recipe(tmp_path, "loop-b", "FROM cirque/loop-a\n")
    with pytest.raises(ImageError, match="FROM cycle loop-a -> loop-b -> loop-a"):
        image_builder.ensure_image(None, "loop-a", images_root=tmp_path)  # type: ignore[arg-type]
