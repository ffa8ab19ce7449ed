"""The Store contract every backend implements (memory for one process, Redis for many)."""

from __future__ import annotations

import abc


class Store(abc.ABC):
    """A key-value store with expiry and an atomic claim, shared by all workers that use it."""

    @abc.abstractmethod
    async def claim(self, key: str, value: bytes, ttl_s: float) -> bool:
        """Set ``key`` to ``value`` only if it is absent; return whether this call set it."""

    @abc.abstractmethod
    async def get(self, key: str) -> bytes | None:
        """Return the value of ``key``, or None when absent or expired."""

    @abc.abstractmethod
    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        """Set ``key`` to ``value``, replacing any value, expiring after ``ttl_s`` seconds."""

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Remove ``key`` if present."""

    @abc.abstractmethod
    async def incr(self, key: str, amount: int, ttl_s: float) -> int:
        """Add ``amount`` to the integer at ``key`` (0 when absent) and return the new value.

        The expiry is set when the key is created and left alone afterwards.
        """

    async def ping(self) -> bool:
        """Return whether the backend answers."""
        return True

    async def close(self) -> None:  # noqa: B027 - backends without connections need nothing
        """Release connections."""
