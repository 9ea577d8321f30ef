"""Real brokers for tests and benchmarks: mosquitto and RabbitMQ on free loopback ports.

Each broker is started with its own configuration in its own temporary directory and
stopped by whoever started it; a test can stop and start it again on the same port to
play a broker restart. Mosquitto runs as a host process where the host has it, else in a
container of images/mqtt-broker on the host network (a container also gets its own
``nofile`` limit, which a broker holding tens of thousands of connections needs).
RabbitMQ runs as a host process of the Debian ``rabbitmq-server`` package.

The Docker backend is imported lazily: the device models must work where Docker is absent.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import uuid
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_cirque.core import identity, ownership
from pytest_cirque.core.errors import CirqueError, WaitTimeout
from pytest_cirque.core.waiting import wait_until

if TYPE_CHECKING:
    from pytest_cirque.core.docker_backend import Backend

MOSQUITTO_IMAGE = "mqtt-broker"
#: The home id stem of the broker containers (each run and worker gets its own home id).
BROKER_HOME = "device-models"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Broker(ABC):
    """A broker on 127.0.0.1:``port`` that can be stopped and started again on that port."""

    scheme = ""
    host = "127.0.0.1"

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        # In this run's folder: a run killed before close() leaves nothing that the
        # watchdog or the next reap would not find (core.ownership).
        self.workdir = ownership.temp_dir(f"cirque-{self.scheme}-")

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @abstractmethod
    def start(self, timeout: float = 30.0) -> None:
        """Start and wait until it accepts connections."""

    @abstractmethod
    def stop(self) -> None:
        """Stop; the port and the state directory stay reserved for a later start."""

    @abstractmethod
    def running(self) -> bool: ...

    def log(self, lines: int = 40) -> str:
        """The last lines of the broker's log, for failed waits."""
        path = self.workdir / "broker.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def close(self) -> None:
        """Stop for good and remove the state directory."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _check_port_free(self) -> None:
        """Refuse a port someone already listens on (its accepts would look like ours)."""
        if _accepts(self.host, self.port):
            raise CirqueError(
                f"cannot start a {self.scheme} broker on {self.host}:{self.port}: the port is "
                "already in use; pick another port or stop what listens there"
            )

    def _wait_accepting(self, timeout: float) -> None:
        def ready() -> bool:
            if not self.running():
                raise WaitTimeout(
                    f"{self.scheme} broker on port {self.port} exited while starting",
                    log=self.log(),
                )
            return _accepts(self.host, self.port)

        # A broker that exited ends the wait at once: no error counts as "not yet".
        wait_until(
            ready,
            f"{self.scheme} broker to accept on {self.url}",
            timeout,
            log=self.log,
            ignore=(),
        )


def mosquitto_config(port: int, data_dir: str, log_file: str, user: str = "") -> str:
    """A mosquitto 2 configuration for tests: loopback only, anonymous, persistent sessions.

    Persistence lets a subscriber's session (subscriptions and queued QoS 1 messages)
    outlive a broker restart, as it would on a production broker. The queue limits are
    raised so that a recorder that falls behind at thousands of messages per second
    gets every message instead of mosquitto's default 1,000 queued per client.
    ``user`` keeps a broker started by root as that user (mosquitto otherwise drops to
    its own account, which cannot write the test's directory); others ignore it.
    """
    return "\n".join(
        [
            *([f"user {user}"] if user else []),
            f"listener {port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {data_dir.rstrip('/')}/",
            "autosave_interval 0",
            "max_queued_messages 1000000",
            "max_inflight_messages 1000",
            "max_keepalive 600",
            "set_tcp_nodelay true",
            "sys_interval 1",
            f"log_dest file {log_file}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages false",
            "",
        ]
    )


class MosquittoProcess(Broker):
    """The host's mosquitto as a child process with its own configuration."""

    scheme = "mqtt"

    def __init__(self, port: int | None = None, binary: str | None = None) -> None:
        super().__init__(port)
        self.binary = binary or shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self._process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> None:
        self._check_port_free()
        config = self.workdir / "mosquitto.conf"
        config.write_text(
            mosquitto_config(
                self.port,
                str(self.workdir),
                str(self.workdir / "broker.log"),
                user=pwd.getpwuid(os.geteuid()).pw_name,
            )
        )
        self._process = subprocess.Popen(
            [self.binary, "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "broker.log", "ab"),  # noqa: SIM115 (the child owns it)
            start_new_session=True,
        )
        ownership.record_process(self._process.pid)
        self._wait_accepting(timeout)

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log(self, lines: int = 40) -> str:
        """The broker's log, without the warning mosquitto prints whenever root starts it."""
        text = super().log(lines + 5)
        kept = [line for line in text.splitlines() if "should not be run as root" not in line]
        return "\n".join(kept[-lines:])

    def version(self) -> str:
        out = subprocess.run([self.binary, "-h"], capture_output=True, text=True).stdout
        return out.splitlines()[0].strip() if out else "unknown"

    def stop(self) -> None:
        """SIGTERM (mosquitto saves its sessions), then wait; SIGKILL only if it hangs."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        ownership.forget_process(process.pid)


class MosquittoContainer(Broker):
    """mosquitto in a container of images/mqtt-broker on the host network.

    Used where the host has no mosquitto. ``nofile`` sets the container's open-files
    limit; Docker cannot raise it above the daemon's own hard limit (20,000 on the
    project's machines, so 20,000 MQTT connections need several brokers there).
    Labelled like every object of a run (owner process included), so ``stop`` removes
    it, also when it fails to start, and a reap removes it once its process is gone.
    """

    scheme = "mqtt"

    def __init__(
        self,
        port: int | None = None,
        *,
        nofile: int | None = None,
        run_id: str = "",
        backend: Backend | None = None,
    ) -> None:
        super().__init__(port)
        self.nofile = nofile
        self.identity = identity.RunIdentity.create(run_id or None)
        self.run_id = self.identity.run_id
        self.home_id = self.identity.home_id(BROKER_HOME)
        self.container_name = identity.object_name(self.home_id, f"mqtt-{self.port}")
        self._backend = backend
        #: The container's id while it exists.
        self._container: str | None = None

    @property
    def backend(self) -> Backend:
        """The Docker backend, connected on first use (lazily: device models need no
        Docker until a container broker is started)."""
        if self._backend is None:
            from pytest_cirque.core.docker_backend import connect_backend

            self._backend = connect_backend()
        return self._backend

    def _image(self) -> str:
        from pytest_cirque.core.images import ensure_image

        return ensure_image(self.backend, MOSQUITTO_IMAGE)

    def start(self, timeout: float = 60.0) -> None:
        self._check_port_free()
        backend = self.backend
        config = mosquitto_config(self.port, "/var/lib/cirque-broker", "/dev/stderr")
        config = config.replace("log_dest file /dev/stderr", "log_dest stderr")
        script = (
            "mkdir -p /var/lib/cirque-broker && chown mosquitto /var/lib/cirque-broker && "
            f"printf '%s' '{config}' > /etc/cirque-mosquitto.conf && "
            "exec mosquitto -c /etc/cirque-mosquitto.conf"
        )
        self._container = backend.create_container(
            self.container_name,
            self._image(),
            labels=self.identity.labels(self.home_id, identity.ROLE_MQTT_BROKER),
            command=["sh", "-c", script],
            network_mode="host",
            ulimits={"nofile": self.nofile} if self.nofile else None,
        )
        try:
            backend.start(self._container)
            self._wait_accepting(timeout)
        except BaseException:
            self.stop()
            raise

    def running(self) -> bool:
        if self._container is None:
            return False
        try:
            info = self.backend.inspect(self._container)
        except Exception:
            return False
        state = ((info or {}).get("State") or {}).get("Status")
        return state in ("created", "running")

    def log(self, lines: int = 40) -> str:
        if self._container is None:
            return ""
        try:
            return self.backend.logs(self._container, tail=lines)
        except Exception:
            return ""

    def stop(self) -> None:
        """Stop (mosquitto saves its sessions on SIGTERM), then remove the container."""
        container, self._container = self._container, None
        if container is None:
            return
        try:
            self.backend.stop(container, timeout=10)
        except Exception:
            pass  # not started or already gone: removing is what matters
        finally:
            self.backend.remove_container(container)


def start_mqtt_broker(port: int | None = None, kind: str | None = None) -> Broker:
    """A running mosquitto: the host's where installed, else a container.

    ``kind`` ("process" or "container"; default from CIRQUE_MQTT_BROKER, else "auto")
    forces one of them.
    """
    kind = (kind or os.environ.get("CIRQUE_MQTT_BROKER") or "auto").lower()
    if kind not in ("auto", "process", "container"):
        raise CirqueError(
            f"CIRQUE_MQTT_BROKER={kind!r} is not a broker kind: use process, container or auto"
        )
    host_has_mosquitto = bool(shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists())
    broker: Broker
    if kind == "process" or (kind == "auto" and host_has_mosquitto):
        broker = MosquittoProcess(port)
    else:
        broker = MosquittoContainer(port)
    try:
        broker.start()
    except BaseException:
        broker.close()
        raise
    return broker


class RabbitMQProcess(Broker):
    """A RabbitMQ node of the host's rabbitmq-server package, alone in its own directory.

    The node gets a unique name, its own AMQP and distribution ports, its own Mnesia and
    log directories and its own Erlang cookie (HOME), so it never meets a system
    RabbitMQ or another test session's node. Erlang's shared port mapper (epmd) is
    started by the first node on the host and left running, as Erlang intends.
    """

    scheme = "amqp"
    server = "/usr/lib/rabbitmq/bin/rabbitmq-server"

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port)
        self.dist_port = free_port()
        self.node_name = f"cirque-{uuid.uuid4().hex[:10]}@localhost"
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self.port}/"

    @classmethod
    def available(cls) -> bool:
        return Path(cls.server).exists()

    def start(self, timeout: float = 60.0) -> None:
        if not self.available():
            raise CirqueError(
                f"RabbitMQ is not installed ({self.server} missing): "
                "run scripts/setup or apt-get install rabbitmq-server"
            )
        self._check_port_free()
        (self.workdir / "enabled_plugins").write_text("[].\n")
        (self.workdir / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        env = dict(
            os.environ,
            HOME=str(self.workdir),
            RABBITMQ_NODENAME=self.node_name,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.workdir / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.workdir / "log"),
            RABBITMQ_CONFIG_FILE=str(self.workdir / "rabbitmq"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.workdir / "enabled_plugins"),
            RABBITMQ_PID_FILE=str(self.workdir / "rabbitmq.pid"),
        )
        self._process = subprocess.Popen(
            [self.server],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=open(self.workdir / "broker.log", "ab"),  # noqa: SIM115 (the child owns it)
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        ownership.record_process(self._process.pid)
        self._wait_accepting(timeout)

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """SIGTERM to the node's process group, wait for it to go."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        ownership.forget_process(process.pid)
        # The Erlang VM may outlive the wrapper script for a moment: wait for the port.
        wait_until(
            lambda: not _accepts(self.host, self.port),
            f"RabbitMQ node {self.node_name} to release port {self.port}",
            30,
            log=self.log,
        )


def start_amqp_broker(port: int | None = None) -> Broker:
    broker = RabbitMQProcess(port)
    try:
        broker.start()
    except BaseException:
        broker.close()
        raise
    return broker


def add_broker_command(actions) -> None:
    """Register ``cirque devices broker`` on the ``devices`` sub-command parser."""
    broker = actions.add_parser(
        "broker", help="run a local test broker (mosquitto or RabbitMQ) until Ctrl-C"
    )
    broker.add_argument("--amqp", action="store_true", help="RabbitMQ instead of mosquitto")
    broker.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    broker.set_defaults(func=cmd_broker)


def cmd_broker(args, out=None) -> int:
    """Start a broker on 127.0.0.1, say how to point a fleet at it, stop it on Ctrl-C."""
    import sys
    import threading

    out = out or sys.stdout

    def terminated(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM stops the broker the way Ctrl-C does

    signal.signal(signal.SIGTERM, terminated)
    try:
        broker = start_amqp_broker(args.port) if args.amqp else start_mqtt_broker(args.port)
    except KeyboardInterrupt:
        return 130  # stopped while starting: the broker's start removed what it made
    try:
        print(f"broker ready: {broker.url}", file=out)
        print(
            f"try: cirque devices run --model elevator --count 10 --broker {broker.url}",
            file=out,
            flush=True,
        )
        threading.Event().wait()  # until Ctrl-C
    except KeyboardInterrupt:
        pass
    finally:
        broker.close()
    return 0
