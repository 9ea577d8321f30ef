"""Weave: a device's credentials/provisioning file mounted where its daemon reads it.

Cirque mounted a Weave provisioning file at the Nest device path below and named the device
daemon (``nldaemon``). Nothing here is Weave-specific beyond those defaults: any credential
file and any daemon work. The node learns both through its environment:
``CIRQUE_CREDENTIALS_FILE`` (the target path) and ``CIRQUE_DAEMON`` (the daemon name).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytest_cirque.capabilities.model.base import (
    Capability,
    ContainerConfig,
    Mount,
    Params,
    check_host_path,
    check_node_path,
    register,
)

#: Where Cirque put the provisioning file in the node.
DEFAULT_TARGET = "/mnt/stateful_partition/nestlabs/device_provisioning.config"
#: Cirque's device daemon.
DEFAULT_DAEMON = "nldaemon"
#: Environment variables the node's software reads.
FILE_ENV = "CIRQUE_CREDENTIALS_FILE"
DAEMON_ENV = "CIRQUE_DAEMON"


@register
class Weave(Capability):
    """Mount a credentials file at ``target`` and name the daemon that reads it."""

    name = "Weave"

    def __init__(
        self,
        file: str,
        target: str = DEFAULT_TARGET,
        daemon: str = DEFAULT_DAEMON,
        read_only: bool = False,
    ) -> None:
        super().__init__(file=file, target=target, daemon=daemon, read_only=read_only)
        self.file = file
        self.target = target
        self.daemon = daemon
        self.read_only = read_only

    @classmethod
    def params_from_cirque(cls, node_config: Mapping[str, Any]) -> dict[str, Any]:
        keys = {"weave_config_file": "file", "weave_config_target_path": "target"}
        return {ours: node_config[theirs] for theirs, ours in keys.items() if theirs in node_config}

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None, where: str) -> Weave:
        reader = Params(params, where, cls.name)
        field_name, file = reader.raw("file", aliases=("config", "weave_config_file"))
        reader.required(
            field_name, file, "the host path of the credentials file to mount in the node"
        )
        file = check_host_path(file, field_name, where, cls.name)
        target_field, target = reader.raw(
            "target", aliases=("target_path", "weave_config_target_path")
        )
        target = check_node_path(
            DEFAULT_TARGET if target is None else target, target_field, where, cls.name
        )
        daemon = reader.text("daemon", default=DEFAULT_DAEMON)
        read_only = reader.boolean("read_only", default=False)
        reader.done()
        return cls(file=file, target=target, daemon=daemon, read_only=read_only)

    def configure(self, config: ContainerConfig, node_name: str) -> None:
        config.mounts.append(Mount(source=self.file, target=self.target, read_only=self.read_only))
        config.environment[FILE_ENV] = self.target
        config.environment[DAEMON_ENV] = self.daemon
