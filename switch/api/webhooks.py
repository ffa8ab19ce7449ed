"""``POST /webhooks/{account}``: inbound provider notifications (the signature is the credential)."""

from __future__ import annotations

from typing import Annotated

from litestar import Request, Response, post
from litestar.params import Parameter

from switch.payments.notifications import NotificationReport, NotificationService


@post("/webhooks/{account:str}", status_code=200, summary="Receive a provider notification", tags=["webhooks"])
async def receive_webhook(
    request: Request, account: Annotated[str, Parameter(max_length=64)]
) -> NotificationReport | Response[str]:
    """Verify the provider's signature and apply the notification; duplicates are harmless.

    Answers the report as JSON, or the exact acknowledgement body a provider insists on
    (PingPong retries until it reads ``OK``).
    """
    service: NotificationService = request.app.state.notifications
    body = await request.body()
    report = await service.receive(account, dict(request.headers), body)
    ack = request.app.state.adapters[account].webhook_ack
    if ack is not None:
        return Response(content=ack, media_type="text/plain", status_code=200)
    return report
