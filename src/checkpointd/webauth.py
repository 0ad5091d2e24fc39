"""The one bearer-token check and the one JSON error shared by every HTTP route.

The daemon's own routes (``daemon/http.py``) and the delivery routes
(``actions/routes.py``) live in different layers but answer the same way: a
mutating call needs ``Authorization: Bearer <token>`` when a token is set, and
every error is ``{"error": "..."}``. Both import this module, so the check is
written (and tested) once::

    current = token_source(config_token)          # str, None, or a function
    app.router.add_post("/-/reload", need_token(reload, current))

A ``TokenSource`` is asked at every request, so a config reload can rotate the
token without rebuilding the application. The comparison is constant-time.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

__all__ = [
    "UNAUTHORIZED",
    "Handler",
    "TokenSource",
    "authorized",
    "json_error",
    "need_token",
    "token_source",
]

TokenSource = Callable[[], str | None]
"""Returns the bearer token in force now (None: no token); a reload may change it."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
"""An aiohttp request handler."""

UNAUTHORIZED = "missing or wrong bearer token (Authorization: Bearer ...)"
"""The message of every 401 answer."""


def token_source(token: str | TokenSource | None) -> TokenSource:
    """``token`` as a TokenSource: a function is used as is, a fixed value is wrapped."""
    if callable(token):
        return token
    fixed: str | None = token
    return lambda: fixed


def json_error(status: int, message: str) -> web.Response:
    """The JSON error every route answers with: ``{"error": message}``."""
    return web.json_response({"error": message}, status=status)


def authorized(request: web.BaseRequest, token: TokenSource) -> bool:
    """True when no token is in force, or ``request`` carries it as a bearer token.

    The scheme is case-insensitive (RFC 7235); the token is compared in
    constant time so its value cannot be guessed from response timings.
    """
    expected = token()
    if expected is None:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), expected.encode()
    )


def need_token(handler: Handler, token: str | TokenSource | None) -> Handler:
    """``handler`` behind the bearer check: a request without the token gets a JSON 401."""
    current = token_source(token)

    async def guarded(request: web.Request) -> web.StreamResponse:
        if not authorized(request, current):
            return json_error(401, UNAUTHORIZED)
        return await handler(request)

    return guarded
