"""The baseline for the end-to-end benchmark: a bare Litestar JSON endpoint on the same server stack."""

from __future__ import annotations

from litestar import Litestar, Request, post


@post("/v1/payments", status_code=201)
async def create_payment(request: Request) -> dict[str, object]:
    """Decode the body and answer a small JSON object, nothing else."""
    body = await request.json()
    return {"id": "pay_bare", "object": "payment", "status": "captured", "amount": body.get("amount")}


app = Litestar(route_handlers=[create_payment], openapi_config=None)
