"""Mount: a host folder seen inside a node, read-write or read-only."""

import pytest

from pytest_cirque.core.errors import SpecError


def test_a_host_folder_is_shared_both_ways(home_factory, tmp_path):
    (tmp_path / "config.json").write_text('{"mode": "eco"}')
    node = home_factory(
        {"dev": {"capabilities": [{"Mount": {"source": str(tmp_path), "target": "/data"}}]}}
    )["dev"]
    assert node.exec("cat /data/config.json", check=True).stdout == '{"mode": "eco"}'
    node.exec("echo written-by-node > /data/out.txt", check=True)
    assert (tmp_path / "out.txt").read_text() == "written-by-node\n"


def test_a_read_only_mount_refuses_writes(home_factory, tmp_path):
    spec = {"source": str(tmp_path), "target": "/ro", "read_only": True}
    node = home_factory({"dev": {"capabilities": [{"Mount": spec}]}})["dev"]
    result = node.exec("touch /ro/nope")
    assert result.exit_code != 0
    assert "Read-only file system" in result.stderr
    assert not (tmp_path / "nope").exists()


def test_a_relative_host_path_is_refused_before_anything_is_made(home_factory):
    with pytest.raises(SpecError, match="Mount"):
        home_factory({"dev": {"capabilities": [{"Mount": {"source": "data", "target": "/d"}}]}})
