"""The transport raises NotSent only when provably no try of the request reached the provider."""

from __future__ import annotations

import pytest

from adapters._http import HttpTransport, NotSent, RetryPolicy, TimedOut
from adapters.base import Outcome, transport_outcome
from tests.adapters.scripted import Answer, free_port, scripted_server

FAST_RETRY = RetryPolicy(max_retries=2, backoff_base=0.0, backoff_cap=0.0)


async def test_a_request_that_never_connects_is_not_sent() -> None:
    transport = HttpTransport("test", f"http://127.0.0.1:{free_port()}", retry=FAST_RETRY, total_timeout=2.0)
    try:
        with pytest.raises(NotSent):
            await transport.request("POST", "/pay", json={"a": 1}, idempotency_key="k1")
    finally:
        await transport.close()


async def test_a_retry_that_cannot_connect_after_a_delivered_try_is_unknown() -> None:
    # The first try reaches the server, which answers 503 (it may have processed the request);
    # the server then goes away, so the retry cannot connect. That failure proves nothing.
    async with scripted_server() as (server, runner):
        server.answers.append(Answer(status=503, body=b'{"error": "busy"}'))
        transport = HttpTransport("test", server.base_url, retry=FAST_RETRY, total_timeout=2.0)
        original_send = transport._send_once
        calls = 0

        async def send_once(outgoing, attempt_number):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            response = await original_send(outgoing, attempt_number)
            # Stop the server right after the first answer, before the retry.
            await runner.cleanup()
            await transport.close()
            return response

        transport._send_once = send_once  # type: ignore[method-assign]
        try:
            with pytest.raises(TimedOut):
                await transport.request("POST", "/pay", json={"a": 1}, idempotency_key="k1")
        finally:
            await transport.close()
        assert len(server.received) == 1
    assert transport_outcome(TimedOut("x")).outcome is Outcome.UNKNOWN


async def test_a_connection_dropped_after_writing_is_unknown() -> None:
    async with scripted_server() as (server, _):
        server.answers.extend([Answer(drop=True)])
        transport = HttpTransport("test", server.base_url, retry=FAST_RETRY, total_timeout=2.0)
        try:
            # No idempotency key: the POST is not retried, and the drop must not read as "not sent".
            with pytest.raises(TimedOut):
                await transport.request("POST", "/pay", json={"a": 1})
        finally:
            await transport.close()
        assert len(server.received) == 1


async def test_a_drop_then_unreachable_retry_stays_unknown() -> None:
    async with scripted_server() as (server, runner):
        server.answers.append(Answer(drop=True))
        transport = HttpTransport("test", server.base_url, retry=FAST_RETRY, total_timeout=2.0)
        original_send = transport._send_once

        async def send_once(outgoing, attempt_number):  # type: ignore[no-untyped-def]
            try:
                return await original_send(outgoing, attempt_number)
            finally:
                if attempt_number == 1:
                    await runner.cleanup()
                    await transport.close()

        transport._send_once = send_once  # type: ignore[method-assign]
        try:
            with pytest.raises(TimedOut):
                await transport.request("POST", "/pay", json={"a": 1}, idempotency_key="k2")
        finally:
            await transport.close()
        assert len(server.received) == 1


async def test_a_read_timeout_is_unknown() -> None:
    async with scripted_server() as (server, _):
        server.answers.append(Answer(delay_s=1.0))
        transport = HttpTransport("test", server.base_url, retry=FAST_RETRY, total_timeout=0.3)
        try:
            with pytest.raises(TimedOut):
                await transport.request("POST", "/pay", json={"a": 1}, idempotency_key="k3")
        finally:
            await transport.close()


async def test_a_retried_503_returns_the_last_answer() -> None:
    async with scripted_server() as (server, _):
        server.answers.extend([Answer(status=503), Answer(status=200, body=b'{"ok": true}')])
        transport = HttpTransport("test", server.base_url, retry=FAST_RETRY, total_timeout=2.0)
        try:
            response = await transport.request("POST", "/pay", json={"a": 1}, idempotency_key="k4")
        finally:
            await transport.close()
    assert (response.status, response.attempts) == (200, 2)
    assert [h.get("Idempotency-Key") for _, _, h, _ in server.received] == ["k4", "k4"]
