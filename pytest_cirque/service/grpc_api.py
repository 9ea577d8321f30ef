"""Cirque's gRPC ``CirqueService``, over the same homes as the REST routes.

A home is created empty and its devices are added one by one, as Cirque's clients do;
a device specification becomes the Cirque device config the REST topology would hold,
so both front ends accept and refuse the same things. Status codes: NOT_FOUND for an
unknown home or device, INVALID_ARGUMENT for a refused specification, ABORTED with the
output for a command that exits non-zero (as Cirque did), DEADLINE_EXCEEDED for one
killed at its time limit, PERMISSION_DENIED for a caller the gate refuses. A command's
time limit is the call's deadline (``timeout=`` on the stub call); a call without one gets
the service's default, as a REST call without ``?timeout=`` does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent import futures
from typing import Any, TypeVar

import grpc
from google.protobuf import empty_pb2

from pytest_cirque.core.errors import CirqueError, ExecTimeout, ImageError, NotFound, SpecError
from pytest_cirque.service.peers import Gate
from pytest_cirque.service.proto import capability_pb2, device_pb2, service_pb2, service_pb2_grpc
from pytest_cirque.service.registry import (
    DEFAULT_COMMAND_TIMEOUT_S,
    MAX_COMMAND_TIMEOUT_S,
    ServiceHomes,
)

#: Threads serving gRPC calls at once (each may wait on Docker for a while).
WORKERS = 16
#: What of a call's deadline is kept to kill a command and answer before the caller gives
#: up, and the least time a command is given however near the deadline.
DEADLINE_MARGIN_S = 0.5
MIN_COMMAND_TIMEOUT_S = 0.1

R = TypeVar("R")


def parse_peer(peer: str) -> tuple[str, int] | None:
    """gRPC's peer string ("ipv4:127.0.0.1:5000", "ipv6:[::1]:5000") as (host, port)."""
    scheme, _, address = peer.partition(":")
    if scheme not in ("ipv4", "ipv6"):
        return None
    host, _, port = address.rpartition(":")
    return (host.strip("[]"), int(port)) if port.isdigit() else None


def device_config(spec: device_pb2.DeviceSpecification) -> dict[str, Any]:
    """A DeviceSpecification as the Cirque device config a topology would hold."""
    config: dict[str, Any] = {"type": spec.device_type, "capability": []}
    capabilities: list[str] = config["capability"]
    if spec.base_image:
        config["base_image"] = spec.base_image
    if spec.HasField("weave_capability"):
        capabilities.append("Weave")
        config["weave_config_file"] = spec.weave_capability.weave_certificate_path
        if spec.weave_capability.target_path:
            config["weave_config_target_path"] = spec.weave_capability.target_path
    if spec.HasField("thread_capability"):
        capabilities.append("Thread")
        if spec.thread_capability.rcp_mode:
            config["rcp_mode"] = True
    if spec.HasField("wifi_capability"):
        capabilities.append("WiFi")
    if spec.HasField("xvnc_capability"):
        capabilities.append("Xvnc")
        config["xvnc_localhost"] = spec.xvnc_capability.localhost
        display = spec.xvnc_capability.display_id or spec.xvnc_capability.docker_display_id
        if display:
            config["display_id"] = display
    if spec.HasField("interactive_capability"):
        capabilities.append("Interactive")
    if spec.HasField("lan_access_capability"):
        capabilities.append("LanAccess")
        if spec.lan_access_capability.internal_lan:
            config["docker_network"] = "internal"
    if spec.HasField("mount_capability"):
        capabilities.append("Mount")
        config["mount_pairs"] = [
            [pair.host_path, pair.target_path] for pair in spec.mount_capability.mount_pairs
        ]
    if spec.HasField("trafficcontrol_capability"):
        capabilities.append("TrafficControl")
        config["traffic_control"] = {
            "latencyMs": spec.trafficcontrol_capability.latency_ms,
            "loss": spec.trafficcontrol_capability.loss_rate,
        }
    return config


def device_message(device: dict[str, Any]) -> device_pb2.CirqueDevice:
    """The service's device state (registry) as a CirqueDevice."""
    spec = device_pb2.DeviceSpecification(
        device_type=device["type"], base_image=device["base_image"]
    )
    capabilities: dict[str, dict[str, Any]] = device["capability"]
    if "WiFi" in capabilities:
        spec.wifi_capability.SetInParent()
    if "Interactive" in capabilities:
        spec.interactive_capability.SetInParent()
    if "LanAccess" in capabilities:
        spec.lan_access_capability.SetInParent()
    if "Thread" in capabilities:
        spec.thread_capability.CopyFrom(
            capability_pb2.ThreadCapability(
                rcp_mode=bool(capabilities["Thread"].get("rcp_mode", False))
            )
        )
    if "Xvnc" in capabilities:
        xvnc = capabilities["Xvnc"]
        spec.xvnc_capability.CopyFrom(
            capability_pb2.XvncCapability(
                localhost=bool(xvnc.get("localhost", True)),
                display_id=int(xvnc.get("display") or 0),
            )
        )
    if "TrafficControl" in capabilities:
        traffic = capabilities["TrafficControl"]
        spec.trafficcontrol_capability.CopyFrom(
            capability_pb2.TrafficControlCapability(
                latency_ms=int(traffic.get("latencyMs") or 0),
                loss_rate=round(float(traffic.get("loss") or 0)),
            )
        )
    if "Mount" in capabilities:
        spec.mount_capability.CopyFrom(
            capability_pb2.MountCapability(
                mount_pairs=[
                    capability_pb2.MountPair(host_path=m["source"], target_path=m["target"])
                    for m in capabilities["Mount"].get("mounts", [])
                ]
            )
        )
    if "Weave" in capabilities:
        weave = capabilities["Weave"]
        spec.weave_capability.CopyFrom(
            capability_pb2.WeaveCapability(
                weave_certificate_path=str(weave.get("file", "")),
                target_path=str(weave.get("target", "")),
            )
        )
    description = device["description"]
    return device_pb2.CirqueDevice(
        device_specification=spec,
        device_id=device["id"],
        device_name=device["name"],
        device_description=device_pb2.DeviceDescription(
            ipv4_addr=description.get("ipv4_addr") or "",
            ssid=description.get("ssid") or "",
            psk=description.get("psk") or "",
        ),
    )


def command_time_limit(remaining: float | None) -> float:
    """A command's time limit: what is left of the call's deadline (the command is killed
    just before the caller gives up), else the service's default."""
    if remaining is None:
        return DEFAULT_COMMAND_TIMEOUT_S
    return min(max(remaining - DEADLINE_MARGIN_S, MIN_COMMAND_TIMEOUT_S), MAX_COMMAND_TIMEOUT_S)


def _status(exc: CirqueError) -> grpc.StatusCode:
    if isinstance(exc, NotFound):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, (SpecError, ImageError)):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, ExecTimeout):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.INTERNAL


def guarded(method: Callable[..., R]) -> Callable[..., R]:
    """Let the gate judge the caller first; turn our errors into gRPC statuses."""

    @functools.wraps(method)
    def wrapper(self: CirqueServicer, request: Any, context: grpc.ServicerContext) -> R:
        metadata = {str(k).lower(): str(v) for k, v in context.invocation_metadata() or ()}
        refusal = self.gate.refusal(
            parse_peer(context.peer()), ("", self.port), metadata, metadata.get("token")
        )
        if refusal is not None:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, refusal)
        try:
            return method(self, request, context)
        except CirqueError as exc:
            context.abort(_status(exc), str(exc).splitlines()[0] if str(exc) else repr(exc))
        raise AssertionError("unreachable: context.abort raises")

    return wrapper


class CirqueServicer(service_pb2_grpc.CirqueServiceServicer):
    """Cirque's gRPC service over ``homes``."""

    def __init__(self, homes: ServiceHomes, gate: Gate, port: int) -> None:
        self.homes = homes
        self.gate = gate
        #: The port the service listens on: the far end of its callers' sockets.
        self.port = port

    @guarded
    def CreateCirqueHome(self, request: Any, context: Any) -> Any:
        return service_pb2.CreateCirqueHomeResponse(home_id=self.homes.create_empty_home())

    @guarded
    def CreateCirqueDevice(self, request: Any, context: Any) -> Any:
        if not request.HasField("specification"):
            raise SpecError("CreateCirqueDevice: give a specification (DeviceSpecification)")
        device_id = self.homes.add_device(request.home_id, device_config(request.specification))
        device = self.homes.device(request.home_id, device_id)
        return service_pb2.CreateCirqueDeviceResponse(device=device_message(device))

    @guarded
    def ExecuteDeviceCommand(self, request: Any, context: Any) -> Any:
        timeout = command_time_limit(context.time_remaining())
        result = self.homes.run(request.home_id, request.device_id, request.command, timeout)
        output = result.stdout + result.stderr
        if result.exit_code != 0:
            context.abort(grpc.StatusCode.ABORTED, output)
        return service_pb2.ExecuteDeviceCommandResponse(output=output)

    @guarded
    def ListCirqueHomes(self, request: Any, context: Any) -> Any:
        return service_pb2.ListCirqueHomesResponse(home_id=self.homes.home_ids())

    @guarded
    def ListCirqueHomeDevices(self, request: Any, context: Any) -> Any:
        devices = self.homes.devices(request.home_id).values()
        return service_pb2.ListCirqueHomeDevicesResponse(
            devices=[device_message(d) for d in devices]
        )

    @guarded
    def QueryCirqueDevice(self, request: Any, context: Any) -> Any:
        device = self.homes.device(request.home_id, request.device_id)
        return service_pb2.QueryCirqueDeviceResponse(device=device_message(device))

    @guarded
    def StopCirqueDevice(self, request: Any, context: Any) -> Any:
        self.homes.stop_device(request.home_id, request.device_id)
        return empty_pb2.Empty()

    @guarded
    def StopCirqueHome(self, request: Any, context: Any) -> Any:
        self.homes.destroy_home(request.home_id)
        return empty_pb2.Empty()

    @guarded
    def GetCirqueDeviceLog(self, request: Any, context: Any) -> Any:
        log = self.homes.log(request.home_id, request.device_id, request.tail or None)
        return service_pb2.GetCirqueDeviceLogResponse(log=log)


def start_server(homes: ServiceHomes, gate: Gate, host: str, port: int) -> tuple[grpc.Server, int]:
    """Start serving on host:port (0: a free port); the server and the port it got."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="grpc"))
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        raise CirqueError(f"cannot listen for gRPC on {address}; choose another --grpc-port")
    service_pb2_grpc.add_CirqueServiceServicer_to_server(CirqueServicer(homes, gate, bound), server)
    server.start()
    return server, bound
