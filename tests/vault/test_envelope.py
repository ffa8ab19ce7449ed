"""Envelope encryption, master keys and their zero-config file."""

from __future__ import annotations

import base64
import os
import stat

import pytest

from switch.vault.envelope import SealBroken, key_id_of, new_key, open_sealed, seal, unwrap, wrap
from switch.vault.keys import MasterKeyError, load_master_keys, parse_master_key


def test_sealed_values_open_only_with_their_key_and_associated_data():
    key = new_key()
    nonce, ciphertext = seal(key, b"4242424242424242", b"vault-card:mer_1:tok_a")
    assert b"4242424242424242" not in ciphertext
    assert open_sealed(key, nonce, ciphertext, b"vault-card:mer_1:tok_a") == b"4242424242424242"
    with pytest.raises(SealBroken):
        open_sealed(key, nonce, ciphertext, b"vault-card:mer_2:tok_a")  # moved to another merchant's row
    with pytest.raises(SealBroken):
        open_sealed(new_key(), nonce, ciphertext, b"vault-card:mer_1:tok_a")
    tampered = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    with pytest.raises(SealBroken):
        open_sealed(key, nonce, tampered, b"vault-card:mer_1:tok_a")


def test_a_wrapped_data_key_unwraps_only_under_its_master_key_and_id():
    master, data = new_key(), new_key()
    wrapped = wrap(master, data, "dk_1")
    assert data not in wrapped and len(wrapped) == 12 + 32 + 16
    assert unwrap(master, wrapped, "dk_1") == data
    with pytest.raises(SealBroken):
        unwrap(master, wrapped, "dk_2")
    with pytest.raises(SealBroken):
        unwrap(new_key(), wrapped, "dk_1")


def test_master_keys_parse_from_hex_or_base64_and_errors_name_the_setting():
    key = os.urandom(32)
    assert parse_master_key(key.hex(), "X") == key
    assert parse_master_key(base64.b64encode(key).decode(), "X") == key
    assert parse_master_key(base64.urlsafe_b64encode(key).decode().rstrip("="), "X") == key
    with pytest.raises(MasterKeyError, match="SWITCH_VAULT_MASTER_KEY must be 32 bytes"):
        load_master_keys(key="too-short")
    with pytest.raises(MasterKeyError) as raised:
        load_master_keys(key=base64.b64encode(os.urandom(16)).decode())
    assert "SWITCH_VAULT_MASTER_KEY" in str(raised.value)


def test_key_file_holds_current_then_previous_keys(tmp_path):
    current, old = os.urandom(32), os.urandom(32)
    path = tmp_path / "master.keys"
    path.write_text(current.hex() + "\n" + base64.b64encode(old).decode() + "\n")
    ring = load_master_keys(key_file=str(path))
    assert ring.current == current and ring.previous == (old,)
    assert ring.by_id(key_id_of(old)) == old and ring.by_id("mk_nope") is None
    assert current.hex() not in repr(ring)
    with pytest.raises(MasterKeyError, match="cannot be read"):
        load_master_keys(key_file=str(tmp_path / "missing"))


def test_zero_config_generates_one_owner_only_key_and_keeps_it(tmp_path):
    first = load_master_keys(data_dir=str(tmp_path))
    assert first.generated_file == str(tmp_path / "vault_master.key")
    mode = stat.S_IMODE(os.stat(first.generated_file).st_mode)
    assert mode == 0o600
    again = load_master_keys(data_dir=str(tmp_path))
    assert again.current == first.current
    assert load_master_keys(key=os.urandom(32).hex(), data_dir=str(tmp_path)).generated_file is None
