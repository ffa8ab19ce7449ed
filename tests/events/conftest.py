"""Fixtures of the event tests: local receivers and endpoints registered through the API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest_asyncio

from tests.events.receiver import Receiver


@pytest_asyncio.fixture
async def receivers() -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    """Start receivers on demand; all are stopped at the end of the test."""
    started: list[Receiver] = []

    async def start(**options: Any) -> Receiver:
        receiver = Receiver(**options)
        await receiver.start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        await receiver.stop()


async def register(client, merchant, receiver: Receiver, events: list[str] | None = None) -> dict[str, Any]:
    """Register ``receiver`` as an endpoint of ``merchant`` and give it the endpoint's secret."""
    response = await client.post(
        "/v1/webhook_endpoints", json={"url": receiver.url, "events": events or ["*"]}, headers=merchant.headers
    )
    assert response.status_code == 201, response.text
    endpoint = response.json()
    receiver.secret = endpoint["secret"]
    return endpoint
