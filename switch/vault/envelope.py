"""AES-256-GCM envelope encryption: data keys seal card numbers, a master key wraps data keys.

Every ciphertext carries associated data (the record it belongs to), so a sealed value copied to
another row, or a wrapped key copied under another id, fails to open instead of decrypting.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12


class SealBroken(ValueError):
    """A ciphertext did not authenticate: wrong key, wrong associated data, or tampered bytes."""


def new_key() -> bytes:
    """Return a fresh random AES-256 key."""
    return AESGCM.generate_key(bit_length=256)


def key_id_of(master_key: bytes) -> str:
    """A stable public name of a master key (a key check value), never the key itself."""
    return "mk_" + hashlib.sha256(b"switch-vault-master-key-id:" + master_key).hexdigest()[:16]


def seal(key: bytes, plaintext: bytes, associated: bytes) -> tuple[bytes, bytes]:
    """Encrypt ``plaintext`` under ``key``; return ``(nonce, ciphertext_with_tag)``."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce, AESGCM(key).encrypt(nonce, plaintext, associated)


def open_sealed(key: bytes, nonce: bytes, ciphertext: bytes, associated: bytes) -> bytes:
    """Decrypt what :func:`seal` produced.

    Raises:
        SealBroken: When the ciphertext does not authenticate under ``key`` and ``associated``.
    """
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, associated)
    except InvalidTag:
        raise SealBroken("the sealed value does not open with this key") from None


def wrap(master_key: bytes, data_key: bytes, data_key_id: str) -> bytes:
    """Wrap ``data_key`` under ``master_key``: nonce and ciphertext in one byte string."""
    nonce, ciphertext = seal(master_key, data_key, b"vault-data-key:" + data_key_id.encode())
    return nonce + ciphertext


def unwrap(master_key: bytes, wrapped: bytes, data_key_id: str) -> bytes:
    """Open a key wrapped by :func:`wrap`.

    Raises:
        SealBroken: When ``master_key`` is not the one that wrapped it.
    """
    return open_sealed(
        master_key, wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], b"vault-data-key:" + data_key_id.encode()
    )
