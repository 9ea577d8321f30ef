"""`cirque doctor`: what this host supports, and what that means for the capabilities.

Kernel features are first looked up without privilege in the host's files (/proc/modules,
/sys/module, /lib/modules/<release>/modules.builtin and modules.dep, /proc/net,
/dev/net/tun). Features that only show when used (qdiscs, link types, iptables matches
built into the kernel) are then tried for real in a short-lived helper container from the
base image with NET_ADMIN, inside that container's own network namespace, so the host is
left untouched and the user needs no privilege beyond the Docker socket. Each check says
which way it was made.
"""

from __future__ import annotations

import os
import platform
import re
import resource
import shutil
import socket
import struct
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_cirque.core import identity
from pytest_cirque.core import images as image_builder
from pytest_cirque.core.errors import CirqueError, DockerUnavailable

if TYPE_CHECKING:
    from pytest_cirque.core.docker_backend import Backend

OK = "ok"
MISSING = "missing"
WARN = "warn"
ERROR = "error"
SKIPPED = "skipped"
STATUSES = (OK, MISSING, WARN, ERROR, SKIPPED)

#: Seconds the helper container may take for all its probes.
PROBE_TIMEOUT_S = 60


@dataclass
class Check:
    """One line of the report: what was checked, what was found, what it means."""

    name: str
    status: str
    detail: str
    #: What the finding means for pytest-cirque's capabilities.
    meaning: str = ""
    #: How it was checked (host files, helper container, API).
    method: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"check {self.name}: unknown status {self.status!r}")


# --- kernel features (host files: pure, rooted at a path so tests can build a tree) ----


@dataclass(frozen=True)
class KernelFeature:
    """A kernel feature, the modules that provide it, and how to try it in a netns."""

    name: str
    modules: tuple[str, ...]
    #: Meaning when present / when missing.
    if_present: str
    if_missing: str
    #: Shell command run in the helper container's own netns (exit 0 = supported), or "".
    probe: str = ""
    #: An entry of /proc/net/ip_tables_matches that shows the feature without privilege.
    iptables_match: str = ""
    #: A device node whose presence shows the feature.
    device: str = ""
    #: A generic netlink family the feature registers (asked without privilege).
    genl_family: str = ""
    #: Without it no home can be made at all: reported as an error, not as missing.
    critical: bool = False


#: Parent link for the link-type probes: a veth end, else a dummy link.
_PROBE_PARENT = "$(ip link show cq-v0 >/dev/null 2>&1 && echo cq-v0 || echo cq-d0)"

KERNEL_FEATURES: tuple[KernelFeature, ...] = (
    KernelFeature(
        "veth",
        ("veth",),
        "container networking works",
        "Docker cannot connect containers to networks: no homes can be made",
        probe="ip link add cq-v0 type veth peer name cq-v1",
        critical=True,
    ),
    KernelFeature(
        "bridge",
        ("bridge",),
        "each home gets its own LAN bridges",
        "no home LANs: Docker bridge networks cannot be created",
        probe="ip link add cq-br0 type bridge",
        critical=True,
    ),
    KernelFeature(
        "tun",
        ("tun",),
        "userspace media can give nodes TAP interfaces (wlan0, wpan0, and eth0 for "
        "TrafficControl)",
        "no TAP devices: the WiFi and Thread media cannot attach radios to nodes, and "
        "TrafficControl cannot wire a node's LAN through the LAN medium",
        device="dev/net/tun",
    ),
    KernelFeature(
        "macvlan",
        ("macvlan",),
        "hybrid networks with devices outside Docker can use macvlan",
        "no hybrid networks (docker_network ipvlan/macvlan) with devices outside Docker",
        probe=f"ip link add cq-d0 type dummy 2>/dev/null; "
        f"ip link add link {_PROBE_PARENT} name cq-mv0 type macvlan mode bridge",
    ),
    KernelFeature(
        "ipvlan",
        ("ipvlan",),
        "docker_network ipvlan uses ipvlan, as Cirque did",
        "docker_network ipvlan uses macvlan instead (same reach, one MAC per node)",
        probe=f"ip link add cq-d0 type dummy 2>/dev/null; "
        f"ip link add link {_PROBE_PARENT} name cq-ipv0 type ipvlan mode l2",
    ),
    KernelFeature(
        "tbf",
        ("sch_tbf",),
        "tbf is present but not needed: TrafficControl rateKbit is shaped in the userspace "
        "LAN medium",
        "no tbf, and none needed: TrafficControl rateKbit is shaped in the userspace LAN medium",
        probe="tc qdisc add dev lo root tbf rate 1mbit burst 32kbit latency 400ms",
    ),
    KernelFeature(
        "netem",
        ("sch_netem",),
        "netem is present but not needed: TrafficControl latencyMs/jitterMs come from the "
        "userspace LAN medium, so they mean the same on every host",
        "no netem, and none needed: TrafficControl latencyMs/jitterMs work through the "
        "userspace media (the home's LAN medium), as do its loss and rateKbit",
        probe="tc qdisc add dev lo root netem delay 1ms",
    ),
    KernelFeature(
        "iptables-statistic",
        ("xt_statistic",),
        "the iptables statistic match is present (TrafficControl loss needs it no longer: "
        "the userspace LAN medium drops frames)",
        "no iptables statistic match, and none needed: TrafficControl loss is applied in "
        "the userspace LAN medium",
        probe="iptables -w -A OUTPUT -m statistic --mode random --probability 0.5 -j ACCEPT",
        iptables_match="statistic",
    ),
    KernelFeature(
        "hwsim",
        ("mac80211_hwsim",),
        "mac80211_hwsim is present but not needed: WiFi is simulated in userspace",
        "no hwsim: WiFi is simulated in userspace (TAP radios joined by the WiFi medium)",
        genl_family="MAC80211_HWSIM",
    ),
    KernelFeature(
        "802.15.4",
        ("ieee802154", "mac802154"),
        "kernel 802.15.4 is present but not needed: Thread is simulated in userspace",
        "no 802.15.4: Thread radios are simulated in userspace (no kernel wpan interfaces)",
        genl_family="nl802154",
    ),
)


class HostKernel:
    """Read-only view of the kernel's modules through the host's files."""

    def __init__(
        self,
        root: Path = Path("/"),
        release: str | None = None,
        genl_family_exists: Callable[[str], bool] | None = None,
    ) -> None:
        self.root = root
        self.release = release or platform.release()
        self.loaded = self._names_from(root / "proc/modules", column=0)
        #: Whether the kernel can load modules at all (it has /proc/modules).
        self.modular = self.loaded is not None
        self.modules_dir = root / "lib/modules" / self.release
        self.builtin = self._module_names(self.modules_dir / "modules.builtin")
        self.loadable = self._module_names(self.modules_dir / "modules.dep")
        self.iptables_matches = self._names_from(root / "proc/net/ip_tables_matches", column=0)
        self._genl = genl_family_exists or genl_family_exists_here

    @staticmethod
    def _names_from(path: Path, column: int) -> set[str] | None:
        try:
            text = path.read_text()
        except OSError:
            return None
        return {line.split()[column] for line in text.splitlines() if line.split()}

    @staticmethod
    def _module_names(path: Path) -> set[str] | None:
        """Module names in modules.builtin or modules.dep ("kernel/x/y/name.ko[.xz]: ...")."""
        try:
            text = path.read_text()
        except OSError:
            return None
        names = set()
        for line in text.splitlines():
            entry = line.split(":", 1)[0].strip()
            if entry:
                names.add(_normal(re.sub(r"\.ko(\.\w+)?$", "", entry.rsplit("/", 1)[-1])))
        return names

    def module_state(self, module: str) -> str:
        """ "loaded", "builtin", "loadable" (a module file, not loaded), "absent", "builtin or
        absent" (a kernel without loadable modules) or "unknown" (the files that would tell
        are missing)."""
        name = _normal(module)
        if self.loaded is not None and name in {_normal(m) for m in self.loaded}:
            return "loaded"
        if self.builtin is not None and name in self.builtin:
            return "builtin"
        if (self.root / "sys/module" / name).is_dir():
            return "builtin" if not self.modular else "loaded"
        if self.loadable is not None and name in self.loadable:
            return "loadable"
        if self.builtin is not None and self.loadable is not None:
            return "absent"
        if not self.modular:
            return "builtin or absent"
        return "unknown"

    def genl_family(self, family: str) -> bool | None:
        """Whether a generic netlink family is registered; None when asking could make the
        kernel load a module (asking for MAC80211_HWSIM would create radios on the host)."""
        if self.modular:
            return None
        try:
            return self._genl(family)
        except OSError:
            return None

    def sources(self) -> str:
        """Which host files could be read (for the report's "checked" column)."""
        used = ["/proc/modules" if self.modular else "no /proc/modules", "/sys/module"]
        if self.builtin is not None:
            used.append(f"/lib/modules/{self.release}/modules.builtin")
        if self.loadable is not None:
            used.append("modules.dep")
        return ", ".join(used)


def genl_family_exists_here(family: str) -> bool:
    """Ask the kernel (generic netlink CTRL_CMD_GETFAMILY; no privilege needed) whether a
    family is registered."""
    netlink_generic, genl_id_ctrl, ctrl_cmd_getfamily, ctrl_attr_family_name = 16, 0x10, 3, 2
    nlmsg_error, nlm_f_request = 2, 1
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, netlink_generic) as sock:
        sock.settimeout(5)
        name = family.encode() + b"\0"
        attr = struct.pack("HH", 4 + len(name), ctrl_attr_family_name) + name
        attr += b"\0" * (-len(attr) % 4)
        body = struct.pack("BBH", ctrl_cmd_getfamily, 1, 0) + attr
        header = struct.pack("IHHII", 16 + len(body), genl_id_ctrl, nlm_f_request, 1, 0)
        sock.sendto(header + body, (0, 0))
        reply = sock.recv(65536)
    _, reply_type = struct.unpack_from("IH", reply)
    if reply_type == nlmsg_error:
        return struct.unpack_from("i", reply, 16)[0] == 0
    return reply_type == genl_id_ctrl


def _normal(module: str) -> str:
    return module.replace("-", "_")


def kernel_check(feature: KernelFeature, host: HostKernel, probe: tuple[bool, str] | None) -> Check:
    """Verdict on one kernel feature: a probe that ran decides; otherwise the host files."""
    states = {m: host.module_state(m) for m in feature.modules}
    methods = [f"host files ({host.sources()})"]
    evidence: list[str] = []
    registered = host.genl_family(feature.genl_family) if feature.genl_family else None
    if registered is not None:
        states = {m: ("builtin" if registered else "absent") for m in states}
        methods.append(f"generic netlink family {feature.genl_family}")
        evidence.append(f"netlink family {feature.genl_family} {'' if registered else 'not '}found")
    present_on_host = all(s in ("loaded", "builtin") for s in states.values())
    undecided = all(s in ("unknown", "builtin or absent") for s in states.values())
    if feature.iptables_match and host.iptables_matches is not None:
        methods.append("/proc/net/ip_tables_matches")
        if feature.iptables_match in host.iptables_matches:
            present_on_host = True
            evidence.append(f"iptables match '{feature.iptables_match}' registered")
    if feature.device:
        methods.append(f"/{feature.device}")
        exists = (host.root / feature.device).exists()
        evidence.append(f"/{feature.device} {'exists' if exists else 'missing'}")
        present_on_host = exists and (present_on_host or undecided or "loadable" in states.values())
        undecided = False
    host_text = "; ".join([", ".join(f"{m} {s}" for m, s in states.items()), *evidence])
    if probe is not None:
        works, output = probe
        methods.append("tried in a helper container's own netns (NET_ADMIN)")
        detail = f"{'works' if works else 'fails: ' + output} (host: {host_text})"
        status = OK if works else MISSING
    else:
        detail = host_text
        status = OK if present_on_host else MISSING
    method = "; ".join(methods)
    if status == OK:
        return Check(feature.name, OK, detail, feature.if_present, method)
    if probe is None and "loadable" in states.values():
        loadable = [m for m, s in states.items() if s == "loadable"]
        return Check(
            feature.name,
            WARN,
            f"{detail}; not loaded: loads on demand, or with modprobe {' '.join(loadable)} as root",
            feature.if_missing + " (until the module is loaded)",
            method,
        )
    if probe is None and undecided:
        return Check(
            feature.name,
            WARN,
            f"{detail}; cannot tell from the host files",
            f"if absent: {feature.if_missing}",
            method,
        )
    status = ERROR if feature.critical else MISSING
    return Check(feature.name, status, detail, feature.if_missing, method)


# --- probes in a helper container ------------------------------------------------------


def probe_script(features: Iterable[KernelFeature]) -> str:
    """A shell script printing "<feature> ok" or "<feature> fail <first error line>"."""
    lines = ["exec 2>&1"]
    for feature in features:
        if not feature.probe:
            continue
        lines.append(
            f"if out=$({feature.probe} 2>&1); then echo '{feature.name} ok'; "
            f'else echo "{feature.name} fail $(echo "$out" | head -n 1)"; fi'
        )
    return "\n".join(lines) + "\n"


def parse_probe_output(text: str) -> dict[str, tuple[bool, str]]:
    """Feature name -> (works, first error line) from the probe script's output."""
    results: dict[str, tuple[bool, str]] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        verdict, _, message = rest.partition(" ")
        if verdict in ("ok", "fail"):
            results[name] = (verdict == "ok", message.strip() or "no output")
    return results


def _run_helper(
    backend: Backend,
    image: str,
    name: str,
    script: str,
    run: identity.RunIdentity | None = None,
    **options: Any,
) -> str:
    """Run a shell script in a labelled helper container of doctor's own; its output.
    The container is removed after, also when it fails or times out."""
    run = run or identity.RunIdentity.create(worker="doctor")
    home_id = run.home_id("doctor")
    options.setdefault("network_mode", "none")
    container = backend.create_container(
        identity.object_name(home_id, name),
        image,
        labels=run.labels(home_id, options.pop("role", identity.ROLE_NETADMIN)),
        entrypoint=["sh", "-c", script],
        command=[],
        **options,
    )
    try:
        backend.start(container)
        backend.wait(container, timeout=PROBE_TIMEOUT_S)
        return backend.logs(container, tail="all")
    finally:
        backend.remove_container(container)


def run_probes(backend: Backend, image: str) -> dict[str, tuple[bool, str]]:
    """Run the probe script in a fresh helper container (own netns, NET_ADMIN), removed after."""
    output = _run_helper(
        backend, image, "probe", probe_script(KERNEL_FEATURES), cap_add=["NET_ADMIN"]
    )
    return parse_probe_output(output)


def _describe_relay(options: dict[str, Any]) -> str:
    """The relay's create options that matter to the check, as the report's method says
    them ("no capabilities")."""
    parts = []
    if options.get("pid_mode"):
        parts.append(f"pid={options['pid_mode']}")
    caps = list(options.get("cap_add") or [])
    if "ALL" in (options.get("cap_drop") or []):
        parts.append(f"only {', '.join(caps)}" if caps else "no capabilities")
    elif caps:
        parts.append(f"adding {', '.join(caps)}")
    return " and ".join(parts) or "the default options"


def wifi_medium_check(backend: Backend, image: str) -> Check:
    """Whether the engine runs a WiFi medium as the home does: the relay's own create
    options (no network, no capability), with the home's radio volume read-write, from
    where a station node (the volume read-only) runs the program the medium put there
    (the relay that serves its control socket) and cannot write. Tried against a sleeping
    stand-in node; containers and volume are removed after. The options come from the
    medium's code, so the check cannot drift."""
    from pytest_cirque.radios.client.container import relay_security_options

    relay_options = dict(relay_security_options(True))
    run = identity.RunIdentity.create(worker="doctor")
    home_id = run.home_id("doctor")
    method = (
        f"helper containers (a node, and a medium with {_describe_relay(relay_options)}) "
        "sharing a volume"
    )
    meaning = "WiFi stations get the wpa_supplicant control socket inside their nodes"
    volume = identity.object_name(home_id, "_radio")
    radio = "/run/cirque-radio"
    node = ""
    output = ""
    try:
        backend.create_volume(volume, run.labels(home_id, identity.ROLE_MEDIUM))
        _run_helper(
            backend,
            image,
            "wifi-medium",
            f"mkdir -p {radio}/bin && printf '#!/bin/sh\\necho reachable\\n' > {radio}/bin/probe"
            f" && chmod 0555 {radio}/bin/probe",
            run,
            role=identity.ROLE_MEDIUM,
            binds={volume: {"bind": radio, "mode": "rw"}},
            **relay_options,
        )
        node = backend.create_container(
            identity.object_name(home_id, "wifi-node"),
            image,
            labels=run.labels(home_id, identity.ROLE_NODE),
            entrypoint=["sleep", str(PROBE_TIMEOUT_S)],
            command=[],
            network_mode="none",
            binds={volume: {"bind": radio, "mode": "ro"}},
        )
        backend.start(node)
        script = f"{radio}/bin/probe; touch {radio}/x 2>/dev/null || echo read-only"
        output = backend.exec(node, ["sh", "-c", script], node="doctor").output.strip()
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Check(
            "wifi-medium",
            ERROR,
            f"the engine refused the helpers: {first}",
            "no WiFi homes: the engine refused the medium's options or a shared volume "
            "(a policy); homes without WiFi are unaffected",
            method,
        )
    finally:
        if node:
            backend.remove_container(node)
        backend.remove_volume(volume)
    if output.split() == ["reachable", "read-only"]:
        detail = "a medium hands nodes its relay on a read-only volume"
        return Check("wifi-medium", OK, detail, meaning, method)
    return Check(
        "wifi-medium",
        ERROR,
        f"a node cannot run the medium's relay from the radio volume: {output or 'no output'}",
        "no WiFi control sockets in nodes: the volume is not shared, is writable or noexec "
        "in nodes (a policy or a volume driver)",
        method,
    )


def thread_check(backend: Backend, images_root: Path | None = None) -> Check:
    """Whether Thread nodes can run here: the thread image is built, and a helper given
    what a Thread node gets (NET_ADMIN and /dev/net/tun, no network) runs OpenThread's
    daemon over a simulated radio until ``ot-ctl`` answers. Removed after."""
    from pytest_cirque.core.waiting import wait_until

    meaning = "Thread nodes run the real OpenThread stack (ot-daemon, ot-ctl, ot-rcp)"
    status = image_builder.image_status(backend, "thread", images_root=images_root)
    if not status.present or not status.tag:
        return Check(
            "thread",
            MISSING,
            "the thread image is not built",
            "Thread works once it is: it builds on first use (OpenThread, minutes), or now "
            "with: cirque images build thread",
            "Docker API",
        )
    method = "helper container from the thread image (NET_ADMIN, /dev/net/tun, no network)"
    run = identity.RunIdentity.create(worker="doctor")
    home_id = run.home_id("doctor")
    radio = "spinel+hdlc+forkpty:///usr/local/bin/ot-rcp?forkpty-arg=-Llo&forkpty-arg=1"
    container = ""
    try:
        container = backend.create_container(
            identity.object_name(home_id, "thread"),
            status.tag,
            labels=run.labels(home_id, identity.ROLE_NETADMIN),
            entrypoint=["sh", "-c", f"cd /tmp && exec ot-daemon -I wpan0 '{radio}'"],
            command=[],
            network_mode="none",
            # As a Thread node: ot-daemon makes wpan0, a TUN device, and sets its addresses.
            cap_add=["NET_ADMIN"],
            devices=["/dev/net/tun:/dev/net/tun:rwm"],
            sysctls={"net.ipv6.conf.all.disable_ipv6": "0"},
        )
        backend.start(container)

        def answers() -> str | None:
            result = backend.exec(container, ["ot-ctl", "version"], node="doctor", timeout=10)
            return result.stdout.splitlines()[0] if result.exit_code == 0 else None

        version = wait_until(
            answers,
            "ot-daemon in the doctor's helper to answer ot-ctl",
            PROBE_TIMEOUT_S,
            log=lambda: backend.logs(container, tail=20),
        )
    except CirqueError as exc:
        return Check(
            "thread",
            ERROR,
            f"OpenThread did not run: {str(exc).splitlines()[0]}",
            "no Thread nodes: the engine refused NET_ADMIN or /dev/net/tun, or ot-daemon "
            "failed (see its log with: cirque images build thread, then this check again)",
            method,
        )
    finally:
        if container:
            backend.remove_container(container)
    return Check("thread", OK, f"available: {version}", meaning, method)


# --- the other checks -------------------------------------------------------------------


def docker_check(backend: Backend) -> Check:
    """Engine and client versions; the backend must already be connected."""
    from pytest_cirque.core.docker_backend import CLIENT_LIBRARY

    version = backend.engine_version()
    cli = shutil.which("docker")
    parts = [
        f"engine {version.get('Version', '?')} (API {version.get('ApiVersion', '?')})",
        CLIENT_LIBRARY,
    ]
    if cli:
        try:
            out = subprocess.run(
                [cli, "version", "--format", "{{.Client.Version}}"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            if out.returncode == 0 and out.stdout.strip():
                parts.append(f"docker CLI {out.stdout.strip()}")
        except (OSError, subprocess.TimeoutExpired):
            pass
    return Check("docker", OK, ", ".join(parts), "homes can be created", "Docker API")


def docker_unreachable(exc: BaseException) -> Check:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, DockerUnavailable):  # its own hint is the check's meaning here
        text = text.split("; ", 1)[0].removeprefix("Docker engine unreachable ")
    hint = "start Docker or set DOCKER_HOST"
    if "ermission denied" in text:
        hint = "add your user to the docker group (then log in again)"
    return Check(
        "docker",
        ERROR,
        f"unreachable: {text}",
        f"no homes can be made: {hint}",
        "Docker API",
    )


def image_checks(backend: Backend, images_root: Path | None = None) -> list[Check]:
    """Each project image: built for its current recipe, outdated, or missing."""
    checks = []
    for name in image_builder.project_images(images_root):
        check_name = f"image {name}"
        try:
            status = image_builder.image_status(backend, name, images_root=images_root)
        except CirqueError as exc:
            checks.append(Check(check_name, ERROR, str(exc).splitlines()[0], "", "Docker API"))
            continue
        if status.present:
            checks.append(Check(check_name, OK, f"{status.tag} is built", "", "Docker API"))
            continue
        what = f"{status.tag} not built" if status.tag else "not built (its parent is not built)"
        if status.stale:
            what += f"; older builds: {', '.join(status.stale)}"
        checks.append(
            Check(
                check_name,
                MISSING,
                what,
                "builds on first use (minutes), or now with: cirque images build",
                "Docker API",
            )
        )
    return checks


def debian_base_check(backend: Backend) -> Check:
    """Where the Debian base of the images comes from on this host."""
    for ref in (image_builder.DEBIAN_IMAGE, image_builder.debian_bootstrap_tag()):
        try:
            found = backend.image(ref)
        except CirqueError:
            continue
        if found is not None:
            return Check("debian base", OK, f"{ref} is present", "", "Docker API")
    return Check(
        "debian base",
        MISSING,
        f"neither {image_builder.DEBIAN_IMAGE} nor {image_builder.debian_bootstrap_tag()} "
        "is present",
        "the first build pulls debian:bookworm-slim, or bootstraps it with mmdebstrap",
        "Docker API",
    )


def mmdebstrap_check() -> Check:
    """Whether the Debian base can be bootstrapped here without a registry."""
    meaning = "bootstraps the Debian base when debian:bookworm-slim cannot be pulled"
    path = shutil.which("mmdebstrap")
    if path is None:
        return Check(
            "mmdebstrap",
            WARN,
            "not installed",
            meaning + ": install mmdebstrap and uidmap (apt-get install mmdebstrap uidmap)",
            "PATH",
        )
    try:
        version = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        version = "version unknown"
    try:
        sources = str(image_builder.apt_sources_file())
    except Exception as exc:
        return Check("mmdebstrap", WARN, f"{version}; {exc}", meaning, "PATH, /etc/apt")
    if os.geteuid() == 0:
        mode = "root mode"
    elif shutil.which("newuidmap") and _has_subuid():
        mode = "unshare mode (newuidmap, /etc/subuid)"
    else:
        return Check(
            "mmdebstrap",
            WARN,
            f"{version}; as non-root it needs newuidmap and a /etc/subuid range",
            meaning + ": install uidmap and give the user a subuid range (usermod --add-subuids)",
            "PATH, /etc/subuid",
        )
    return Check("mmdebstrap", OK, f"{version}, {mode}, sources {sources}", meaning, "PATH")


def _has_subuid() -> bool:
    import pwd

    try:
        user = pwd.getpwuid(os.getuid()).pw_name
        text = Path("/etc/subuid").read_text()
    except (KeyError, OSError):
        return False
    return any(line.split(":")[0] in (user, str(os.getuid())) for line in text.splitlines())


def nofile_check() -> Check:
    """Open-files limit of this process: bounds sockets per process in simulations."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def show(value: int) -> str:
        return "unlimited" if value == resource.RLIM_INFINITY else str(value)

    detail = f"soft {show(soft)}, hard {show(hard)}"
    meaning = (
        f"one process holds at most {show(soft)} sockets: spread large device simulations "
        "over processes or containers (Docker gives each container its own nofile limit)"
    )
    if soft != resource.RLIM_INFINITY and soft < 4096:
        raise_hint = f"; raise it with: ulimit -n {show(hard)}" if soft < hard else ""
        return Check("nofile", WARN, detail + raise_hint, meaning, "getrlimit")
    return Check("nofile", OK, detail, meaning, "getrlimit")


# --- the report -------------------------------------------------------------------------


def run_checks(
    backend: Backend | Any = None,
    *,
    host: HostKernel | None = None,
    images_root: Path | None = None,
    probe: Callable[[Backend, str], dict[str, tuple[bool, str]]] = run_probes,
) -> list[Check]:
    """Every check, in report order. ``backend`` is the engine's Backend (a docker client
    is still accepted), or None to connect from the environment (its failure is
    reported, and the other checks still run)."""
    from pytest_cirque.core.docker_backend import as_backend, connect_backend

    checks: list[Check] = []
    if backend is None:
        try:
            backend = connect_backend(timeout=15)
        except Exception as exc:
            checks.append(docker_unreachable(exc))
    else:
        backend = as_backend(backend)
    if backend is not None:
        try:
            checks.append(docker_check(backend))
        except Exception as exc:
            checks.append(docker_unreachable(exc))
            backend = None

    probes: dict[str, tuple[bool, str]] = {}
    probe_note: Check | None = None
    probe_image: str | None = None  # the image the helper container ran
    if backend is not None:
        checks.append(debian_base_check(backend))
        image_results = image_checks(backend, images_root)
        checks.extend(image_results)
        base = image_builder.image_status(backend, "base", images_root=images_root)
        if base.present and base.tag:
            probe_image = base.tag
            try:
                probes = probe(backend, probe_image)
            except Exception as exc:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                probe_note = Check(
                    "kernel probes",
                    WARN,
                    f"helper container failed: {first}",
                    "kernel features below are judged from host files only",
                    "helper container",
                )
        else:
            probe_note = Check(
                "kernel probes",
                SKIPPED,
                "the base image is not built, so no helper container could try the features",
                "kernel features below are judged from host files only; "
                "run cirque images build, then cirque doctor again",
                "helper container",
            )
    else:
        probe_note = Check(
            "kernel probes",
            SKIPPED,
            "Docker is unreachable, so no helper container could try the features",
            "kernel features below are judged from host files only",
            "helper container",
        )
    if probe_note is not None:
        checks.append(probe_note)

    host = host or HostKernel()
    for feature in KERNEL_FEATURES:
        checks.append(kernel_check(feature, host, probes.get(feature.name)))
    if backend is not None and probes and probe_image is not None:
        checks.append(wifi_medium_check(backend, probe_image))
    if backend is not None:
        checks.append(thread_check(backend, images_root))
    checks.append(mmdebstrap_check())
    checks.append(nofile_check())
    checks.append(script_engine_check())
    return checks


def script_engine_check() -> Check:
    """The QuickJS binding device scripts run on, and whether a memory bomb can crash it."""
    from pytest_cirque.device_models.engine import engine_report

    fixed, detail, meaning = engine_report()
    return Check("script engine", OK if fixed else WARN, detail, meaning, "importlib.metadata")


_COLUMN = 20


def format_report(checks: list[Check]) -> str:
    """The report: one line per check (status, name, finding), then what it means and how
    it was checked, indented; a summary line at the end."""
    lines = ["cirque doctor"]
    for check in checks:
        lines.append(f"  {check.status:<8} {check.name:<{_COLUMN}} {check.detail}")
        indent = " " * (2 + 9 + _COLUMN + 1)
        if check.meaning:
            lines.append(f"{indent}means: {check.meaning}")
        if check.method:
            lines.append(f"{indent}checked: {check.method}")
    counts = {status: sum(c.status == status for c in checks) for status in STATUSES}
    summary = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    lines.append(f"summary: {summary}")
    return "\n".join(lines)


def main() -> int:
    """Print the report; exit 1 when something blocks homes entirely (an error)."""
    checks = run_checks(None)
    print(format_report(checks))
    sys.stdout.flush()
    return 1 if any(c.status == ERROR for c in checks) else 0
