"""The shared bearer check and JSON error, on made-up requests (no server)."""

from __future__ import annotations

import json

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from checkpointd.webauth import (
    UNAUTHORIZED,
    authorized,
    json_error,
    need_token,
    token_source,
)

TOKEN = "s3cret-token"


def a_request(authorization: str | None = None) -> web.Request:
    headers = {} if authorization is None else {"Authorization": authorization}
    return make_mocked_request("POST", "/-/reload", headers=headers)


async def ok_handler(request: web.Request) -> web.StreamResponse:
    return web.json_response({"ok": True})


def body_of(response: web.StreamResponse) -> object:
    assert isinstance(response, web.Response)
    assert response.text is not None
    return json.loads(response.text)


# ------------------------------------------------------------------ token_source


def test_token_source_wraps_a_fixed_token_and_none():
    assert token_source(TOKEN)() == TOKEN
    assert token_source(None)() is None


def test_token_source_passes_a_function_through_unchanged():
    def source() -> str | None:
        return TOKEN

    assert token_source(source) is source


# ------------------------------------------------------------------ json_error


def test_json_error_is_a_json_body_with_the_status():
    response = json_error(409, "delivery x is pending; only dead ones retry")
    assert response.status == 409
    assert response.content_type == "application/json"
    assert body_of(response) == {"error": "delivery x is pending; only dead ones retry"}


# ------------------------------------------------------------------ authorized


@pytest.mark.parametrize(
    ("authorization", "expected"),
    [
        (f"Bearer {TOKEN}", True),
        (f"bearer {TOKEN}", True),
        (f"BEARER {TOKEN}", True),
        (f"Bearer {TOKEN} ", True),
        ("Bearer wrong-token", False),
        (f"Bearer {TOKEN}x", False),
        (f"Bearer {TOKEN[:-1]}", False),
        ("Bearer ", False),
        ("Bearer", False),
        (None, False),
        ("", False),
        (f"Basic {TOKEN}", False),
        (f"Token {TOKEN}", False),
        (TOKEN, False),
    ],
    ids=[
        "right",
        "lowercase-scheme",
        "uppercase-scheme",
        "trailing-space",
        "wrong",
        "longer",
        "shorter",
        "empty-token",
        "scheme-only",
        "missing-header",
        "empty-header",
        "basic-scheme",
        "other-scheme",
        "no-scheme",
    ],
)
def test_authorized_with_a_token_configured(authorization, expected):
    assert authorized(a_request(authorization), token_source(TOKEN)) is expected


@pytest.mark.parametrize("authorization", [None, "Bearer anything", "Basic x"])
def test_authorized_lets_everything_through_when_no_token_is_configured(authorization):
    assert authorized(a_request(authorization), token_source(None)) is True


def test_authorized_asks_the_source_at_every_call():
    tokens = iter(["first", "second", None])

    def source() -> str | None:
        return next(tokens)

    request = a_request("Bearer first")
    assert authorized(request, source) is True  # "first" in force
    assert authorized(request, source) is False  # rotated to "second"
    assert authorized(request, source) is True  # token removed


# ------------------------------------------------------------------ need_token


async def test_need_token_calls_the_handler_with_the_right_token():
    guarded = need_token(ok_handler, TOKEN)
    response = await guarded(a_request(f"Bearer {TOKEN}"))
    assert response.status == 200
    assert body_of(response) == {"ok": True}


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {TOKEN}"])
async def test_need_token_answers_401_json_without_calling_the_handler(authorization):
    called: list[web.Request] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        called.append(request)
        return web.json_response({})

    response = await need_token(handler, TOKEN)(a_request(authorization))
    assert response.status == 401
    assert body_of(response) == {
        "error": "missing or wrong bearer token (Authorization: Bearer ...)"
    }
    assert UNAUTHORIZED == "missing or wrong bearer token (Authorization: Bearer ...)"
    assert called == []


async def test_need_token_without_a_token_configured_calls_the_handler():
    response = await need_token(ok_handler, None)(a_request())
    assert response.status == 200


async def test_need_token_follows_a_rotating_token_source():
    current: dict[str, str | None] = {"token": "old"}
    guarded = need_token(ok_handler, lambda: current["token"])
    assert (await guarded(a_request("Bearer old"))).status == 200
    current["token"] = "new"
    assert (await guarded(a_request("Bearer old"))).status == 401
    assert (await guarded(a_request("Bearer new"))).status == 200
    current["token"] = None
    assert (await guarded(a_request())).status == 200
