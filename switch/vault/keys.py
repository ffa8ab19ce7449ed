"""Master keys: where they come from, and the ring of current and previous ones.

Production names the master key in ``SWITCH_VAULT_MASTER_KEY`` (64 hex digits or base64 of 32
bytes) or in a file named by ``SWITCH_VAULT_MASTER_KEY_FILE`` (first line current, later lines
previous keys still needed to unwrap data keys until ``switch vault rotate-key`` re-wraps them).
Zero-config generates one in the data directory (mode 0600) and says so in the start-up banner:
fine for trying the switch, not for real cards, since the key then sits beside the data.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import pathlib

import msgspec

from switch.vault.envelope import KEY_BYTES, key_id_of, new_key

ZERO_CONFIG_FILE = "vault_master.key"


class MasterKeyError(ValueError):
    """A configured master key is unusable; the message names the setting, never the key."""


class MasterKeyRing(msgspec.Struct, frozen=True):
    """The current master key (wraps new data keys) and previous ones (only unwrap)."""

    current: bytes
    previous: tuple[bytes, ...] = ()
    generated_file: str | None = None

    @property
    def current_id(self) -> str:
        """The public id of the current master key."""
        return key_id_of(self.current)

    def by_id(self, master_key_id: str) -> bytes | None:
        """Return the master key with ``master_key_id``, or None when this ring lacks it."""
        for key in (self.current, *self.previous):
            if key_id_of(key) == master_key_id:
                return key
        return None

    def __repr__(self) -> str:
        """Never show key material."""
        return f"MasterKeyRing(current={self.current_id}, previous={len(self.previous)})"


def parse_master_key(raw: str, source: str) -> bytes:
    """Decode one master key (64 hex digits, or base64 of 32 bytes).

    Raises:
        MasterKeyError: When it is not 32 bytes in either form; names ``source``.
    """
    text = raw.strip()
    key: bytes | None = None
    if len(text) == 2 * KEY_BYTES:
        with contextlib.suppress(ValueError):
            key = bytes.fromhex(text)
    if key is None:
        try:
            key = base64.b64decode(
                text + "=" * (-len(text) % 4), altchars=b"-_" if "-" in text or "_" in text else None
            )
        except (binascii.Error, ValueError):
            key = None
    if key is None or len(key) != KEY_BYTES:
        raise MasterKeyError(f"{source} must be 32 bytes as 64 hex digits or base64")
    return key


def load_master_keys(
    *, key: str = "", key_file: str = "", previous: str = "", data_dir: str = "./.switch"
) -> MasterKeyRing:
    """Build the ring from configuration, or generate and keep a key in ``data_dir``.

    Args:
        key: ``SWITCH_VAULT_MASTER_KEY``.
        key_file: ``SWITCH_VAULT_MASTER_KEY_FILE``: current key on the first line, previous below.
        previous: ``SWITCH_VAULT_PREVIOUS_MASTER_KEYS``: comma-separated older keys.
        data_dir: Where zero-config keeps its generated key.

    Raises:
        MasterKeyError: When a configured key does not parse or the file cannot be read.
    """
    older = [
        parse_master_key(part, "SWITCH_VAULT_PREVIOUS_MASTER_KEYS") for part in previous.split(",") if part.strip()
    ]
    if key:
        return MasterKeyRing(parse_master_key(key, "SWITCH_VAULT_MASTER_KEY"), tuple(older))
    if key_file:
        try:
            lines = [line for line in pathlib.Path(key_file).read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise MasterKeyError(f"SWITCH_VAULT_MASTER_KEY_FILE cannot be read: {exc.strerror}") from None
        if not lines:
            raise MasterKeyError("SWITCH_VAULT_MASTER_KEY_FILE is empty")
        keys = [parse_master_key(line, "SWITCH_VAULT_MASTER_KEY_FILE") for line in lines]
        return MasterKeyRing(keys[0], tuple(keys[1:] + older))
    path = pathlib.Path(data_dir).expanduser().resolve() / ZERO_CONFIG_FILE
    return MasterKeyRing(_generated_key(path), tuple(older), generated_file=str(path))


def _generated_key(path: pathlib.Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        # 0600: readable by the owner only; written in full before it gets its name, and linked
        # (which fails when the name exists) so that workers starting together agree on one key.
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.b64encode(new_key()).decode() + "\n")
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
        temporary.unlink()
    return parse_master_key(path.read_text(), str(path))
