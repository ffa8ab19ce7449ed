"""A returning customer pays with ``card_token``; the number is stored sealed, within its merchant only."""

from __future__ import annotations

from tests.api.helpers import create, error_of


def _token_body(token: str, **extra):
    body = {"amount": 700, "currency": "EUR", "payment_method": {"type": "card_token", "card_token": {"token": token}}}
    body.update(extra)
    return body


async def test_returning_customer_pays_with_the_card_token(client, merchant, db):
    first = await create(client, merchant, number="5555555555554444")
    assert first.status_code == 201
    card = first.json()["payment_method"]["card"]
    token = card["token"]
    assert token.startswith("tok_")

    again = await client.post("/v1/payments", json=_token_body(token, capture="manual"), headers=merchant.headers)
    assert again.status_code == 201, again.text
    paid = again.json()
    assert paid["status"] == "authorized"
    shown = paid["payment_method"]["card"]
    assert {k: shown[k] for k in ("token", "bin", "last4", "brand", "fingerprint")} == {
        k: card[k] for k in ("token", "bin", "last4", "brand", "fingerprint")
    }
    captured = await client.post(f"/v1/payments/{paid['id']}/capture", json={}, headers=merchant.headers)
    assert captured.status_code == 200 and captured.json()["status"] == "captured"
    # Saved once, by the payment that brought the number; reuse saves nothing new.
    assert await db.fetchval("SELECT count(*) FROM vault_cards WHERE token = $1", token) == 1


async def test_the_saved_card_is_sealed_with_its_key_id_and_display_fields_apart(client, merchant, db):
    token = (await create(client, merchant)).json()["payment_method"]["card"]["token"]
    row = await db.fetchrow("SELECT * FROM vault_cards WHERE token = $1", token)
    assert row["merchant_id"] == merchant.id
    assert row["key_id"].startswith("dk_")
    assert await db.fetchval("SELECT count(*) FROM vault_keys WHERE id = $1", row["key_id"]) == 1
    assert (row["bin"], row["last4"], row["brand"]) == ("424242", "4242", "visa")
    assert b"4242424242424242" not in bytes(row["ciphertext"])
    assert len(row["nonce"]) == 12
    assert "cvc" not in dict(row)


async def test_another_merchants_token_is_404_exactly_as_an_unknown_one(client, merchant, other_merchant):
    token = (await create(client, merchant)).json()["payment_method"]["card"]["token"]
    foreign = await client.post("/v1/payments", json=_token_body(token), headers=other_merchant.headers)
    unknown = await client.post("/v1/payments", json=_token_body("tok_doesnotexist"), headers=other_merchant.headers)
    assert foreign.status_code == unknown.status_code == 404
    assert error_of(foreign) == error_of(unknown)
    assert error_of(foreign)["code"] == "resource_missing"
    assert error_of(foreign)["param"] == "payment_method.card_token.token"
    assert (await client.get("/v1/payments", headers=other_merchant.headers)).json()["data"] == []


async def test_a_declined_saved_card_declines_again(client, merchant):
    first = await create(client, merchant, number="4000000000000002")
    assert first.json()["status"] == "declined"
    token = first.json()["payment_method"]["card"]["token"]
    again = await client.post("/v1/payments", json=_token_body(token), headers=merchant.headers)
    assert again.status_code == 201
    assert again.json()["status"] == "declined"
    assert again.json()["decline"]["code"] == "generic_decline"


async def test_card_token_bodies_are_validated_naming_the_field(client, merchant):
    bad = await client.post("/v1/payments", json=_token_body("4242424242424242"), headers=merchant.headers)
    assert bad.status_code == 400 and error_of(bad)["param"] == "payment_method.card_token.token"
    extra = _token_body("tok_x")
    extra["payment_method"]["card_token"]["number"] = "4242424242424242"
    unknown = await client.post("/v1/payments", json=extra, headers=merchant.headers)
    assert unknown.status_code == 400 and error_of(unknown)["param"] == "payment_method.card_token.number"
    assert "4242424242424242" not in unknown.text


async def test_a_card_token_with_a_fresh_cvc_is_accepted_and_the_cvc_not_kept(client, merchant, db):
    token = (await create(client, merchant)).json()["payment_method"]["card"]["token"]
    body = _token_body(token)
    body["payment_method"]["card_token"]["cvc"] = "7319"
    paid = await client.post("/v1/payments", json=body, headers=merchant.headers)
    assert paid.status_code == 201 and paid.json()["status"] == "captured"
    assert "7319" not in paid.text
    stored = await db.fetchval("SELECT body::text FROM payments WHERE id = $1", paid.json()["id"])
    assert "cvc" not in stored
