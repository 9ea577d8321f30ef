"""Containment on real Docker, while a WiFi home is up: nothing the home runs besides its
nodes (the WiFi medium, an attach helper, a segment guard helper) sees the host or
another home, and no node can drive another node's station.

Each helper runs the same probe from inside: the processes it can see all share its own
root (nothing of the host's pid namespace), /proc/1/root/etc/shadow is at most its own
image's file, no Docker socket, another home's node neither reachable by IP nor readable
by its host pid. A probe line starting with ESCAPE is a failure; each probe proves it can
see what it looks for where that is allowed (in the other home's own node).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from pytest_cirque import wifi
from pytest_cirque.capabilities.model.wifi import WiFi
from pytest_cirque.capabilities.runtime.wifi import TOKEN_FILE
from pytest_cirque.core import identity
from pytest_cirque.homes.home import Home
from pytest_cirque.homes.session import Cirque
from pytest_cirque.radios.client.container import (
    _ENVIRONMENT,
    RUN_DIR,
    MediumContainer,
    endpoint_security_options,
)
from pytest_cirque.radios.relay.protocol import STATIONS_SOCKET, WPA_CTRL_PROGRAM

from .conftest import run_objects

PSK = "correct horse"

#: Run by sh in each helper: $1 the secret's path, $2 the victim's host pid, $3 its IP.
PROBE = r"""
own=$(stat -L -c %d:%i /)
seen=0
for p in /proc/[0-9]*; do
    root=$(stat -L -c %d:%i "$p/root/" 2>/dev/null) || continue
    seen=$((seen + 1))
    [ "$root" = "$own" ] || echo "ESCAPE a process outside this container: $p"
done
echo "processes seen: $seen"
if cat /proc/1/root/etc/shadow >/dev/null 2>&1; then
    [ "$(stat -L -c %d:%i /proc/1/root/etc/shadow)" = "$(stat -c %d:%i /etc/shadow)" ] \
        || echo "ESCAPE /proc/1/root/etc/shadow is not this container's own"
fi
for sock in /run/docker.sock /var/run/docker.sock /proc/1/root/run/docker.sock \
        /proc/1/root/var/run/docker.sock; do
    [ -e "$sock" ] && echo "ESCAPE docker socket $sock"
done
cat "/proc/$2/root$1" 2>/dev/null && echo "ESCAPE read the secret through host pid $2"
for p in /proc/[0-9]*; do
    cat "$p/root$1" 2>/dev/null && echo "ESCAPE read the secret through $p"
done
python3 -c '
import socket, sys
s = socket.socket()
s.settimeout(3)
try:
    s.connect((sys.argv[1], 9))
    print("ESCAPE reached the victim (connected)")
except ConnectionRefusedError:
    print("ESCAPE reached the victim (it refused the port)")
except OSError as exc:
    print("victim unreachable:", exc)
' "$3"
echo probe-done
"""


@dataclass
class Homes:
    service: Cirque
    home: Home
    other: Home
    secret: str
    secret_text: str

    @property
    def medium(self) -> MediumContainer:
        return self.home.media["wifi"]

    def probe_args(self) -> list[str]:
        victim = self.other["victim"]
        return [self.secret, str(victim.host_pid()), victim.ip or "0.0.0.0"]

    def probe(self, container: str, where: str) -> str:
        command = ["sh", "-c", PROBE, "probe", *self.probe_args()]
        result = self.service.backend.exec(container, command, node=where, timeout=60)
        return result.output


def ap_node() -> dict:
    return {"image": "wifi-ap", "capabilities": [{"WiFiAP": {"ssid": "home", "psk": PSK}}]}


@pytest.fixture(scope="module")
def homes() -> Iterator[Homes]:
    service = Cirque(worker=os.environ.get("PYTEST_XDIST_WORKER", "main"))
    try:
        home = service.create_home(
            {"ap": ap_node(), "a": {"capabilities": ["WiFi"]}, "b": {"capabilities": ["WiFi"]}},
            name="escape",
        )
        other = service.create_home({"victim": {}}, name="victim")
        secret = f"/root/cirque-secret-{secrets.token_hex(4)}"
        text = secrets.token_hex(16)
        other["victim"].put_file(secret, text, mode=0o600)
        yield Homes(service, home, other, secret, text)
    finally:
        service.close()
        leftovers = run_objects(service)
        assert leftovers == [], f"objects left behind: {leftovers}"


def assert_contained(output: str, where: str) -> None:
    assert output.strip().endswith("probe-done"), f"{where}: the probe did not finish: {output}"
    escapes = [line for line in output.splitlines() if line.startswith("ESCAPE")]
    assert escapes == [], f"{where}: {escapes}"
    assert "victim unreachable" in output, f"{where}: {output}"


def test_the_probe_sees_what_it_looks_for_where_that_is_allowed(homes: Homes) -> None:
    """In the victim itself the secret is readable and its own address answers (refused):
    so a probe that finds nothing elsewhere is not blind."""
    victim = homes.other["victim"]
    output = homes.probe(victim.container_id, "victim")
    assert "ESCAPE read the secret through /proc/1" in output
    assert "ESCAPE reached the victim (it refused the port)" in output


def test_the_wifi_medium_is_contained(homes: Homes) -> None:
    inspect = homes.service.backend.inspect(homes.medium.container_id or "") or {}
    host_config = inspect["HostConfig"]
    assert host_config["PidMode"] in ("", "private")
    assert host_config["CapAdd"] in (None, [])
    assert host_config["CapDrop"] == ["ALL"]
    assert host_config["NetworkMode"] == "none"
    assert not host_config["Privileged"]
    output = homes.probe(homes.medium.container_id or "", "medium")
    assert_contained(output, "the WiFi medium")
    assert "Network is unreachable" in output  # no network at all


def test_the_thread_medium_is_contained(homes: Homes) -> None:
    """A Thread home's medium follows the same rule: no host powers, no network."""
    thread_home = homes.service.create_home({"t": {"capabilities": ["Thread"]}}, name="thread")
    medium = thread_home.media["thread"]
    host_config = (homes.service.backend.inspect(medium.container_id or "") or {})["HostConfig"]
    assert host_config["PidMode"] in ("", "private")
    assert host_config["CapAdd"] in (None, [])
    assert host_config["CapDrop"] == ["ALL"]
    assert host_config["NetworkMode"] == "none"
    assert not host_config["Privileged"]
    assert_contained(homes.probe(medium.container_id or "", "thread medium"), "the Thread medium")


def test_an_attach_helper_is_contained(homes: Homes) -> None:
    """A helper made as attach() makes one, in the AP node (which has a LAN)."""
    medium, node = homes.medium, homes.home["ap"]
    backend = homes.service.backend
    helper = backend.create_helper(
        f"{medium.name}-attach-probe",
        medium.image,
        labels={**medium.labels, identity.ROLE: identity.ROLE_MEDIUM_ENDPOINT},
        command=["sleep", "120"],
        volume=medium.volume or "",
        mount=RUN_DIR,
        network_mode=f"container:{node.container_id}",
        environment=_ENVIRONMENT,
        **endpoint_security_options(False),
    )
    try:
        backend.start_helper(helper)
        assert_contained(homes.probe(helper, "attach helper"), "an attach helper")
    finally:
        backend.remove_container(helper)


def test_a_segment_guard_helper_is_contained(homes: Homes) -> None:
    """The guard's helper (Node.run_netadmin) of the AP node, running the probe instead."""
    script = f"set -- {' '.join(homes.probe_args())}\n{PROBE}"
    output = homes.home["ap"].run_netadmin(script, timeout=60).stdout
    assert_contained(output, "a segment guard helper")


def node_python(node, code: str, *args: str) -> str:  # type: ignore[no-untyped-def]
    result = node.exec(["python3", "-c", code, *args], timeout=60)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


#: Connect to the stations socket, send what argv[1] (hex) holds, report what comes back.
KNOCK = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(20)
s.connect(sys.argv[2])
s.sendall(bytes.fromhex(sys.argv[1]))
try:
    data = s.recv(100)
except ConnectionResetError:
    data = b""
print("closed" if not data else "answered " + data.hex())
"""


def hello(token: bytes) -> str:
    return (b"H" + (0).to_bytes(2, "big") + len(token).to_bytes(4, "big") + token).hex()


def test_a_node_cannot_drive_another_nodes_station(homes: Homes) -> None:
    a, b = homes.home["a"], homes.home["b"]
    token_a = a.driver(WiFi).token  # type: ignore[union-attr]
    token_b = b.driver(WiFi).token  # type: ignore[union-attr]
    assert token_a != token_b
    # Each node holds its own token, root-only, at the same path.
    listing = a.exec(["stat", "-c", "%a %U", TOKEN_FILE], check=True).stdout.strip()
    assert listing == "600 root"
    assert a.get_file(TOKEN_FILE).decode().strip() == token_a
    # B's token is in B's filesystem: A cannot read it, not even by B's host pid.
    stolen = a.exec(["cat", f"/proc/{b.host_pid()}/root{TOKEN_FILE}"])
    assert stolen.exit_code != 0 and token_b not in stolen.stdout
    relay = a.exec(
        [
            WPA_CTRL_PROGRAM,
            "-C",
            "/tmp/b-ctrl",
            "--token-file",
            f"/proc/{b.host_pid()}/root{TOKEN_FILE}",
        ]
    )
    assert relay.exit_code == 1 and "cannot read the token file" in relay.stderr
    # Made-up tokens, and the medium's own control protocol, get the door closed.
    for attempt in (
        hello(secrets.token_hex(16).encode()),
        hello(token_a[:-1].encode()),
        b'{"op": "move", "name": "b", "position": [900, 0]}\n'.hex(),
        b'{"op": "status"}\n'.hex(),
    ):
        assert node_python(a, KNOCK, attempt, STATIONS_SOCKET) == "closed"
    assert "stations: a connection presented a wrong token; closed" in homes.medium.log()
    # Nothing can be changed in the radio volume from a node.
    touch = a.exec(["sh", "-c", f"echo x > {WPA_CTRL_PROGRAM} || touch /run/cirque-radio/x"])
    assert touch.exit_code != 0 and "Read-only file system" in touch.stderr
    # A's and B's own wpa_cli still drive their own stations, and only those.
    assert a.exec(["wpa_cli", "-i", "wlan0", "ping"], check=True).stdout.strip() == "PONG"
    macs = {name: s.mac for name, s in homes.medium.as_wifi().status().stations.items()}
    for node in (a, b):
        status = node.exec(["wpa_cli", "-i", "wlan0", "status"], check=True).stdout
        assert f"address={macs[node.name]}" in status.splitlines(), status
    wifi.associate(a, wifi.access_point(homes.home["ap"]))
    assert "wpa_state=COMPLETED" in a.exec(["wpa_cli", "-i", "wlan0", "status"]).stdout
    assert wifi.status(b)["wpa_state"] != "COMPLETED"
