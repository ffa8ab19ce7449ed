"""The README's verification snippet accepts the switch's signatures and refuses forged and stale ones."""

from __future__ import annotations

import time

import httpx

from switch.events.signing import new_secret, sign, verify
from tests.events.receiver import Receiver, readme_verifier

BODY = b'{"id":"evt_1","object":"event","type":"payment.captured"}'


def test_readme_snippet_accepts_a_signature_made_by_the_switch():
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert readme_verifier()(sign(secret, BODY), BODY, secret)


def test_readme_snippet_rejects_a_forged_signature():
    secret = new_secret()
    verify_snippet = readme_verifier()
    assert not verify_snippet(sign(new_secret(), BODY), BODY, secret)
    assert not verify_snippet(sign(secret, BODY + b" "), BODY, secret)
    assert not verify_snippet(f"t={int(time.time())},v1={'0' * 64}", BODY, secret)
    assert not verify_snippet("", BODY, secret)


def test_readme_snippet_rejects_an_expired_signature():
    secret = new_secret()
    stale = sign(secret, BODY, int(time.time()) - 301)
    assert not readme_verifier()(stale, BODY, secret)
    assert readme_verifier()(sign(secret, BODY, int(time.time()) - 200), BODY, secret)


def test_switch_side_verify_agrees_with_the_snippet():
    secret = new_secret()
    now = 1_800_000_000
    header = sign(secret, BODY, now)
    assert verify(header, BODY, secret, now=now + 10)
    assert not verify(header, BODY, secret, now=now + 301)
    assert not verify(header, BODY, "whsec_other", now=now)


def test_signature_is_hmac_sha256_of_timestamp_dot_body_keyed_with_the_whole_secret():
    import hashlib
    import hmac

    secret = "whsec_abc"
    expected = hmac.new(b"whsec_abc", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(secret, BODY, 1_700_000_000) == f"t=1700000000,v1={expected}"


async def test_receiver_built_from_the_snippet_refuses_forged_and_expired_deliveries():
    secret = new_secret()
    receiver = Receiver(secret)
    url = await receiver.start()
    try:
        async with httpx.AsyncClient() as http:
            good = await http.post(
                url, content=BODY, headers={"Switch-Signature": sign(secret, BODY), "Switch-Event-Id": "evt_1"}
            )
            forged = await http.post(
                url, content=BODY, headers={"Switch-Signature": sign("whsec_x", BODY), "Switch-Event-Id": "evt_1"}
            )
            expired = await http.post(
                url,
                content=BODY,
                headers={"Switch-Signature": sign(secret, BODY, int(time.time()) - 3600), "Switch-Event-Id": "evt_1"},
            )
        assert good.status_code == 204
        assert forged.status_code == 400
        assert expired.status_code == 400
        assert receiver.rejected == 2
        assert [event["id"] for event in receiver.accepted] == ["evt_1"]
    finally:
        await receiver.stop()
