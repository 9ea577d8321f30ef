"""`cirque serve` on real Docker, driven as Cirque's clients drive it: HTTP from outside
the process (httpx), gRPC through the generated stubs, signals and kill -9 from a shell."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from pytest_cirque.core.waiting import wait_until
from pytest_cirque.service.proto import (
    capability_pb2,
    device_pb2,
    service_pb2,
    service_pb2_grpc,
)

from .service_client import CLIENT_TIMEOUT_S, Served, cmd, create, objects_of_home

TOKEN = "a-token-of-twenty-chars"
CLEANUP_WAIT_S = 120.0
FLASK_TOPOLOGY = {
    "device0": {
        "type": "Generic Node",
        "base_image": "generic_node_image",
        "capability": ["WiFi", "Interactive"],
    },
    "device1": {"type": "GenericNode", "base_image": "generic_node_image", "capability": ["WiFi"]},
    "wifi-ap": {"type": "wifi_ap", "base_image": "mac80211_ap_image"},
}
ONE_NODE = {"n": {"type": "generic_node_image"}}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One service for the module's tests (REST and gRPC); it must leave nothing behind."""
    service = Served(tmp_path_factory.mktemp("serve") / "serve.log", "--grpc-port", "0")
    try:
        yield service
    finally:
        assert service.stop() == 0, service.log.read_text()
        assert service.objects() == []


@pytest.fixture
def client(served: Served) -> Iterator[httpx.Client]:
    with served.client() as http:
        yield http


# ---- the REST API, as Cirque's Flask example uses it


def test_home_from_a_cirque_topology_through_rest(client: httpx.Client) -> None:
    home = create(client, FLASK_TOPOLOGY)
    assert home in client.get("/get_homes").json()

    devices = client.get(f"/home_devices/{home}").json()
    assert {d["type"] for d in devices.values()} == {"wifi_ap", "GenericNode", "Generic Node"}
    for device_id, device in devices.items():
        assert device["id"] == device_id and device["state"] == "running"
        assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", device["description"]["ipv4_addr"])
    assert devices["device0"]["base_image"] == "generic_node_image"
    assert set(devices["device0"]["capability"]) == {"WiFi", "Interactive"}
    assert client.get(f"/device_state/{home}/device1").json() == devices["device1"]

    ssid, psk = client.get(f"/wifi_ssid_psk/{home}").json()
    assert (ssid, psk) == (
        devices["wifi-ap"]["description"]["ssid"],
        devices["wifi-ap"]["description"]["psk"],
    )
    assert re.fullmatch(r"wifiap-[A-Z1-9]{5}", ssid) and len(psk) == 8

    reply = client.get(cmd(home, "device0", "hostname"), params={"stream": "False"}).json()
    assert reply == {"return_code": "0", "output": "device0\n"}
    reply = client.get(cmd(home, "device1", "echo out; echo err >&2; exit 3")).json()
    assert reply == {"return_code": "3", "output": "out\nerr\n"}
    with client.stream(
        "GET",
        cmd(home, "device0", "for i in 1 2 3; do echo line$i; done"),
        params={"stream": "True"},
    ) as streamed:
        assert streamed.headers["content-type"].startswith("text/plain")
        assert streamed.read().decode() == "line1\nline2\nline3\n"

    log = client.get(f"/device_log/{home}/wifi-ap")
    assert log.status_code == 200 and log.headers["content-type"].startswith("text/plain")
    assert len(client.get(f"/device_log/{home}/wifi-ap", params={"tail": 1}).text.splitlines()) <= 1

    assert client.get(f"/stop_device/{home}/device1").json() == "device1"
    assert client.get(f"/device_state/{home}/device1").status_code == 404
    assert set(client.get(f"/home_devices/{home}").json()) == {"device0", "wifi-ap"}

    assert client.get(f"/destroy_home/{home}").json() == home
    assert home not in client.get("/get_homes").json()
    assert client.get(f"/home_devices/{home}").status_code == 404
    assert objects_of_home(home) == []


def test_openapi_describes_the_routes(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for route in (
        "/create_home",
        "/get_homes",
        "/home_devices/{home_id}",
        "/device_state/{home_id}/{device_id}",
        "/device_cmd/{home_id}/{device_id}/{cmd}",
        "/device_log/{home_id}/{device_id}",
        "/stop_device/{home_id}/{device_id}",
        "/destroy_home/{home_id}",
        "/wifi_ssid_psk/{home_id}",
        "/",
    ):
        assert route in paths
    assert "post" in paths["/create_home"]


def test_unknown_home_or_device_is_404(client: httpx.Client) -> None:
    home = create(client, ONE_NODE)
    try:
        for path in (
            "/home_devices/nohome",
            "/device_state/nohome/n",
            cmd("nohome", "n", "true"),
            "/device_log/nohome/n",
            "/stop_device/nohome/n",
            "/destroy_home/nohome",
            "/wifi_ssid_psk/nohome",
            f"/device_state/{home}/nodevice",
            cmd(home, "nodevice", "true"),
            f"/device_log/{home}/nodevice",
            f"/stop_device/{home}/nodevice",
            f"/wifi_ssid_psk/{home}",  # a home without an access point
        ):
            reply = client.get(path)
            assert reply.status_code == 404, path
            assert "\n" not in reply.json()["detail"]
    finally:
        client.get(f"/destroy_home/{home}")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b"{}", "no devices"),
        (b'{"n": "generic_node_image"}', "device config is an object"),
    ],
)
def test_malformed_body_is_400(client: httpx.Client, body: bytes, expected: str) -> None:
    reply = client.post("/create_home", content=body, headers={"content-type": "application/json"})
    assert reply.status_code == 400 and expected in reply.json()["detail"]


@pytest.mark.parametrize(
    ("topology", "expected"),
    [
        ({"n": {"type": "base", "capability": ["Bluetooth"]}}, "Bluetooth radio"),
        ({"n": {"type": "base", "capability": ["Teleport"]}}, "unknown capability"),
        ({"n": {"type": "base", "capability": ["WiFi"]}}, "wifi medium"),
        ({"n": {"type": "base", "mount_pairs": [["/etc", "/host-etc"]]}}, "--allow-host-mounts"),
        ({"n": {"type": "base", "capability": ["Weave"]}}, "--allow-host-mounts"),
        ({"ok": {"type": "base"}, "bad": {"type": "base", "docker_network": "Moon"}}, "Moon"),
    ],
)
def test_refused_topology_is_400_and_creates_nothing(
    served: Served, client: httpx.Client, topology: dict[str, Any], expected: str
) -> None:
    homes_before, objects_before = client.get("/get_homes").json(), served.objects()
    reply = client.post("/create_home", json=topology)
    assert reply.status_code == 400
    detail = reply.json()["detail"]
    assert expected in detail and "\n" not in detail
    assert client.get("/get_homes").json() == homes_before
    assert served.objects() == objects_before


@pytest.mark.parametrize("stream", ["False", "True"])
def test_command_past_its_time_limit_is_killed(client: httpx.Client, stream: str) -> None:
    home = create(client, ONE_NODE)
    try:
        reply = client.get(cmd(home, "n", "sleep 600"), params={"timeout": 1, "stream": stream})
        if stream == "True":
            assert reply.status_code == 200 and "did not finish within 1 s" in reply.text
        else:
            assert reply.status_code == 504
            assert reply.json()["return_code"] == "124"
            assert "did not finish within 1 s" in reply.json()["detail"]
        processes = client.get(cmd(home, "n", "ps -eo args")).json()["output"]
        assert "sleep 600" not in processes
        assert client.get(cmd(home, "n", "true"), params={"timeout": "soon"}).status_code == 400
    finally:
        client.get(f"/destroy_home/{home}")


def test_eight_concurrent_clients_create_and_destroy_homes(served: Served) -> None:
    def one_client(number: int) -> tuple[str, str]:
        with served.client() as http:
            home = create(http, {f"c{number}": {"type": "generic_node_image"}})
            output = http.get(cmd(home, f"c{number}", "hostname")).json()["output"]
            assert http.get(f"/destroy_home/{home}").json() == home
            return home, output

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one_client, range(8)))
    assert [output for _, output in results] == [f"c{n}\n" for n in range(8)]
    homes = [home for home, _ in results]
    assert len(set(homes)) == 8
    with served.client() as http:
        assert not set(homes) & set(http.get("/get_homes").json())
    assert [objects_of_home(home) for home in homes] == [[]] * 8


def test_root_route_removes_every_home(served: Served, client: httpx.Client) -> None:
    homes = [create(client, ONE_NODE), create(client, ONE_NODE)]
    before = client.get("/get_homes").json()
    assert set(homes) <= set(before)
    assert sorted(client.get("/").json()) == sorted(before)
    assert client.get("/get_homes").json() == []
    assert [objects_of_home(home) for home in homes] == [[], []]


THREAD_TOPOLOGY = {
    name: {
        "type": "generic_node",
        "base_image": "generic_node_image",
        "capability": ["Thread"],
        "rcp_mode": True,
    }
    for name in ("node0", "node1")
}
#: Forming takes seconds; a lone node gives up attaching after some more.
THREAD_FORM_TIMEOUT_S = 120.0


@pytest.mark.slow
def test_thread_formed_with_ot_ctl_through_rest(client: httpx.Client) -> None:
    home = create(client, THREAD_TOPOLOGY)
    try:
        for device in THREAD_TOPOLOGY:
            for command in ("ot-ctl panid 0x1234", "ot-ctl ifconfig up", "ot-ctl thread start"):
                reply = client.get(cmd(home, device, command)).json()
                # OpenThread's CLI ends its lines with CR LF.
                assert reply["return_code"] == "0", (device, command, reply)
                assert reply["output"].split() == ["Done"], (device, command, reply)

        def roles() -> list[str]:
            return [
                client.get(cmd(home, device, "ot-ctl state")).json()["output"].split()[0]
                for device in THREAD_TOPOLOGY
            ]

        def formed() -> list[str] | None:
            found = roles()
            joined = "router" in found or "child" in found
            return found if "leader" in found and joined else None

        found = wait_until(
            formed,
            "one node to lead the Thread network and the other to join it",
            THREAD_FORM_TIMEOUT_S,
        )
        assert found.count("leader") == 1, found
        panids = {
            client.get(cmd(home, device, "ot-ctl panid")).json()["output"].split()[0]
            for device in THREAD_TOPOLOGY
        }
        assert panids == {"0x1234"}
    finally:
        client.get(f"/destroy_home/{home}")
    assert objects_of_home(home) == []


# ---- gRPC


def test_grpc_home_through_the_generated_stubs(served: Served) -> None:
    assert served.grpc_target is not None
    with grpc.insecure_channel(served.grpc_target) as channel:
        stub = service_pb2_grpc.CirqueServiceStub(channel)
        home = stub.CreateCirqueHome(service_pb2.CreateCirqueHomeRequest()).home_id
        assert home in stub.ListCirqueHomes(service_pb2.ListCirqueHomesRequest()).home_id
        station = stub.CreateCirqueDevice(
            service_pb2.CreateCirqueDeviceRequest(
                home_id=home,
                specification=device_pb2.DeviceSpecification(
                    device_type="GenericNode",
                    base_image="generic_node_image",
                    wifi_capability=capability_pb2.WiFiCapability(),
                    interactive_capability=capability_pb2.InteractiveCapability(),
                ),
            )
        ).device
        ap = stub.CreateCirqueDevice(
            service_pb2.CreateCirqueDeviceRequest(
                home_id=home,
                specification=device_pb2.DeviceSpecification(
                    device_type="wifi_ap", base_image="mac80211_ap_image"
                ),
            )
        ).device
        assert station.device_specification.HasField("wifi_capability")
        assert ap.device_description.ssid.startswith("wifiap-")
        assert len(ap.device_description.psk) == 8
        listed = stub.ListCirqueHomeDevices(service_pb2.ListCirqueHomeDevicesRequest(home_id=home))
        assert {d.device_id for d in listed.devices} == {station.device_id, ap.device_id}
        queried = stub.QueryCirqueDevice(
            service_pb2.QueryCirqueDeviceRequest(home_id=home, device_id=station.device_id)
        ).device
        assert queried.device_description.ipv4_addr == station.device_description.ipv4_addr != ""

        output = stub.ExecuteDeviceCommand(
            service_pb2.ExecuteDeviceCommandRequest(
                home_id=home, device_id=station.device_id, command="echo hello"
            )
        ).output
        assert output == "hello\n"
        with pytest.raises(grpc.RpcError) as failed:
            stub.ExecuteDeviceCommand(
                service_pb2.ExecuteDeviceCommandRequest(
                    home_id=home, device_id=station.device_id, command="echo no; exit 2"
                )
            )
        assert failed.value.code() == grpc.StatusCode.ABORTED
        assert failed.value.details() == "no\n"
        with pytest.raises(grpc.RpcError) as missing:
            stub.QueryCirqueDevice(
                service_pb2.QueryCirqueDeviceRequest(home_id=home, device_id="x")
            )
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as refused:
            stub.CreateCirqueDevice(
                service_pb2.CreateCirqueDeviceRequest(
                    home_id=home,
                    specification=device_pb2.DeviceSpecification(
                        device_type="generic_node_image",
                        mount_capability=capability_pb2.MountCapability(
                            mount_pairs=[capability_pb2.MountPair(host_path="/", target_path="/h")]
                        ),
                    ),
                )
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "--allow-host-mounts" in refused.value.details()
        stub.GetCirqueDeviceLog(
            service_pb2.GetCirqueDeviceLogRequest(home_id=home, device_id=ap.device_id, tail=5)
        )
        stub.StopCirqueDevice(
            service_pb2.StopCirqueDeviceRequest(home_id=home, device_id=station.device_id)
        )
        listed = stub.ListCirqueHomeDevices(service_pb2.ListCirqueHomeDevicesRequest(home_id=home))
        assert [d.device_id for d in listed.devices] == [ap.device_id]
        stub.StopCirqueHome(service_pb2.StopCirqueHomeRequest(home_id=home))
        assert home not in stub.ListCirqueHomes(service_pb2.ListCirqueHomesRequest()).home_id
        assert objects_of_home(home) == []


# ---- the service's own lifetime and who may use it


def test_sigterm_removes_the_homes(tmp_path: Path) -> None:
    service = Served(tmp_path / "serve.log")
    with service.client() as http:
        home = create(http, ONE_NODE)
    assert objects_of_home(home) != []
    assert service.stop(signal.SIGTERM) == 0
    assert service.objects() == []


def test_ctrl_c_removes_the_homes(tmp_path: Path) -> None:
    service = Served(tmp_path / "serve.log")
    with service.client() as http:
        create(http, ONE_NODE)
    assert service.stop(signal.SIGINT) == 0
    assert service.objects() == []


def test_kill_9_leaves_nothing_behind(tmp_path: Path) -> None:
    service = Served(tmp_path / "serve.log")
    with service.client() as http:
        home = create(http, FLASK_TOPOLOGY)
    assert objects_of_home(home) != []
    service.stop(signal.SIGKILL)
    wait_until(
        lambda: service.objects() == [],
        "the watchdog to remove the killed service's objects",
        CLEANUP_WAIT_S,
        ignore=(),
    )


def test_keep_leaves_homes_for_cirque_ls_and_down(tmp_path: Path) -> None:
    service = Served(tmp_path / "serve.log", "--keep")
    with service.client() as http:
        home = create(http, ONE_NODE)
    try:
        assert service.stop(signal.SIGTERM) == 0
        assert "cirque down" in service.log.read_text()
        cli = [sys.executable, "-m", "pytest_cirque.cli"]
        listing = subprocess.run([*cli, "ls"], capture_output=True, text=True, check=True)
        assert home in listing.stdout
        result = subprocess.run(
            [*cli, "exec", home, "n", "hostname"], capture_output=True, text=True
        )
        assert result.stdout == "n\n"
        subprocess.run([*cli, "down", home], capture_output=True, check=True)
        assert objects_of_home(home) == []
    finally:
        if objects_of_home(home):
            subprocess.run([sys.executable, "-m", "pytest_cirque.cli", "down", home], check=False)


@pytest.mark.parametrize(
    ("args", "expected"),
    [(["--host", "0.0.0.0"], "--token"), (["--host", "0.0.0.0", "--token", "short"], "16")],
)
def test_binding_beyond_loopback_needs_a_token(args: list[str], expected: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest_cirque.cli", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and expected in result.stderr


def test_token_and_allowed_host_mounts(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "note").write_text("from the host\n")
    service = Served(tmp_path / "serve.log", "--token", TOKEN, "--allow-host-mounts")
    try:
        with service.client() as anonymous:
            refused = anonymous.get("/get_homes")
            assert refused.status_code == 403 and "token" in refused.json()["detail"]
            assert anonymous.get("/get_homes", params={"token": "wrong" * 5}).status_code == 403
            assert anonymous.get("/get_homes", params={"token": TOKEN}).status_code == 200
        with service.client(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            home = create(
                http,
                {"n": {"type": "generic_node_image", "mount_pairs": [[str(shared), "/shared"]]}},
            )
            reply = http.get(cmd(home, "n", "cat /shared/note")).json()
            assert reply == {"return_code": "0", "output": "from the host\n"}
    finally:
        assert service.stop() == 0
    assert service.objects() == []


OTHER_USER = "cirque-service-test"
CLIENT_SCRIPT = textwrap.dedent(
    """
    import sys, urllib.error, urllib.request
    try:
        urllib.request.urlopen(sys.argv[1] + "/get_homes")
        print(200)
    except urllib.error.HTTPError as exc:
        print(exc.code, exc.read().decode())
    """
)


def test_another_local_user_is_refused(served: Served, client: httpx.Client) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create and act as another local user (useradd, runuser)")
    if shutil.which("runuser") is None or shutil.which("useradd") is None:
        pytest.skip("needs runuser and useradd to act as another local user")
    try:
        pwd.getpwnam(OTHER_USER)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", OTHER_USER], check=True)
    # The system's python: this venv's may sit where the other user cannot read.
    python = next(
        (p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if Path(p).exists()), ""
    )
    if not python:
        pytest.skip("needs a python3 the other user can run (/usr/bin/python3)")
    result = subprocess.run(
        ["runuser", "-u", OTHER_USER, "--", python, "-c", CLIENT_SCRIPT, served.url],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    )
    code, _, detail = result.stdout.partition(" ")
    assert code == "403", result
    assert f"user {pwd.getpwnam(OTHER_USER).pw_uid} may not use this service" in detail
    assert client.get("/get_homes").status_code == 200  # its own user still gets in


# ---- the fixture: the service inside the test process


def test_cirque_service_fixture_serves_this_process(cirque_service: str) -> None:
    with httpx.Client(base_url=cirque_service, timeout=CLIENT_TIMEOUT_S) as http:
        home = create(http, ONE_NODE)
        assert http.get("/get_homes").json() == [home]
        assert http.get(cmd(home, "n", "echo hi")).json() == {"return_code": "0", "output": "hi\n"}
        assert http.get(f"/destroy_home/{home}").json() == home
    assert objects_of_home(home) == []


WORKER_TEST = """
import httpx
from pathlib import Path

from pytest_cirque import wait_until

BARRIER = Path({barrier!r})


def test_own_service(cirque_service, worker_id):
    with httpx.Client(base_url=cirque_service, timeout=300) as http:
        home = http.post("/create_home", json={{"n": {{"type": "generic_node_image"}}}}).json()
        (BARRIER / worker_id).write_text(cirque_service)
        # Both workers hold a home now: each service lists only its own.
        wait_until(lambda: len(list(BARRIER.iterdir())) == 2, "both workers' homes", 300)
        assert http.get("/get_homes").json() == [home]
        assert len({{p.read_text() for p in BARRIER.iterdir()}}) == 2
        http.get(f"/destroy_home/{{home}}")
"""


def test_fixture_gives_each_xdist_worker_its_own_service(pytester: pytest.Pytester) -> None:
    barrier = pytester.path / "barrier"
    barrier.mkdir()
    pytester.makepyfile(test_workers=WORKER_TEST.format(barrier=str(barrier)))
    result = pytester.runpytest_subprocess("-n", "2", "--dist", "each", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
