CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}}


async def test_lifecycle_smoke(client, merchant):
    r = await client.post("/v1/payments", json={"amount": 1250, "currency": "EUR", "capture": "manual", "payment_method": CARD}, headers=merchant.headers)
    print(r.status_code, r.text)
    assert r.status_code == 201
    pid = r.json()["id"]
    r = await client.post(f"/v1/payments/{pid}/capture", json={"amount": 1000}, headers=merchant.headers)
    print(r.status_code, r.text)
    r = await client.post(f"/v1/payments/{pid}/refunds", json={"amount": 500}, headers=merchant.headers)
    print(r.status_code, r.text)
    r = await client.get("/v1/payments", headers=merchant.headers)
    print(r.status_code, r.text)
    assert r.status_code == 200
