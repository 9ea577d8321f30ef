"""The `cirque` sub-commands for homes and images: doctor, images build, ls, exec, logs,
shell, capture, down, reap.

They find homes by their Docker labels (see identity.py), so they work on the homes of
any pytest run on this host: live ones, kept ones, and the leftovers of dead ones.
Every error is a CirqueError whose one line cli.main prints before exiting with 2.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pytest_cirque.core import identity
from pytest_cirque.core.errors import CirqueError, NodeError

if TYPE_CHECKING:
    from pytest_cirque.core.docker_backend import Backend, DockerObject
    from pytest_cirque.radios.client.container import MediumContainer


#: The media `cirque capture` can follow (a home's media, homes.home.MEDIA).
CAPTURE_MEDIA = ("wifi", "lan", "thread")


def add_commands(subparsers: Any) -> None:
    """Register this module's sub-commands on the `cirque` parser."""
    doctor = subparsers.add_parser("doctor", help="check what this host supports")
    doctor.set_defaults(func=cmd_doctor)

    images = subparsers.add_parser("images", help="the project's node images")
    image_commands = images.add_subparsers(dest="images_command", metavar="ACTION", required=True)
    build = image_commands.add_parser("build", help="build node images (all when none named)")
    build.add_argument("names", nargs="*", metavar="NAME", help="image names, e.g. base wifi-ap")
    build.add_argument("--rebuild", action="store_true", help="rebuild even when up to date")
    build.set_defaults(func=cmd_images_build)

    ls = subparsers.add_parser("ls", help="list homes on this host, kept ones included")
    ls.set_defaults(func=cmd_ls)

    exec_ = subparsers.add_parser("exec", help="run a command in a node; exits with its code")
    exec_.add_argument("home")
    exec_.add_argument("node")
    exec_.add_argument("cmd", nargs=argparse.REMAINDER, metavar="CMD", help="the command")
    exec_.set_defaults(func=cmd_exec)

    logs = subparsers.add_parser("logs", help="print a node's log")
    logs.add_argument("home")
    logs.add_argument("node")
    logs.add_argument("--tail", type=int, default=100, metavar="N", help="last N lines (100)")
    logs.set_defaults(func=cmd_logs)

    shell = subparsers.add_parser("shell", help="open an interactive shell in a node")
    shell.add_argument("home")
    shell.add_argument("node")
    shell.set_defaults(func=cmd_shell)

    capture = subparsers.add_parser(
        "capture",
        help="stream what is on a home's medium as pcap, from its first frame until Ctrl-C",
    )
    capture.add_argument("home")
    capture.add_argument(
        "--medium",
        choices=CAPTURE_MEDIA,
        default="wifi",
        help="wifi: 802.11 with radiotap; lan: Ethernet; thread: 802.15.4 (default wifi)",
    )
    capture.add_argument(
        "-w",
        dest="output",
        required=True,
        metavar="FILE",
        help="the pcap file, or - for stdout: cirque capture HOME -w - | wireshark -k -i -",
    )
    capture.set_defaults(func=cmd_capture)

    down = subparsers.add_parser("down", help="remove a home and everything it owns")
    down.add_argument("home")
    down.set_defaults(func=cmd_down)

    reap = subparsers.add_parser("reap", help="remove what runs whose process is gone left")
    reap.set_defaults(func=cmd_reap)



# --- finding homes by their labels


def engine() -> Backend:
    """The backend of the local engine, or DockerUnavailable in one line."""
    from pytest_cirque.core.docker_backend import connect_backend

    return connect_backend()


def find_home(backend: Backend, name: str, *, exact: bool = False) -> dict[str, Any]:
    """The home of that id (or, unless ``exact``, of a unique part of it), else a one-line
    error that points at `cirque ls`."""
    from pytest_cirque.homes import cleanup

    homes = cleanup.list_homes(backend)
    if name in homes:
        return homes[name]
    close = sorted(home for home in homes if name in home)
    if len(close) == 1 and not exact:
        return homes[close[0]]
    if len(close) == 1:
        raise CirqueError(f"no home named {name!r}; give its full name: {close[0]}")
    hint = f"it matches several: {', '.join(close)}" if close else "`cirque ls` lists them"
    raise CirqueError(f"no home named {name!r} on this Docker engine; {hint}")


def find_node(backend: Backend, home_name: str, node_name: str) -> DockerObject:
    """The container of a node of a home, or a one-line error naming the home's nodes."""
    home = find_home(backend, home_name)
    labels = [
        f"{identity.HOME}={home['home']}",
        f"{identity.ROLE}={identity.ROLE_NODE}",
        f"{identity.NODE}={node_name}",
    ]
    found = backend.containers(labels)
    if not found:
        known = ", ".join(home["nodes"]) or "none"
        raise NodeError(f"home {home['home']} has no node {node_name!r} (its nodes: {known})")
    return found[0]


# --- the commands


def cmd_doctor(args: argparse.Namespace) -> int:
    from pytest_cirque import doctor

    return int(doctor.main() or 0)


def cmd_images_build(args: argparse.Namespace) -> int:
    from pytest_cirque.core import images as image_builder

    names = args.names or None
    built = image_builder.build_images(engine(), names, rebuild=args.rebuild, progress=print_flush)
    for name, tag in built.items():
        print_flush(f"{name}: {tag}")
    return 0


def print_flush(line: str) -> None:
    print(line, flush=True)


def cmd_ls(args: argparse.Namespace) -> int:
    from pytest_cirque.homes import cleanup

    homes = cleanup.list_homes(engine())
    if not homes:
        print("no homes")
        return 0
    rows = [("HOME", "RUN", "WORKER", "OWNER", "KEPT", "NODES")]
    for home in sorted(homes.values(), key=lambda h: h["home"]):
        rows.append(
            (
                home["home"],
                home["run"],
                home["worker"],
                "alive" if home["alive"] else "gone",
                "kept" if home["kept"] else "-",
                " ".join(home["nodes"]) or "-",
            )
        )
    print_table(rows)
    return 0


def print_table(rows: Iterable[tuple[str, ...]]) -> None:
    rows = list(rows)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]))


def cmd_exec(args: argparse.Namespace) -> int:
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not command:
        raise CirqueError("cirque exec HOME NODE CMD...: give the command to run")
    backend = engine()
    container = find_node(backend, args.home, args.node)
    if container.state != "running":
        raise NodeError(f"node {args.node} of home {args.home} is {container.state}, not running")
    result = backend.exec(
        container.id, command, node=f"{args.node} of home {args.home}", timeout=None
    )
    sys.stdout.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.write(result.stderr)
    sys.stderr.flush()
    return result.exit_code


def cmd_logs(args: argparse.Namespace) -> int:
    if args.tail < 0:
        raise CirqueError(f"--tail {args.tail}: give a number of lines >= 0")
    backend = engine()
    container = find_node(backend, args.home, args.node)
    sys.stdout.write(backend.logs(container.id, tail=args.tail))
    sys.stdout.flush()
    return 0


def cmd_shell(args: argparse.Namespace) -> int:
    backend = engine()
    container = find_node(backend, args.home, args.node)
    docker_cli = shutil.which("docker")
    if docker_cli is None:
        raise CirqueError(
            "cirque shell needs the docker command line tool on PATH; use "
            f"`cirque exec {args.home} {args.node} CMD` instead"
        )
    from pytest_cirque.capabilities.model.interactive import DEFAULT_SHELL, shell_command

    node = f"{args.node} of home {args.home}"
    has_bash = backend.exec(container.id, "command -v bash", node=node).ok
    shell = "bash" if has_bash else DEFAULT_SHELL
    os.execv(docker_cli, shell_command(container.id, shell, docker=docker_cli))
    return 0  # not reached


def find_medium(backend: Backend, home_name: str, kind: str) -> MediumContainer:
    """The running medium of that kind of a home, or a one-line error saying why not."""
    from pytest_cirque.radios.client.container import MediumContainer

    home = find_home(backend, home_name)["home"]
    # Named as Home.medium() names it.
    name = identity.object_name(home, "_medium", kind)
    found = backend.containers(
        [f"{identity.MEDIUM}={name}", f"{identity.ROLE}={identity.ROLE_MEDIUM}"]
    )
    if not found and kind == "lan":
        raise CirqueError(
            f"home {home} has no lan medium to capture: its wired LAN is a Docker bridge, "
            "which only the host's network namespace sees and cirque takes no host powers; "
            "a node with TrafficControl puts its LAN link on the lan medium"
        )
    if not found:
        raise CirqueError(f"home {home} has no {kind} medium (none of its nodes uses {kind})")
    if found[0].state != "running":
        raise NodeError(f"the {kind} medium of home {home} is {found[0].state}, not running")
    return MediumContainer.of_container(backend, found[0])


def cmd_capture(args: argparse.Namespace) -> int:
    medium = find_medium(engine(), args.home, args.medium)
    to_stdout = args.output == "-"
    try:
        output = sys.stdout.buffer if to_stdout else open(args.output, "wb")  # noqa: SIM115
    except OSError as exc:
        raise CirqueError(f"capture: cannot write {args.output}: {exc.strerror}") from None
    records = medium.follow_capture()
    try:
        for chunk in records:
            output.write(chunk)
            output.flush()
    except KeyboardInterrupt:  # Ctrl-C is how a capture ends
        pass
    except BrokenPipeError:  # the reader (Wireshark) went away
        return 0
    finally:
        records.close()
        if not to_stdout:
            output.close()
    if not to_stdout:
        print(
            f"cirque capture: the air of the {args.medium} medium is in {args.output}",
            file=sys.stderr,
        )
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from pytest_cirque.homes import cleanup

    backend = engine()
    home = find_home(backend, args.home, exact=True)["home"]  # removal wants the full name
    removed = cleanup.remove_home(backend, home)
    print(f"removed home {home} ({len(removed)} objects)")
    return 0


def cmd_reap(args: argparse.Namespace) -> int:
    from pytest_cirque.homes import cleanup

    removed = cleanup.reap(engine(), dead_only=True)
    for name in removed:
        print(f"removed {name}")
    print(f"reaped {len(removed)} objects of dead runs")
    return 0
