"""Interactive: keep the node's stdin open with a terminal, so a person can attach a shell.

Cirque toggled ``stdin_open`` for nodes meant to be driven by hand (a "mobile" node). Here
the container gets stdin and a tty, and ``shell_command`` gives the command line that opens
a shell in a node, which `cirque shell HOME NODE` runs for a kept home.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytest_cirque.capabilities.model.base import Capability, ContainerConfig, Params, register

#: Shell started when none is asked for: every image we build, and most others, have it.
DEFAULT_SHELL = "/bin/sh"


@register
class Interactive(Capability):
    """stdin open and a tty on the node's container; ``shell`` is what `cirque shell` runs."""

    name = "Interactive"

    def __init__(self, shell: str = DEFAULT_SHELL) -> None:
        super().__init__(shell=shell)
        self.shell = shell

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None, where: str) -> Interactive:
        reader = Params(params, where, cls.name)
        shell = reader.text("shell", default=DEFAULT_SHELL)
        reader.done()
        return cls(shell=shell)

    def configure(self, config: ContainerConfig, node_name: str) -> None:
        config.stdin_open = True
        config.tty = True


def shell_command(
    container: str, shell: str = DEFAULT_SHELL, *, docker: str = "docker"
) -> list[str]:
    """The command line that attaches an interactive shell to a running node container.

    ``container`` is the node's container name or id; the docker CLI honours DOCKER_HOST,
    so the same line works against a remote engine.
    """
    return [docker, "exec", "-it", container, shell]
