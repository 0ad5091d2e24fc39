"""The daemon's HTTP surface (aiohttp AppRunner + TCPSite, never ``run_app``).

    GET  /metrics                        Prometheus text format
    GET  /healthz                        200 while the loop is responsive and critical tasks live
    GET  /readyz                         200 when config, store and triggers are up; 503 draining
    GET  /api/v1/checkpoints             name, triggers, last status, last run, next fire time
    GET  /api/v1/checkpoints/{name}/runs runs of one checkpoint, newest first
    POST /api/v1/checkpoints/{name}/runs run it now: 202 with the run id
    GET  /api/v1/runs?checkpoint=&status=&limit=
    GET  /api/v1/runs/{id}
    POST /-/reload                       re-read the config file

Mutating calls need ``Authorization: Bearer <daemon.http.token>`` when a token is
set. Every error is JSON: ``{"error": "..."}``. A call the daemon cannot take
now (it is draining, or still starting) is 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import re
from typing import Any, Protocol

from aiohttp import web

from checkpointd.checkpoints.result import CheckpointResult, Status
from checkpointd.errors import CheckpointdError
from checkpointd.webauth import Handler, TokenSource, json_error, need_token, token_source

__all__ = [
    "SHUTDOWN_TIMEOUT",
    "DaemonApi",
    "HttpServer",
    "ReloadOutcome",
    "ServiceUnavailable",
    "TokenSource",
    "build_app",
    "is_loopback",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_RUN_ID = re.compile(r"^[0-9a-fA-F-]{36}$")
_MAX_LIMIT = 1000


class ServiceUnavailable(CheckpointdError):
    """A ``DaemonApi`` call the daemon cannot take now (draining, starting); served as 503."""


class ReloadOutcome(Protocol):
    @property
    def ok(self) -> bool: ...

    @property
    def errors(self) -> list[str]: ...

    @property
    def summary(self) -> str: ...


class DaemonApi(Protocol):
    """What the HTTP layer needs from the daemon."""

    def health(self) -> tuple[bool, dict[str, Any]]: ...

    def readiness(self) -> tuple[bool, dict[str, Any]]: ...

    async def checkpoints_overview(self) -> list[dict[str, Any]]: ...

    async def trigger_manual(self, name: str) -> str | None:
        """Queue a manual run; the run id, or None when no checkpoint has that name."""
        ...

    async def reload(self, reason: str) -> ReloadOutcome: ...

    async def list_runs(
        self, *, checkpoint: str | None, status: str | None, limit: int
    ) -> list[CheckpointResult]: ...

    async def get_run(self, run_id: str) -> CheckpointResult | None: ...

    def render_metrics(self) -> tuple[bytes, str]: ...


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; the only hosts allowed without a token."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _checkpoint_name(request: web.Request) -> str:
    name = request.match_info["name"]
    if not _NAME.match(name):
        raise web.HTTPBadRequest(reason=f"invalid checkpoint name {name[:64]!r}")
    return name


def _runs_query(request: web.Request) -> tuple[str | None, str | None, int]:
    """(checkpoint, status, limit) from the query string; 400 when one is malformed."""
    status = request.query.get("status")
    if status is not None and status not in {s.value for s in Status}:
        allowed = ", ".join(s.value for s in Status)
        raise web.HTTPBadRequest(reason=f"unknown status {status[:32]!r}; one of {allowed}")
    raw_limit = request.query.get("limit", "50")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= _MAX_LIMIT:
        raise web.HTTPBadRequest(reason=f"limit must be an integer from 1 to {_MAX_LIMIT}")
    checkpoint = request.query.get("checkpoint")
    if checkpoint is not None and not _NAME.match(checkpoint):
        raise web.HTTPBadRequest(reason=f"invalid checkpoint name {checkpoint[:64]!r}")
    return checkpoint, status, int(raw_limit)


def _runs_response(found: list[CheckpointResult]) -> web.Response:
    return web.json_response({"runs": [r.to_dict() for r in found]})


class _DaemonHandlers:
    """The handlers and the error middleware of ``build_app``, over one ``DaemonApi``."""

    def __init__(self, api: DaemonApi, max_body_bytes: int) -> None:
        self._api = api
        self._max_body_bytes = max_body_bytes

    @web.middleware
    async def errors_as_json(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Bound every request body; answer every error as JSON."""
        try:
            if request.method in ("POST", "PUT", "PATCH"):
                await self._read_bounded(request)
            return await handler(request)
        except web.HTTPException as exc:
            if exc.content_type == "application/json":
                raise
            return json_error(exc.status, self._reason(exc))
        except ServiceUnavailable as exc:
            return json_error(503, str(exc))
        except CheckpointdError as exc:
            return json_error(500, str(exc))

    async def _read_bounded(self, request: web.Request) -> None:
        # aiohttp enforces client_max_size only when a handler reads the body, and
        # most of ours never do: refuse by Content-Length at once, and read (which
        # raises 413 past the limit) so a chunked body is bounded too.
        length = request.content_length
        if length is not None and length > self._max_body_bytes:
            raise web.HTTPRequestEntityTooLarge(max_size=self._max_body_bytes, actual_size=length)
        await request.read()

    def _reason(self, exc: web.HTTPException) -> str:
        if exc.status == 413:
            return f"request body too large; the limit is {self._max_body_bytes} bytes"
        return exc.reason

    async def metrics(self, request: web.Request) -> web.Response:
        body, content_type = self._api.render_metrics()
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def healthz(self, request: web.Request) -> web.Response:
        ok, detail = self._api.health()
        return web.json_response(
            {"status": "ok" if ok else "unhealthy", **detail}, status=200 if ok else 503
        )

    async def readyz(self, request: web.Request) -> web.Response:
        ok, detail = self._api.readiness()
        return web.json_response(
            {"status": "ready" if ok else "not ready", **detail}, status=200 if ok else 503
        )

    async def list_checkpoints(self, request: web.Request) -> web.Response:
        return web.json_response({"checkpoints": await self._api.checkpoints_overview()})

    async def run_checkpoint(self, request: web.Request) -> web.Response:
        name = _checkpoint_name(request)
        run_id = await self._api.trigger_manual(name)
        if run_id is None:
            return json_error(404, f"no checkpoint named {name!r}")
        return web.json_response(
            {
                "run_id": run_id,
                "checkpoint": name,
                "status": "accepted",
                "href": f"/api/v1/runs/{run_id}",
            },
            status=202,
        )

    async def runs(self, request: web.Request) -> web.Response:
        checkpoint, status, limit = _runs_query(request)
        return _runs_response(
            await self._api.list_runs(checkpoint=checkpoint, status=status, limit=limit)
        )

    async def checkpoint_runs(self, request: web.Request) -> web.Response:
        name = _checkpoint_name(request)
        _, status, limit = _runs_query(request)
        return _runs_response(
            await self._api.list_runs(checkpoint=name, status=status, limit=limit)
        )

    async def run_by_id(self, request: web.Request) -> web.Response:
        run_id = request.match_info["run_id"]
        if not _RUN_ID.match(run_id):
            return json_error(400, "a run id is a UUID such as 0192f0a4-...")
        result = await self._api.get_run(run_id)
        if result is None:
            return json_error(404, f"no run with id {run_id}")
        return web.json_response(result.to_dict())

    async def reload(self, request: web.Request) -> web.Response:
        outcome = await self._api.reload("http")
        body = {
            "result": "success" if outcome.ok else "failure",
            "summary": outcome.summary,
            "errors": outcome.errors,
        }
        return web.json_response(
            body, status=200 if outcome.ok else 400, dumps=lambda o: json.dumps(o, default=str)
        )


def build_app(
    api: DaemonApi, *, token: str | TokenSource | None, max_body_bytes: int
) -> web.Application:
    """The aiohttp application; separate from serving so tests can use it directly.

    ``token`` is the bearer token, or a function returning the one in force at
    each request (so a config reload can rotate it).
    """
    current_token = token_source(token)
    handlers = _DaemonHandlers(api, max_body_bytes)
    app = web.Application(client_max_size=max_body_bytes, middlewares=[handlers.errors_as_json])
    router = app.router
    router.add_get("/metrics", handlers.metrics)
    router.add_get("/healthz", handlers.healthz)
    router.add_get("/readyz", handlers.readyz)
    router.add_get("/api/v1/checkpoints", handlers.list_checkpoints)
    router.add_get("/api/v1/checkpoints/{name}/runs", handlers.checkpoint_runs)
    router.add_post(
        "/api/v1/checkpoints/{name}/runs", need_token(handlers.run_checkpoint, current_token)
    )
    router.add_get("/api/v1/runs", handlers.runs)
    router.add_get("/api/v1/runs/{run_id}", handlers.run_by_id)
    router.add_post("/-/reload", need_token(handlers.reload, current_token))
    return app


SHUTDOWN_TIMEOUT = 2.0
"""Seconds the HTTP server waits for open connections at stop."""


class HttpServer:
    """Serves ``build_app`` on host:port; ``start()``/``stop()`` are the daemon's to call."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        # aiohttp waits up to 60 s for open connections by default: far past the drain timeout.
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT
        )
        self._host = host
        self._port = port
        self._site: web.TCPSite | None = None

    async def start(self) -> None:
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True)
        await self._site.start()

    @property
    def bound_port(self) -> int:
        """The real port (differs from the configured one when that was 0)."""
        server = self._site._server if self._site else None
        sockets = getattr(server, "sockets", None)
        if not sockets:
            return self._port
        return int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        # On asyncio's selector loop a connection accepted in the same loop turn in which the
        # listening socket closes is never closed (CPython 3.11-3.13), which shows as an
        # unclosed-socket ResourceWarning at exit. Stop accepting first, let pending accept
        # callbacks run, then clean up.
        server = self._site._server if self._site else None
        sockets = getattr(server, "sockets", None) or ()
        loop = asyncio.get_running_loop()
        if isinstance(loop, asyncio.SelectorEventLoop):
            for sock in sockets:
                with contextlib.suppress(ValueError, OSError):
                    loop.remove_reader(sock.fileno())
            for _ in range(3):
                await asyncio.sleep(0)
        await self._runner.cleanup()
