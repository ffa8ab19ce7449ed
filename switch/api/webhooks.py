"""``POST /webhooks/{account}``: inbound provider notifications (the signature is the credential)."""

from __future__ import annotations

from typing import Annotated

from litestar import Request, post
from litestar.params import Parameter

from switch.payments.notifications import NotificationReport, NotificationService


@post("/webhooks/{account:str}", status_code=200, summary="Receive a provider notification", tags=["webhooks"])
async def receive_webhook(request: Request, account: Annotated[str, Parameter(max_length=64)]) -> NotificationReport:
    """Verify the provider's signature and apply the notification; duplicates are harmless."""
    service: NotificationService = request.app.state.notifications
    body = await request.body()
    return await service.receive(account, dict(request.headers), body)
