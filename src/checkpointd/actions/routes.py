"""``/api/v1/deliveries``: the outbox through the daemon's HTTP API.

::

    GET  /api/v1/deliveries?status=pending|delivered|dead&checkpoint=&limit=
                                           newest first, with counts by status
    GET  /api/v1/deliveries/{id}           one delivery
    POST /api/v1/deliveries/{id}/retry     requeue one dead delivery (409 if not dead)
    POST /api/v1/deliveries/retry          body {"ids": [...]} or {"all_dead": true}

POSTs need the bearer token when one is set (the same as every mutating
call). Nothing served here holds a secret: destinations are redacted and
errors were scrubbed before they were stored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Protocol, cast, get_args

from aiohttp import web

from checkpointd.actions.outbox import DeliveryStatus, OutboxEntry
from checkpointd.webauth import TokenSource, json_error, need_token

__all__ = ["DeliveryApi", "add_delivery_routes"]

_ID = re.compile(r"^[0-9a-fA-F-]{36}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_MAX_LIMIT = 1000
_MAX_IDS = 10_000

_BAD_ID = "a delivery id is a UUID such as 0192f0a4-..."


class DeliveryApi(Protocol):
    """What the routes need (``ActionService`` implements it)."""

    async def list_deliveries(
        self, *, status: DeliveryStatus | None, checkpoint: str | None, limit: int
    ) -> list[OutboxEntry]: ...

    async def get_delivery(self, delivery_id: str) -> OutboxEntry | None: ...

    async def counts(self) -> dict[str, int]: ...

    async def retry(self, ids: Sequence[str] | None = None) -> list[str]: ...


def _delivery_id(request: web.Request) -> str | None:
    delivery_id = request.match_info["delivery_id"]
    return delivery_id if _ID.match(delivery_id) else None


def _list_query_error(status: str | None, raw_limit: str, checkpoint: str | None) -> str | None:
    """Why the list query is malformed, or None when it is fine."""
    allowed = get_args(DeliveryStatus)
    if status is not None and status not in allowed:
        return f"unknown status {status[:32]!r}; one of {', '.join(allowed)}"
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= _MAX_LIMIT:
        return f"limit must be an integer from 1 to {_MAX_LIMIT}"
    if checkpoint is not None and not _NAME.match(checkpoint):
        return f"invalid checkpoint name {checkpoint[:64]!r}"
    return None


def _requested_ids(body: dict[str, Any]) -> list[str] | None:
    """The ``ids`` of a retry body, or None unless it is a non-empty list of delivery ids."""
    ids = body.get("ids")
    if (
        not isinstance(ids, list)
        or not ids
        or len(ids) > _MAX_IDS
        or not all(isinstance(i, str) and _ID.match(i) for i in ids)
    ):
        return None
    return ids


class _DeliveryHandlers:
    """The handlers of ``add_delivery_routes``, over one ``DeliveryApi``."""

    def __init__(self, api: DeliveryApi) -> None:
        self._api = api

    async def list_deliveries(self, request: web.Request) -> web.Response:
        status = request.query.get("status")
        raw_limit = request.query.get("limit", "50")
        checkpoint = request.query.get("checkpoint")
        problem = _list_query_error(status, raw_limit, checkpoint)
        if problem is not None:
            return json_error(400, problem)
        found = await self._api.list_deliveries(
            status=cast(DeliveryStatus | None, status), checkpoint=checkpoint, limit=int(raw_limit)
        )
        return web.json_response(
            {"deliveries": [e.to_dict() for e in found], "counts": await self._api.counts()}
        )

    async def get_delivery(self, request: web.Request) -> web.Response:
        delivery_id = _delivery_id(request)
        if delivery_id is None:
            return json_error(400, _BAD_ID)
        entry = await self._api.get_delivery(delivery_id)
        if entry is None:
            return json_error(404, f"no delivery with id {delivery_id}")
        return web.json_response(entry.to_dict())

    async def retry_one(self, request: web.Request) -> web.Response:
        delivery_id = _delivery_id(request)
        if delivery_id is None:
            return json_error(400, _BAD_ID)
        entry = await self._api.get_delivery(delivery_id)
        if entry is None:
            return json_error(404, f"no delivery with id {delivery_id}")
        requeued = await self._api.retry([delivery_id])
        if not requeued:
            return json_error(
                409, f"delivery {delivery_id} is {entry.status}; only dead ones retry"
            )
        return web.json_response({"requeued": requeued})

    async def retry_many(self, request: web.Request) -> web.Response:
        try:
            body: Any = json.loads(await request.read() or b"{}")
        except ValueError:
            return json_error(400, 'expected a JSON body: {"ids": [...]} or {"all_dead": true}')
        if not isinstance(body, dict):
            return json_error(400, 'expected a JSON object: {"ids": [...]} or {"all_dead": true}')
        if body.get("all_dead") is True:
            return web.json_response({"requeued": await self._api.retry(None)})
        ids = _requested_ids(body)
        if ids is None:
            return json_error(
                400, 'give "ids": a non-empty list of delivery ids, or "all_dead": true'
            )
        return web.json_response({"requeued": await self._api.retry(ids)})


def add_delivery_routes(app: web.Application, api: DeliveryApi, token: TokenSource) -> None:
    """Add the delivery routes to ``app`` (before it is started)."""
    handlers = _DeliveryHandlers(api)
    app.router.add_get("/api/v1/deliveries", handlers.list_deliveries)
    app.router.add_post("/api/v1/deliveries/retry", need_token(handlers.retry_many, token))
    app.router.add_get("/api/v1/deliveries/{delivery_id}", handlers.get_delivery)
    app.router.add_post(
        "/api/v1/deliveries/{delivery_id}/retry", need_token(handlers.retry_one, token)
    )
