"""Webhook endpoints and the event log of a merchant scope: create, list, delete, read, redeliver."""

from __future__ import annotations

import time

import asyncpg
import msgspec

from switch.events.signing import new_secret
from switch.ids import new_id


class Endpoint(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A webhook endpoint as the API shows it (``secret`` only when it is created)."""

    id: str
    # No default: omit_defaults would leave it out of every answer.
    object: str
    url: str
    events: list[str]
    description: str | None = None
    secret: str | None = None
    created: int


class AnchorMissing(LookupError):
    """``starting_after`` names no event of this merchant."""


_ENCODER = msgspec.json.Encoder()


def _endpoint(row: asyncpg.Record) -> Endpoint:
    return Endpoint(
        id=row["id"],
        object="webhook_endpoint",
        url=row["url"],
        events=list(row["events"]),
        description=row["description"],
        created=row["created"],
    )


class EventLog:
    """Endpoints and events of merchant scopes, read and written through the pool (not hot paths)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        """Create the log over ``pool``."""
        self._pool = pool

    async def create_endpoint(
        self, merchant_id: str, url: str, events: list[str], description: str | None = None
    ) -> Endpoint:
        """Register an endpoint; the answer is the only time its secret is shown."""
        endpoint = Endpoint(
            id=new_id("we"),
            object="webhook_endpoint",
            url=url,
            events=sorted(set(events)),
            description=description,
            secret=new_secret(),
            created=int(time.time()),
        )
        await self._pool.execute(
            "INSERT INTO webhook_endpoints (id, merchant_id, url, events, secret, description, created)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            endpoint.id,
            merchant_id,
            endpoint.url,
            endpoint.events,
            endpoint.secret,
            endpoint.description,
            endpoint.created,
        )
        return endpoint

    async def list_endpoints(self, merchant_id: str) -> list[Endpoint]:
        """Every endpoint of the scope, newest first."""
        rows = await self._pool.fetch(
            "SELECT * FROM webhook_endpoints WHERE merchant_id = $1 ORDER BY created DESC, id DESC", merchant_id
        )
        return [_endpoint(row) for row in rows]

    async def get_endpoint(self, merchant_id: str, endpoint_id: str) -> Endpoint | None:
        """One endpoint of the scope, or None."""
        row = await self._pool.fetchrow(
            "SELECT * FROM webhook_endpoints WHERE id = $1 AND merchant_id = $2", endpoint_id, merchant_id
        )
        return _endpoint(row) if row is not None else None

    async def delete_endpoint(self, merchant_id: str, endpoint_id: str) -> bool:
        """Delete an endpoint and its undelivered queue; False when the scope has no such endpoint."""
        deleted = await self._pool.fetchval(
            "DELETE FROM webhook_endpoints WHERE id = $1 AND merchant_id = $2 RETURNING id", endpoint_id, merchant_id
        )
        return deleted is not None

    async def get_event(self, merchant_id: str, event_id: str) -> bytes | None:
        """The event's JSON, or None when the scope has no such event."""
        body = await self._pool.fetchval(
            "SELECT body::text FROM events WHERE id = $1 AND merchant_id = $2", event_id, merchant_id
        )
        return body.encode() if body is not None else None

    async def list_events(self, merchant_id: str, limit: int, starting_after: str | None) -> bytes:
        """A page of events, newest first (in the order they were written), as a list object.

        Raises:
            AnchorMissing: When ``starting_after`` is not an event of this scope.
        """
        if starting_after is None:
            rows = await self._pool.fetch(
                "SELECT body::text AS body FROM events WHERE merchant_id = $1 ORDER BY seq DESC LIMIT $2",
                merchant_id,
                limit + 1,
            )
        else:
            anchor = await self._pool.fetchval(
                "SELECT seq FROM events WHERE id = $1 AND merchant_id = $2", starting_after, merchant_id
            )
            if anchor is None:
                raise AnchorMissing(starting_after)
            rows = await self._pool.fetch(
                "SELECT body::text AS body FROM events WHERE merchant_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
                merchant_id,
                anchor,
                limit + 1,
            )
        has_more = len(rows) > limit
        data = ",".join(row["body"] for row in rows[:limit])
        return f'{{"object":"list","data":[{data}],"has_more":{"true" if has_more else "false"}}}'.encode()

    async def redeliver(self, merchant_id: str, event_id: str, *, now: int | None = None) -> int | None:
        """Queue the event again for every endpoint of the scope that subscribes to it.

        Returns:
            How many deliveries were queued, or None when the scope has no such event.
        """
        now = int(time.time()) if now is None else now
        async with self._pool.acquire() as connection, connection.transaction():
            event = await connection.fetchrow(
                "SELECT id, seq, type, payment_id FROM events WHERE id = $1 AND merchant_id = $2",
                event_id,
                merchant_id,
            )
            if event is None:
                return None
            queued = await connection.fetch(
                "INSERT INTO event_deliveries (endpoint_id, event_id, seq, ordering_key, next_attempt, created)"
                " SELECT w.id, $2, $3, coalesce($4, $2), $5, $5 FROM webhook_endpoints w"
                " WHERE w.merchant_id = $1 AND ($6 = ANY(w.events) OR '*' = ANY(w.events))"
                " ON CONFLICT (endpoint_id, event_id) DO UPDATE"
                " SET status = 'pending', next_attempt = $5, lease_until = 0, attempts = 0, created = $5"
                " RETURNING endpoint_id",
                merchant_id,
                event["id"],
                event["seq"],
                event["payment_id"],
                now,
                event["type"],
            )
        return len(queued)


def encode(value: object) -> bytes:
    """JSON of an API object."""
    return _ENCODER.encode(value)
