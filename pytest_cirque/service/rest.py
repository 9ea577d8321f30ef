"""Cirque's REST routes, methods, parameters and JSON shapes, served by FastAPI.

Clients written for Cirque's Flask service work unchanged; what differs is what Cirque
left undefined: an unknown home or device is 404 (Cirque answered an empty 200), a
malformed body or a refused topology is 400 with one line saying why, a command has a
time limit (``?timeout=``), and a command past it is killed and answered with 504.
FastAPI describes all of it at /openapi.json (and /docs).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from importlib import metadata
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from pytest_cirque.core.errors import CirqueError, ExecTimeout, ImageError, NotFound, SpecError
from pytest_cirque.service.peers import Gate
from pytest_cirque.service.registry import (
    DEFAULT_COMMAND_TIMEOUT_S,
    ServiceHomes,
    check_tail,
    check_timeout,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The exit code a command killed at its time limit reports, as coreutils' timeout does.
TIMED_OUT_CODE = "124"

TOPOLOGY_SCHEMA = {
    "type": "object",
    "description": "Device name -> device config, as Cirque's topology files have them.",
    "additionalProperties": {
        "type": "object",
        "properties": {
            "type": {"type": "string", "description": "device type; wifi_ap makes an AP"},
            "base_image": {"type": "string", "description": "image; defaults to type"},
            "capability": {"type": "array", "items": {"type": "string"}},
            "docker_network": {"type": "string", "enum": ["Internal", "Ipv6", "IpvLan"]},
        },
    },
    "example": {
        "device0": {"type": "generic_node", "base_image": "generic_node_image"},
        "wifi-ap": {"type": "wifi_ap", "base_image": "mac80211_ap_image"},
    },
}


class GateMiddleware:
    """Lets in only whom the gate admits (see peers.Gate); 403 with one line otherwise.
    A plain ASGI middleware, so streamed answers pass through untouched."""

    def __init__(self, app: ASGIApp, gate: Gate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        client, server = scope.get("client"), scope.get("server")
        refusal = await run_in_threadpool(
            self.gate.refusal,
            tuple(client) if client else None,
            tuple(server) if server else None,
            headers,
            (query.get("token") or [None])[0],
        )
        if refusal is None:
            await self.app(scope, receive, send)
            return
        response = JSONResponse({"detail": refusal}, status_code=403)
        await response(scope, receive, send)


def _error(exc: CirqueError) -> HTTPException:
    if isinstance(exc, NotFound):
        return HTTPException(404, str(exc))
    if isinstance(exc, (SpecError, ImageError)):
        return HTTPException(400, str(exc))
    return HTTPException(500, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


async def _call(function: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking registry call on the thread pool; its errors as HTTP errors."""
    try:
        return await run_in_threadpool(function, *args)
    except CirqueError as exc:
        raise _error(exc) from None


def _version() -> str:
    # Not pytest_cirque.__version__: the package root sits above every layer.
    try:
        return metadata.version("pytest-cirque")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_app(homes: ServiceHomes, gate: Gate) -> ASGIApp:
    """The REST application over ``homes``, behind ``gate``."""
    app = FastAPI(
        title="cirque service",
        version=_version(),
        description="Cirque's REST API over pytest-cirque homes: create homes from Cirque "
        "topologies, drive their devices with shell commands, destroy them.",
    )

    @app.post(
        "/create_home",
        summary="Create a home from a topology; its id (a JSON string)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": TOPOLOGY_SCHEMA}},
            }
        },
        responses={400: {"description": "malformed body or refused topology"}},
    )
    async def create_home(request: Request) -> str:
        body = await request.body()
        try:
            topology = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HTTPException(
                400, f"the body is not JSON ({exc}); send the topology as a JSON object"
            ) from None
        return str(await _call(homes.create_home, topology))

    @app.get("/get_homes", summary="The ids of this service's homes")
    async def get_homes() -> list[str]:
        return homes.home_ids()

    @app.get("/home_devices/{home_id}", summary="Device id -> device state, for a home")
    async def home_devices(home_id: str) -> dict[str, Any]:
        return dict(await _call(homes.devices, home_id))

    @app.get("/device_state/{home_id}/{device_id}", summary="One device's state")
    async def device_state(home_id: str, device_id: str) -> dict[str, Any]:
        return dict(await _call(homes.device, home_id, device_id))

    @app.get(
        "/device_cmd/{home_id}/{device_id}/{cmd:path}",
        summary="Run a shell command in a device",
        description="JSON {return_code, output} (stdout then stderr), or with stream=True the "
        "output as text/plain while it comes. Past `timeout` seconds the command is killed: "
        f"504 with return_code {TIMED_OUT_CODE} (streamed: a last line says so).",
        responses={504: {"description": "the command passed its time limit and was killed"}},
    )
    async def device_cmd(
        home_id: str,
        device_id: str,
        cmd: str,
        stream: str = Query("False", description="True: stream the output as text/plain"),
        timeout: str | None = Query(
            None, description=f"seconds the command may run (default {DEFAULT_COMMAND_TIMEOUT_S:g})"
        ),
    ) -> Any:
        try:
            limit = check_timeout(timeout)
        except SpecError as exc:
            raise HTTPException(400, str(exc)) from None
        if stream == "True":
            chunks = await _call(homes.stream, home_id, device_id, cmd, limit)
            return StreamingResponse(chunks, media_type="text/plain")
        try:
            result = await run_in_threadpool(homes.run, home_id, device_id, cmd, limit)
        except ExecTimeout as exc:
            return JSONResponse(
                {"return_code": TIMED_OUT_CODE, "output": "", "detail": str(exc)},
                status_code=504,
            )
        except CirqueError as exc:
            raise _error(exc) from None
        return {"return_code": str(result.exit_code), "output": result.stdout + result.stderr}

    @app.get(
        "/device_log/{home_id}/{device_id}",
        response_class=PlainTextResponse,
        summary="A device's log (stdout and stderr of its main process)",
    )
    async def device_log(
        home_id: str,
        device_id: str,
        tail: str | None = Query(None, description="last N lines; anything else: all"),
    ) -> str:
        return str(await _call(homes.log, home_id, device_id, check_tail(tail)))

    @app.get("/stop_device/{home_id}/{device_id}", summary="Stop a device and remove it")
    async def stop_device(home_id: str, device_id: str) -> str:
        return str(await _call(homes.stop_device, home_id, device_id))

    @app.get("/destroy_home/{home_id}", summary="Destroy a home; its id")
    async def destroy_home(home_id: str) -> str:
        return str(await _call(homes.destroy_home, home_id))

    @app.get("/wifi_ssid_psk/{home_id}", summary="[ssid, psk] of the home's access point")
    async def wifi_ssid_psk(home_id: str) -> list[str | None]:
        return list(await _call(homes.wifi_ssid_psk, home_id))

    @app.get("/", summary="Destroy every home of this service; their ids")
    async def destroy_homes() -> list[str]:
        return list(await _call(homes.destroy_all))

    return GateMiddleware(app, gate)
