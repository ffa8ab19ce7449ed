"""Request ids: accepted or generated, returned, on every log line of the request, sent to providers;
JSON logs when asked for."""

from __future__ import annotations

import io
import json
import logging

import pytest
from aiohttp import web

from adapters._http import REQUEST_ID, HttpTransport
from switch.config import ConfigError, load_settings
from switch.logs import build_handler, resolve_format


async def test_a_safe_request_id_is_echoed(client):
    response = await client.get("/health/live", headers={"X-Request-Id": "lb-7f3a:01.x_y-z"})
    assert response.headers["x-request-id"] == "lb-7f3a:01.x_y-z"


@pytest.mark.parametrize("given", ["a" * 129, "has space", "new\nline", "<script>", "ü"])
async def test_an_unsafe_request_id_is_replaced(client, given):
    response = await client.get("/health/live", headers={"X-Request-Id": given.encode("utf-8")})
    returned = response.headers["x-request-id"]
    assert returned != given
    assert returned.startswith("req_") and len(returned) == 28


async def test_a_request_id_is_generated_when_none_is_given(client):
    first = (await client.get("/health/live")).headers["x-request-id"]
    second = (await client.get("/health/live")).headers["x-request-id"]
    assert first.startswith("req_") and second.startswith("req_") and first != second


async def test_errors_carry_the_request_id_too(client):
    response = await client.get("/v1/payments", headers={"X-Request-Id": "rid-401"})
    assert response.status_code == 401
    assert response.headers["x-request-id"] == "rid-401"


@pytest.fixture
def json_log():
    """Every record of the switch's loggers, as the JSON lines the switch would write."""
    stream = io.StringIO()
    handler = build_handler("json", stream)
    root = logging.getLogger()
    access = logging.getLogger("switch.access")
    old_level, old_access = root.level, access.level
    root.addHandler(handler)
    access.setLevel(logging.DEBUG)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        access.setLevel(old_access)


async def test_every_log_line_of_a_request_carries_its_request_id(client, merchant, json_log):
    response = await client.post(
        "/v1/payments",
        json={"amount": 1250, "currency": "EUR", "payment_method": {"type": "card", "card": {"number": "1"}}},
        headers={**merchant.headers, "X-Request-Id": "rid-lines-1"},
    )
    assert response.status_code == 400
    await client.get("/health/live", headers={"X-Request-Id": "rid-lines-2"})
    lines = json_log()
    mine = [line for line in lines if line["logger"].startswith("switch")]
    assert mine, lines
    for line in mine:
        assert set(line) >= {"ts", "level", "logger", "message", "request_id"}
    access = [line for line in mine if line["logger"] == "switch.access"]
    assert [line["request_id"] for line in access] == ["rid-lines-1", "rid-lines-2"]
    assert "POST /v1/payments 400" in access[0]["message"]


def test_log_lines_outside_a_request_have_no_request_id():
    stream = io.StringIO()
    logger = logging.getLogger("switch.test.outside")
    handler = build_handler("json", stream)
    logger.addHandler(handler)
    try:
        logger.warning("background %s", "work")
    finally:
        logger.removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert line["request_id"] == "-" and line["message"] == "background work" and line["level"] == "WARNING"


def test_text_format_shows_the_request_id():
    stream = io.StringIO()
    logger = logging.getLogger("switch.test.text")
    handler = build_handler("text", stream)
    logger.addHandler(handler)
    token = REQUEST_ID.set("rid-text")
    try:
        logger.warning("hello")
    finally:
        REQUEST_ID.reset(token)
        logger.removeHandler(handler)
    assert "[rid-text] hello" in stream.getvalue()


def test_auto_is_text_on_a_terminal_and_json_elsewhere():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert resolve_format("auto", Tty()) == "text"
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("json", Tty()) == "json"


def test_an_unknown_log_format_is_refused_naming_the_variable():
    with pytest.raises(ConfigError, match="SWITCH_LOG_FORMAT"):
        load_settings({"SWITCH_LOG_FORMAT": "xml"})
    assert load_settings({"SWITCH_LOG_FORMAT": "json"}).log_format == "json"


async def test_provider_calls_carry_the_request_id():
    seen: list[str | None] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.headers.get("X-Request-Id"))
        return web.json_response({"ok": True})

    application = web.Application()
    application.router.add_post("/charge", handle)
    runner = web.AppRunner(application)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    transport = HttpTransport("fake", f"http://127.0.0.1:{port}")
    silent = HttpTransport("fake", f"http://127.0.0.1:{port}", request_id_header=None)
    try:
        await transport.request("POST", "/charge", json={})
        token = REQUEST_ID.set("rid-provider")
        try:
            await transport.request("POST", "/charge", json={})
            await silent.request("POST", "/charge", json={})
        finally:
            REQUEST_ID.reset(token)
    finally:
        await transport.close()
        await silent.close()
        await runner.cleanup()
    assert seen == [None, "rid-provider", None]
