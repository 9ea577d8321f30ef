"""The one module that talks to docker-py.

Homes, nodes, networks and cleanup go through the narrow ``Backend`` interface below,
so the rest of the project speaks of nodes and segments, not of Docker API calls. The
low-level API is used on purpose: one HTTP call per operation, no hidden re-inspects,
which keeps a node without capabilities as cheap as a bare create + start.
"""

from __future__ import annotations

import contextlib
import io
import os
import posixpath
import tarfile
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import docker
import docker.errors
import requests.exceptions

from pytest_cirque.core.errors import (
    CirqueError,
    DockerUnavailable,
    EngineError,
    ExecTimeout,
    ImageError,
    NodeError,
    ParentInUse,
    StaleNetwork,
    SubnetTaken,
)
from pytest_cirque.core.waiting import wait_until

KIND_CONTAINER = "container"
KIND_NETWORK = "network"
KIND_VOLUME = "volume"
#: Seconds a network may claim endpoints with no container before it counts as stale.
STALE_AFTER_S = 2.0
#: Seconds a just-started exec may be reported running without a pid.
EXEC_PID_WAIT_S = 10.0
#: The client library behind the backend, as doctor reports it.
CLIENT_LIBRARY = f"docker-py {docker.__version__}"


@dataclass
class ExecResult:
    """What a command run in a node produced. The exit code is never lost."""

    exit_code: int
    stdout: str
    stderr: str
    command: str
    node: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class DockerObject:
    """A labelled Docker object found by a label query."""

    kind: str
    id: str
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    #: A container's state ("created", "running", "exited", ...); "" for other kinds.
    state: str = ""


@dataclass
class ImageInfo:
    """A local image: what the image builder and doctor need to know of it."""

    id: str
    tags: tuple[str, ...]
    labels: dict[str, str]
    #: Creation time as Docker writes it (RFC 3339 with nanoseconds).
    created: str


def connect(client: Any | None = None, *, timeout: float | None = None) -> Any:
    """A docker client that answered a ping, or DockerUnavailable in one line."""
    try:
        if client is None:
            seconds = timeout or int(os.environ.get("CIRQUE_DOCKER_TIMEOUT", "120"))
            client = docker.from_env(timeout=int(seconds))
        client.ping()
    except Exception as exc:
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DockerUnavailable(
            f"Docker engine unreachable at {host} ({reason}); start Docker or make its "
            "socket accessible to this user (docker group), or set DOCKER_HOST"
        ) from None
    return client


def connect_backend(*, timeout: float | None = None) -> Backend:
    """A backend on the engine of the environment (DOCKER_HOST), checked with a ping."""
    return Backend(connect(timeout=timeout))


def as_backend(target: Backend | Any) -> Backend:
    """The backend itself, or a backend over a docker client handed in by older callers."""
    return target if isinstance(target, Backend) else Backend(target)


def _explanation(exc: docker.errors.APIError) -> str:
    return str(getattr(exc, "explanation", None) or exc)


def _first_line(text: str) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


@contextlib.contextmanager
def _engine(doing: str, refused: type[CirqueError] = EngineError) -> Iterator[None]:
    """docker-py's failures as one-line project errors naming what was being done: a
    refused request is ``refused``, a lost engine DockerUnavailable."""
    try:
        yield
    except docker.errors.APIError as exc:
        reason = _first_line(_explanation(exc))
        raise refused(f"Docker refused the request while {doing}: {reason}") from exc
    except (requests.exceptions.ConnectionError, docker.errors.DockerException) as exc:
        reason = _first_line(str(exc)) or type(exc).__name__
        raise DockerUnavailable(
            f"Docker engine unreachable while {doing} ({reason}); start Docker or set DOCKER_HOST"
        ) from exc


def _image_info(attrs: Mapping[str, Any]) -> ImageInfo:
    return ImageInfo(
        id=str(attrs.get("Id", "")),
        tags=tuple(attrs.get("RepoTags") or ()),
        labels=dict((attrs.get("Config") or {}).get("Labels") or {}),
        created=str(attrs.get("Created", "")),
    )


def _split_reference(ref: str) -> tuple[str, str]:
    """Repository and tag of an image reference ("latest" when it names none); a registry
    port ("host:5000/x") is not a tag."""
    if ":" in ref.split("/")[-1]:
        repository, _, tag = ref.rpartition(":")
        return repository, tag
    return ref, "latest"


def _command_text(cmd: str | Sequence[str]) -> str:
    return cmd if isinstance(cmd, str) else " ".join(str(c) for c in cmd)


def _as_argv(cmd: str | Sequence[str]) -> list[str]:
    return ["sh", "-c", cmd] if isinstance(cmd, str) else [str(c) for c in cmd]


def _descendants(host_pid: int) -> list[int]:
    """A process and its descendants as host pids (read from /proc; empty if unreadable)."""
    found, pending = [], [host_pid]
    while pending:
        pid = pending.pop()
        found.append(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as children:
                    pending.extend(int(c) for c in children.read().split())
        except OSError:
            continue
    return found


def _namespace_pid(host_pid: int) -> int | None:
    """The pid of a host process inside its innermost pid namespace (NSpid)."""
    try:
        with open(f"/proc/{host_pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None


class Backend:
    """Narrow interface over one docker client."""

    def __init__(self, client: Any) -> None:
        self.client = client

    @property
    def api(self) -> Any:
        """The client's low-level API (looked up on use: making a backend asks nothing)."""
        return self.client.api

    # ---- images ---------------------------------------------------------------------

    def image_config(self, image: str) -> dict[str, Any] | None:
        """The image's Config block (Cmd, Entrypoint, ...), or None when it is not local."""
        try:
            return self.api.inspect_image(image).get("Config") or {}
        except docker.errors.ImageNotFound:
            return None

    def image(self, ref: str) -> ImageInfo | None:
        """A local image by reference or id, or None when it is not here."""
        with _engine(f"looking for image {ref}", ImageError):
            try:
                return _image_info(self.api.inspect_image(ref))
            except docker.errors.ImageNotFound:
                return None

    def image_tags(self, repository: str) -> list[str]:
        """Every local tag of one repository ("cirque/base" -> "cirque/base:0123...")."""
        with _engine(f"listing the images of {repository}", ImageError):
            images = self.api.images(name=repository)
        return sorted(tag for image in images for tag in image.get("RepoTags") or ())

    def pull_image(self, ref: str) -> str | None:
        """Pull an image; None when it came, else why not (fast when offline)."""
        repository, tag = _split_reference(ref)
        try:
            for event in self.api.pull(repository, tag, stream=True, decode=True):
                if "error" in event:
                    return str(event["error"]).strip()
        except docker.errors.APIError as exc:
            return _explanation(exc).strip()
        except requests.exceptions.RequestException as exc:
            return str(exc)
        return None

    def build_image(
        self,
        context: IO[bytes],
        *,
        tag: str,
        labels: Mapping[str, str],
        buildargs: Mapping[str, str] | None = None,
        nocache: bool = False,
        timeout: float = 1800,
    ) -> Iterator[dict[str, Any]]:
        """Build from a tar context (its parents must be local: nothing is pulled); yields
        the engine's progress events as they come ("stream", "error", ...)."""
        with _engine(f"building {tag}", ImageError):
            yield from self.api.build(
                fileobj=context,
                custom_context=True,
                tag=tag,
                buildargs=dict(buildargs) if buildargs else None,
                labels=dict(labels),
                nocache=nocache,
                pull=False,
                rm=True,
                forcerm=True,
                decode=True,
                timeout=int(timeout),
            )

    def import_image(self, path: str, *, ref: str, changes: Sequence[str] = ()) -> None:
        """Import a root filesystem tarball as the image ``ref`` (Dockerfile ``changes``)."""
        repository, tag = _split_reference(ref)
        with _engine(f"importing {ref}", ImageError):
            self.api.import_image_from_file(
                path, repository=repository, tag=tag, changes=list(changes) or None
            )

    def tag_image(self, image: str, ref: str) -> None:
        """Give a local image another reference."""
        repository, tag = _split_reference(ref)
        with _engine(f"tagging {image} as {ref}", ImageError):
            self.api.tag(image, repository, tag)

    def remove_image(self, ref: str, *, force: bool = False) -> None:
        """Remove a local image; a missing one is fine. ImageError when Docker refuses
        (a container still uses it)."""
        with _engine(f"removing image {ref}", ImageError):
            try:
                self.api.remove_image(ref, force=force)
            except docker.errors.ImageNotFound:
                return

    # ---- the engine -----------------------------------------------------------------

    def engine_version(self) -> dict[str, Any]:
        """The engine's version document (Version, ApiVersion, Os, ...)."""
        with _engine("asking the engine's version"):
            return dict(self.api.version())

    # ---- networks -------------------------------------------------------------------

    def used_subnets(self) -> list[str]:
        """Every IPv4/IPv6 subnet of every Docker network on this engine."""
        subnets = []
        for net in self.api.networks():
            for config in (net.get("IPAM") or {}).get("Config") or []:
                if config.get("Subnet"):
                    subnets.append(config["Subnet"])
        return subnets

    def create_network(
        self,
        name: str,
        *,
        labels: Mapping[str, str],
        subnet: str | None = None,
        gateway: str | None = None,
        ip_range: str | None = None,
        ipv6_subnet: str | None = None,
        ipv6_gateway: str | None = None,
        internal: bool = False,
        icc: bool = True,
        driver: str = "bridge",
        parent: str | None = None,
    ) -> str:
        """Create a network; SubnetTaken when Docker reports an overlapping pool."""
        pools = []
        if subnet:
            pools.append(docker.types.IPAMPool(subnet=subnet, gateway=gateway, iprange=ip_range))
        if ipv6_subnet:
            pools.append(docker.types.IPAMPool(subnet=ipv6_subnet, gateway=ipv6_gateway))
        options: dict[str, str] = {}
        if driver == "bridge" and not icc:
            options["com.docker.network.bridge.enable_icc"] = "false"
        if driver == "macvlan" and parent:
            options["parent"] = parent
        try:
            response = self.api.create_network(
                name,
                driver=driver,
                options=options or None,
                ipam=docker.types.IPAMConfig(pool_configs=pools) if pools else None,
                internal=internal,
                labels=dict(labels),
                enable_ipv6=bool(ipv6_subnet),
                check_duplicate=True,
            )
        except docker.errors.APIError as exc:
            text = _explanation(exc)
            if "overlap" in text.lower():
                raise SubnetTaken(text) from None
            if "parent interface" in text.lower():
                raise ParentInUse(text) from None
            raise
        return response["Id"]

    def remove_network(self, name_or_id: str) -> None:
        """Remove a network; a missing one is fine. Retries while endpoints drain (Docker
        may report them for a moment after their containers are gone). A network that
        still reports endpoints with no container attached after STALE_AFTER_S has a
        stale endpoint, a Docker bug only a daemon restart clears: StaleNetwork."""
        first_empty: list[float] = []
        shown_name = [name_or_id]

        def removed() -> bool:
            """Try once; True when gone. An "active endpoints" refusal is "not yet" while
            a container still leaves it, or for STALE_AFTER_S once none is attached."""
            try:
                self.api.remove_network(name_or_id)
            except docker.errors.NotFound:
                return True
            except docker.errors.APIError as exc:
                if "active endpoints" not in _explanation(exc):
                    raise
                info = self.network_info(name_or_id) or {}
                shown_name[:] = [info.get("Name") or name_or_id]
                if info.get("Containers"):
                    first_empty.clear()
                    return False
                first_empty[:1] = first_empty[:1] or [time.monotonic()]
                if time.monotonic() - first_empty[0] < STALE_AFTER_S:
                    return False
                raise StaleNetwork(
                    f"network {shown_name[0]} reports active endpoints but has no container "
                    "(a Docker engine bug); it is harmless, and a restart of the Docker "
                    "daemon when no tests run frees it"
                ) from exc
            return True

        wait_until(
            removed, f"network {name_or_id} to be removable", 30, ignore=(), max_interval=1.0
        )

    def network_info(self, name_or_id: str) -> dict[str, Any] | None:
        try:
            return self.api.inspect_network(name_or_id)
        except docker.errors.NotFound:
            return None

    # ---- volumes --------------------------------------------------------------------

    def create_volume(self, name: str, labels: Mapping[str, str]) -> None:
        self.api.create_volume(name, labels=dict(labels))

    def remove_volume(self, name: str) -> None:
        try:
            self.api.remove_volume(name, force=True)
        except docker.errors.NotFound:
            return

    # ---- containers -----------------------------------------------------------------

    def create_container(
        self,
        name: str,
        image: str,
        *,
        labels: Mapping[str, str],
        command: str | Sequence[str] | None = None,
        entrypoint: Sequence[str] | None = None,
        environment: Mapping[str, str] | None = None,
        hostname: str | None = None,
        network: str | None = None,
        aliases: Sequence[str] = (),
        network_mode: str | None = None,
        cap_add: Sequence[str] = (),
        devices: Sequence[str] = (),
        sysctls: Mapping[str, str] | None = None,
        binds: Mapping[str, Mapping[str, str]] | None = None,
        stdin_open: bool = False,
        tty: bool = False,
        init: bool = False,
        ulimits: Mapping[str, int] | None = None,
        **extra_host_config: Any,
    ) -> str:
        """Create (not start) a container; returns its id. ``ulimits`` maps a limit's name
        ("nofile") to the value of both its soft and hard limit; other keyword options are
        host settings (pid_mode, cap_drop, security_opt, ...)."""
        host_config = self.api.create_host_config(
            network_mode=network_mode or network,
            cap_add=list(cap_add) or None,
            devices=list(devices) or None,
            sysctls=dict(sysctls) if sysctls else None,
            binds=dict(binds) if binds else None,
            init=init or None,
            ulimits=[
                docker.types.Ulimit(name=name, soft=int(value), hard=int(value))
                for name, value in (ulimits or {}).items()
            ]
            or None,
            **extra_host_config,
        )
        networking_config = None
        if network and not network_mode:
            networking_config = self.api.create_networking_config(
                {network: self.api.create_endpoint_config(aliases=list(aliases) or None)}
            )
        response = self.api.create_container(
            image,
            command=command,
            entrypoint=list(entrypoint) if entrypoint is not None else None,
            name=name,
            # Docker refuses a hostname only where the network namespace is shared.
            hostname=hostname if network_mode in (None, "none") else None,
            environment=dict(environment) if environment else None,
            labels=dict(labels),
            host_config=host_config,
            networking_config=networking_config,
            stdin_open=stdin_open,
            tty=tty,
            detach=True,
        )
        return response["Id"]

    def start(self, container: str) -> None:
        self.api.start(container)

    def stop(self, container: str, timeout: float = 10) -> None:
        self.api.stop(container, timeout=int(timeout))

    def restart(self, container: str, timeout: float = 10) -> None:
        self.api.restart(container, timeout=int(timeout))

    def remove_container(self, container: str) -> None:
        """Kill and remove a container; a missing one is fine."""
        try:
            self.api.remove_container(container, force=True, v=True)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            if "already in progress" in _explanation(exc):
                return
            raise

    def inspect(self, container: str) -> dict[str, Any] | None:
        try:
            return self.api.inspect_container(container)
        except docker.errors.NotFound:
            return None

    def wait(self, container: str, timeout: float) -> int:
        return int(self.api.wait(container, timeout=timeout)["StatusCode"])

    def logs(self, container: str, tail: int | str = 100) -> str:
        try:
            data = self.api.logs(container, stdout=True, stderr=True, tail=tail)
        except docker.errors.NotFound:
            return ""
        return data.decode("utf-8", errors="replace")

    def split_logs(self, container: str, tail: int | str = "all") -> tuple[str, str]:
        """A container's stdout and stderr apart (a script's result and its complaints);
        empty for a container that is gone."""
        streams = []
        for stdout in (True, False):
            try:
                data = self.api.logs(container, stdout=stdout, stderr=not stdout, tail=tail)
            except docker.errors.NotFound:
                data = b""
            streams.append(data.decode("utf-8", errors="replace"))
        return streams[0], streams[1]

    def containers(
        self, label_filters: Iterable[str] = (), *, name: str | None = None
    ) -> list[DockerObject]:
        """Containers, running or not, whose labels match every filter ("key" or
        "key=value") and, when given, whose name contains ``name``."""
        filters: dict[str, Any] = {"label": list(label_filters)}
        if name:
            filters["name"] = name
        with _engine("listing containers"):
            found = self.api.containers(all=True, filters=filters)
        return [
            DockerObject(
                KIND_CONTAINER,
                c["Id"],
                c["Names"][0].lstrip("/"),
                c.get("Labels") or {},
                str(c.get("State") or ""),
            )
            for c in found
        ]

    # ---- exec -----------------------------------------------------------------------

    def exec(
        self,
        container: str,
        cmd: str | Sequence[str],
        *,
        node: str,
        timeout: float | None = 30,
        environment: Mapping[str, str] | None = None,
        user: str = "",
    ) -> ExecResult:
        """Run a command and collect its output; ExecTimeout (after killing it) on timeout."""
        exec_id = self._exec_create(container, cmd, node, environment, user)
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                with self._start_attached(exec_id) as connection:
                    outcome["output"] = connection.read_all()
            except BaseException as exc:  # handed back to the caller's thread
                outcome["error"] = exc

        worker = threading.Thread(target=run, name=f"exec-{node}", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            self.kill_exec(container, exec_id, node=node, command=_command_text(cmd))
            raise ExecTimeout(
                f"node {node}: command {_command_text(cmd)!r} did not finish within "
                f"{timeout:g} s and was killed; raise timeout= or look at node.logs()"
            )
        if "error" in outcome:
            raise self._exec_error(outcome["error"], node, cmd)
        stdout, stderr = outcome["output"]
        return ExecResult(
            exit_code=self._exit_code(exec_id),
            stdout=stdout.decode("utf-8", errors="replace"),
            stderr=stderr.decode("utf-8", errors="replace"),
            command=_command_text(cmd),
            node=node,
        )

    def exec_stream(
        self, container: str, cmd: Sequence[str], *, node: str
    ) -> Generator[bytes, None, None]:
        """Run a command and yield its stdout as it comes, in chunks, until it ends;
        closing the iterator kills it (a follower such as ``tail -f`` never ends)."""
        exec_id = self._exec_create(container, cmd, node, None, "")
        try:
            with (
                _engine(f"reading the output of {_command_text(cmd)!r} in {node}", NodeError),
                self._start_attached(exec_id) as connection,
            ):
                for stream, payload in connection.frames():
                    if stream == STDOUT:
                        yield payload
        finally:
            if self.exec_running(exec_id):
                self.kill_exec(container, exec_id, node=node, command=_command_text(cmd))

    def exec_background(
        self, container: str, cmd: str | Sequence[str], *, node: str
    ) -> BackgroundExec:
        exec_id = self._exec_create(container, cmd, node, None, "")
        return BackgroundExec(self, container, exec_id, _command_text(cmd), node)

    def _start_attached(self, exec_id: str) -> ExecConnection:
        """Start a created exec with its streams joined to a connection we read."""
        response = self.api._post_json(
            self.api._url("/exec/{0}/start", exec_id),
            headers={"Connection": "Upgrade", "Upgrade": "tcp"},
            data={"Tty": False, "Detach": False},
            stream=True,
        )
        self.api._raise_for_status(response)
        return ExecConnection(response)

    def _exec_create(
        self,
        container: str,
        cmd: str | Sequence[str],
        node: str,
        environment: Mapping[str, str] | None,
        user: str,
    ) -> str:
        try:
            return self.api.exec_create(
                container, _as_argv(cmd), environment=dict(environment or {}) or None, user=user
            )["Id"]
        except docker.errors.APIError as exc:
            raise self._exec_error(exc, node, cmd) from None

    @staticmethod
    def _exec_error(exc: BaseException, node: str, cmd: str | Sequence[str]) -> BaseException:
        if not isinstance(exc, docker.errors.APIError):
            return exc
        text = _explanation(exc).splitlines()[0]
        return NodeError(
            f"node {node}: cannot run {_command_text(cmd)!r}: {text}; check that the node "
            "is running (node.state) and the program exists in its image"
        )

    def _exit_code(self, exec_id: str) -> int:
        code = self.api.exec_inspect(exec_id).get("ExitCode")
        return -1 if code is None else int(code)

    def exec_running(self, exec_id: str) -> bool:
        """True until the command has ended. Right after its start the engine may report
        an exec neither running nor ended (no exit code yet): that counts as running, or a
        command just started would look as if it had already exited."""
        try:
            info = self.api.exec_inspect(exec_id)
        except docker.errors.NotFound:
            return False
        return bool(info.get("Running")) or info.get("ExitCode") is None

    def exec_pid(self, container: str, exec_id: str, *, node: str, command: str) -> int:
        """The host pid of an exec'd process, 0 once it has ended. Right after its start
        Docker reports it running with pid 0 for a moment: wait for the pid until
        EXEC_PID_WAIT_S, then WaitTimeout."""

        def settled() -> dict[str, Any] | None:
            info = dict(self.api.exec_inspect(exec_id))
            return None if info.get("Running") and not info.get("Pid") else info

        try:
            info = wait_until(
                settled,
                f"the process id of {command!r} in node {node} (Docker reports it running "
                "without one)",
                EXEC_PID_WAIT_S,
                log=lambda: self.logs(container, tail=50),
                ignore=(),
                max_interval=0.1,
            )
        except docker.errors.APIError:
            return 0
        return int(info.get("Pid") or 0)

    def kill_exec(self, container: str, exec_id: str, *, node: str = "", command: str = "") -> None:
        """Kill an exec'd process and its descendants. Works without privilege: the host
        pids are read from /proc and killed from inside the container by their namespace
        pids (any image with a `kill` program or a shell)."""
        host_pid = self.exec_pid(container, exec_id, node=node or container, command=command)
        if host_pid <= 0:
            return
        ns_pids = [p for p in map(_namespace_pid, _descendants(host_pid)) if p]
        if not ns_pids:
            return
        targets = " ".join(str(p) for p in ns_pids)
        for argv in (["kill", "-KILL", *targets.split()], ["sh", "-c", f"kill -KILL {targets}"]):
            try:
                kill_id = self.api.exec_create(container, argv)["Id"]
                with self._start_attached(kill_id) as connection:
                    connection.read_all()
                if self._exit_code(kill_id) == 0:
                    return
            except docker.errors.APIError:
                continue

    # ---- files ----------------------------------------------------------------------

    def put_file(self, container: str, path: str, data: bytes, mode: int) -> bool:
        """Write one file through a tar archive; False when its directory does not exist."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            info = tarfile.TarInfo(posixpath.basename(path))
            info.size = len(data)
            info.mode = mode
            archive.addfile(info, io.BytesIO(data))
        try:
            return bool(
                self.api.put_archive(container, posixpath.dirname(path) or "/", buffer.getvalue())
            )
        except docker.errors.NotFound:
            return False

    def get_file(self, container: str, path: str) -> bytes | None:
        """Read one file through a tar archive; None when it does not exist."""
        try:
            stream, _stat = self.api.get_archive(container, path)
        except docker.errors.NotFound:
            return None
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream)), mode="r") as archive:
            for member in archive.getmembers():
                if member.isfile():
                    extracted = archive.extractfile(member)
                    return extracted.read() if extracted else b""
        return None

    # ---- label queries --------------------------------------------------------------

    def find(self, label_filters: Iterable[str]) -> list[DockerObject]:
        """Containers, networks and volumes whose labels match every filter
        ("key" or "key=value")."""
        filters = {"label": list(label_filters)}
        found = [
            DockerObject(
                KIND_CONTAINER,
                c["Id"],
                c["Names"][0].lstrip("/"),
                c.get("Labels") or {},
                str(c.get("State") or ""),
            )
            for c in self.api.containers(all=True, filters=filters)
        ]
        found += [
            DockerObject(KIND_NETWORK, n["Id"], n["Name"], n.get("Labels") or {})
            for n in self.api.networks(filters=filters)
        ]
        volumes = self.api.volumes(filters=filters).get("Volumes") or []
        found += [
            DockerObject(KIND_VOLUME, v["Name"], v["Name"], v.get("Labels") or {}) for v in volumes
        ]
        return found

    def remove(self, obj: DockerObject) -> None:
        """Remove one found object of any kind."""
        if obj.kind == KIND_CONTAINER:
            self.remove_container(obj.id)
        elif obj.kind == KIND_NETWORK:
            self.remove_network(obj.id)
        else:
            self.remove_volume(obj.id)

    # ---- volumes, archives and exec sessions (media) ----------------------------------
    # What a radio medium's helper containers need beyond a node's: a labelled volume for
    # the control socket, the relay's code copied in as one archive, helpers whose
    # refusals are one-line project errors, and one long-lived exec session that carries
    # control requests (see radios/client/container.py).

    def create_labelled_volume(self, name: str, labels: Mapping[str, str]) -> dict[str, str]:
        """Create a volume, or get the one of that name; the labels it really has (another
        owner's volume of that name has other labels)."""
        with _engine(f"creating volume {name}", NodeError):
            info = self.api.create_volume(name, labels=dict(labels))
        return dict((info or {}).get("Labels") or {})

    def create_helper(
        self,
        name: str,
        image: str,
        *,
        labels: Mapping[str, str],
        command: Sequence[str],
        volume: str,
        mount: str,
        volumes: Mapping[str, str] | None = None,
        **options: Any,
    ) -> str:
        """Create (not start) a helper container with ``volume`` mounted read-write at
        ``mount`` (and each of ``volumes``, volume -> mount point, too); its id.
        ImageError when the image is not here, NodeError for any other refusal.
        ``options`` are those of create_container."""
        mounts = {volume: mount, **(volumes or {})}
        binds = {source: {"bind": target, "mode": "rw"} for source, target in mounts.items()}
        with _engine(f"creating container {name}", NodeError):
            try:
                return self.create_container(
                    name,
                    image,
                    labels=labels,
                    command=list(command),
                    binds=binds,
                    **options,
                )
            except docker.errors.ImageNotFound:
                raise ImageError(f"image {image!r} not found") from None

    def start_helper(self, container: str) -> None:
        """Start a created helper; NodeError with the engine's reason when it cannot (its
        network namespace's container is gone, say)."""
        with _engine(f"starting container {container[:12]}", NodeError):
            self.api.start(container)

    def wait_helper(self, container: str, timeout: float) -> int | None:
        """A helper's exit status, or None when it has not exited within ``timeout``."""
        with _engine(f"waiting for container {container[:12]}", NodeError):
            try:
                return int(self.api.wait(container, timeout=timeout)["StatusCode"])
            except requests.exceptions.RequestException:  # the engine's answer timed out
                return None

    def put_files(self, container: str, files: Mapping[str, bytes], *, mode: int = 0o644) -> None:
        """Copy files (by absolute path) into a container, created or running, in one
        archive; their directories are made as needed."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            for path, data in files.items():
                info = tarfile.TarInfo(path.lstrip("/"))
                info.size = len(data)
                info.mode = mode
                archive.addfile(info, io.BytesIO(data))
        with _engine(f"copying files into container {container[:12]}", NodeError):
            self.api.put_archive(container, "/", buffer.getvalue())

    def open_session(
        self,
        container: str,
        command: Sequence[str],
        *,
        environment: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> ExecSession:
        """Run ``command`` in the container with its stdin and stdout joined to a socket,
        for a line-based conversation (ExecSession); NodeError when Docker refuses."""
        with _engine(f"opening a session in container {container[:12]}", NodeError):
            exec_id = self.api.exec_create(
                container,
                list(command),
                stdin=True,
                stdout=True,
                stderr=False,
                tty=False,
                environment=dict(environment or {}) or None,
            )["Id"]
            connection = self._start_attached(exec_id)
        connection.set_timeout(timeout)
        return ExecSession(connection)


#: Docker's stream numbers in the frames of an exec without a TTY.
STDOUT, STDERR = 1, 2


class ExecConnection:
    """The connection of an exec started attached: its output frames, and its stdin.

    Read through the HTTP response's own buffered reader. docker-py's ``exec_start``
    reads the raw socket under that reader instead, so output that arrives in the same
    read as the engine's reply headers stays in the buffer and is lost
    (docker/docker-py#3332). Under load, 11 of 2000 fast commands came back that way
    (``benchmarks/bench_exec.py --output-kept``), their exit codes intact."""

    def __init__(self, response: requests.Response) -> None:
        self._response = response  # holds the connection open
        http_response: Any = response.raw._fp  # http.client's, under urllib3's
        self._reader: io.BufferedReader = http_response.fp
        # The socket under the reader: a socket.SocketIO holds it as _sock.
        self._socket: Any = getattr(self._reader.raw, "_sock", self._reader.raw)
        self.set_timeout(None)  # callers keep their own deadlines

    def set_timeout(self, seconds: float | None) -> None:
        """How long one read or write may block; OSError (a timeout) after that."""
        self._socket.settimeout(seconds)

    def send(self, data: bytes) -> None:
        self._socket.sendall(data)

    def frames(self) -> Iterator[tuple[int, bytes]]:
        """(stream, payload) until the command's output ends. Without a TTY, Docker
        frames the output: stream (1 byte), 3 zero bytes, payload size (4 bytes)."""
        while True:
            header = self._reader.read(8)
            if len(header) < 8:
                return
            size = int.from_bytes(header[4:], "big")
            payload = self._reader.read(size)
            if len(payload) < size:
                return
            yield header[0], payload

    def read_all(self) -> tuple[bytes, bytes]:
        """All of stdout and all of stderr, once the command's output has ended."""
        collected = {STDOUT: bytearray(), STDERR: bytearray()}
        for stream, payload in self.frames():
            collected.get(stream, collected[STDOUT]).extend(payload)
        return bytes(collected[STDOUT]), bytes(collected[STDERR])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._response.close()

    def __enter__(self) -> ExecConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ExecSession:
    """A line-based conversation with a process exec'd in a container: one line out, one
    line back. OSError when the process or the connection is gone."""

    def __init__(self, connection: ExecConnection) -> None:
        self._connection = connection
        self._frames = connection.frames()
        self._stdout = bytearray()

    def ask(self, line: str) -> str:
        """Send one line, return the next line the process prints."""
        self._connection.send(line.encode() + b"\n")
        while b"\n" not in self._stdout:
            frame = next(self._frames, None)
            if frame is None:
                raise OSError("the session ended")
            stream, payload = frame
            if stream == STDOUT:
                self._stdout += payload
        reply, _, rest = self._stdout.partition(b"\n")
        self._stdout = bytearray(rest)
        return reply.decode(errors="replace")

    def close(self) -> None:
        self._connection.close()


class BackgroundExec:
    """A command that keeps running in a node while the test goes on."""

    def __init__(self, backend: Backend, container: str, exec_id: str, command: str, node: str):
        self._backend = backend
        self._container = container
        self.exec_id = exec_id
        self.command = command
        self.node = node
        self._stdout: list[bytes] = []
        self._stderr: list[bytes] = []
        self._error: BaseException | None = None
        connection = backend._start_attached(exec_id)
        self._reader = threading.Thread(
            target=self._read, args=(connection,), name=f"bg-exec-{node}", daemon=True
        )
        self._reader.start()

    def _read(self, connection: ExecConnection) -> None:
        try:
            with connection:
                for stream, payload in connection.frames():
                    (self._stderr if stream == STDERR else self._stdout).append(payload)
        except BaseException as exc:  # the connection dropped: the node went away
            self._error = exc

    @property
    def running(self) -> bool:
        return self._reader.is_alive() and self._backend.exec_running(self.exec_id)

    @property
    def stdout(self) -> str:
        """Output so far."""
        return b"".join(self._stdout).decode("utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return b"".join(self._stderr).decode("utf-8", errors="replace")

    def wait(self, timeout: float | None = 30) -> ExecResult:
        """Wait for the command to end; ExecTimeout (it keeps running) when it does not."""
        self._reader.join(timeout)
        if self._reader.is_alive():
            raise ExecTimeout(
                f"node {self.node}: background command {self.command!r} still running after "
                f"{timeout:g} s; kill() it or wait longer"
            )
        return ExecResult(
            exit_code=self._backend._exit_code(self.exec_id),
            stdout=self.stdout,
            stderr=self.stderr,
            command=self.command,
            node=self.node,
        )

    def kill(self) -> None:
        """Kill the command (and what it started); returns once its output has closed."""
        self._backend.kill_exec(self._container, self.exec_id, node=self.node, command=self.command)
        self._reader.join(10)


def run_parallel(tasks: Sequence[Callable[[], Any]], workers: int = 8) -> list[BaseException]:
    """Run tasks on a thread pool and return their errors (never raises them). A
    KeyboardInterrupt while waiting does not abandon the tasks: it is re-raised once all
    have finished, so teardown always completes."""
    from concurrent.futures import ThreadPoolExecutor, wait

    if not tasks:
        return []
    if len(tasks) == 1:
        try:
            tasks[0]()
        except Exception as exc:
            return [exc]
        return []
    interrupted = False
    with ThreadPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
        futures = [pool.submit(task) for task in tasks]
        pending = set(futures)
        while pending:
            try:
                _done, pending = wait(pending)
            except KeyboardInterrupt:
                interrupted = True
    errors = [f.exception() for f in futures if f.exception() is not None]
    if interrupted or any(isinstance(e, KeyboardInterrupt) for e in errors):
        raise KeyboardInterrupt
    return [e for e in errors if e is not None]
