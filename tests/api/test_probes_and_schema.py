"""Probes and the OpenAPI document."""

from __future__ import annotations


async def test_liveness_needs_no_key(client):
    response = await client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readiness_checks_the_database(client):
    response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_openapi_document_lists_the_payment_endpoints(client):
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in (
        "/v1/payments",
        "/v1/payments/{payment_id}",
        "/v1/payments/{payment_id}/capture",
        "/v1/payments/{payment_id}/void",
        "/v1/payments/{payment_id}/refunds",
        "/v1/refunds/{refund_id}",
    ):
        assert path in paths, path  # fmt: skip


async def test_openapi_document_describes_request_bodies(client):
    document = (await client.get("/schema/openapi.json")).json()
    create = document["paths"]["/v1/payments"]["post"]
    ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/PaymentCreate"
    schemas = document["components"]["schemas"]
    payment_create = schemas["PaymentCreate"]
    assert set(payment_create["required"]) == {"amount", "currency", "payment_method"}
    assert payment_create["properties"]["amount"]["maximum"] == 10**15
    assert "Payment" in schemas and "Refund" in schemas
    capture = document["paths"]["/v1/payments/{payment_id}/capture"]["post"]
    assert capture["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/CaptureCreate")
