"""The sandbox provider: in-process, no network, outcome decided by the test card number.

It uses Stripe's public test cards so merchants' existing test suites work unchanged, plus two
Luhn-valid cards for outcomes Stripe has none for:

================  =================  =================================================
card number       outcome            code
================  =================  =================================================
4242424242424242  approved
5555555555554444  approved
4000000000000002  declined_hard      generic_decline
4000000000009995  declined_soft      insufficient_funds
4000000000009987  declined_hard      lost_card
4000000000009979  declined_hard      stolen_card
4000000000000069  declined_hard      expired_card
4000000000000127  declined_hard      incorrect_cvc
4000000000000119  technical          processing_error
4000002500003155  requires_action    authentication_required (3-D Secure, always)
4000000000000408  technical          timeout (no answer; the provider never saw it)
4000000000000416  unknown            timeout after the provider authorized; ``sync`` says approved
================  =================  =================================================

Any other valid number approves. Latency is configurable (default 0).

3-D Secure: the 3DS card, and any card whose request has ``three_ds_required``, answers
``requires_action`` with a redirect to the sandbox's challenge page
(``POST /sandbox/3ds/{reference}`` on the switch, ``{"result": "succeeded" | "failed"}``, stands in
for the cardholder). Until then ``sync`` answers ``requires_action``; after it, ``approved`` (the
authorization is made then, captured if the request asked for it) or ``declined_hard``
``authentication_failed``.

State lives in the process. With several workers, a capture, void or refund may reach a worker
whose sandbox did not make the authorization; such calls are approved (the switch's own state
machine has already checked the amounts), while ``sync`` of an unseen attempt answers
``technical`` with code ``not_found`` (the sandbox has no consistency window: what it never saw
was never authorized), so recovery fails it without moving money.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Mapping

import msgspec

from adapters.base import (
    AuthorizeRequest,
    CaptureRequest,
    Credentials,
    Flow,
    Outcome,
    ProviderAdapter,
    ProviderResult,
    RefundRequest,
    SyncRequest,
    VoidRequest,
)

TIMEOUT_CARD = "4000000000000408"
THREE_DS_CARD = "4000002500003155"
CHALLENGE_PATH = "/sandbox/3ds"
UNKNOWN_OUTCOME_CARD = "4000000000000416"

# card number -> (outcome, code, message); one table, exhaustive for the cards the sandbox knows.
TEST_CARDS: Mapping[str, tuple[Outcome, str | None, str | None]] = {
    "4242424242424242": (Outcome.APPROVED, None, None),
    "5555555555554444": (Outcome.APPROVED, None, None),
    "4000000000000002": (Outcome.DECLINED_HARD, "generic_decline", "The card was declined."),
    "4000000000009995": (Outcome.DECLINED_SOFT, "insufficient_funds", "The card has insufficient funds."),
    "4000000000009987": (Outcome.DECLINED_HARD, "lost_card", "The card was reported lost."),
    "4000000000009979": (Outcome.DECLINED_HARD, "stolen_card", "The card was reported stolen."),
    "4000000000000069": (Outcome.DECLINED_HARD, "expired_card", "The card has expired."),
    "4000000000000127": (Outcome.DECLINED_HARD, "incorrect_cvc", "The card's security code is incorrect."),
    "4000000000000119": (Outcome.TECHNICAL, "processing_error", "An error occurred while processing the card."),
    "4000002500003155": (Outcome.REQUIRES_ACTION, "authentication_required", "3-D Secure authentication required."),
    TIMEOUT_CARD: (Outcome.TECHNICAL, "timeout", "The provider did not answer in time."),
    UNKNOWN_OUTCOME_CARD: (Outcome.UNKNOWN, "timeout", "The provider did not answer; the outcome is unknown."),
}


class _Authorization(msgspec.Struct):
    amount: int
    currency: str
    status: str
    captured: int = 0
    refunded: int = 0


class _Challenge(msgspec.Struct):
    """A 3-D Secure challenge waiting for the cardholder, and what to authorize once it passes."""

    amount: int
    currency: str
    capture: bool
    finished: bool = False
    succeeded: bool = False

    def result(self, reference: str) -> ProviderResult:
        """What a status look-up of the challenged payment answers (before it is authorized)."""
        if not self.finished:
            return ProviderResult(
                outcome=Outcome.REQUIRES_ACTION,
                provider_reference=reference,
                code="authentication_required",
                raw_status="requires_action",
                next_action={"type": "redirect_to_url", "url": f"{CHALLENGE_PATH}/{reference}"},
            )
        return ProviderResult(
            outcome=Outcome.DECLINED_HARD,
            provider_reference=reference,
            code="authentication_failed",
            message="The cardholder failed 3-D Secure authentication.",
            raw_status="failed",
        )


class SandboxAdapter(ProviderAdapter):
    """Deterministic in-memory provider for tests, demos and benchmarks."""

    name = "sandbox"
    flows = frozenset({Flow.AUTHORIZE, Flow.CAPTURE, Flow.VOID, Flow.REFUND, Flow.SYNC})
    method_types = frozenset({"card"})

    def __init__(self, credentials: Credentials | None = None, *, latency_ms: int = 0) -> None:
        """Create a sandbox.

        Args:
            credentials: Ignored; accepted so every adapter is built the same way.
            latency_ms: Delay added to every call, to imitate a provider round trip.
        """
        super().__init__(credentials)
        self.latency_s = latency_ms / 1000
        self._authorizations: dict[str, _Authorization] = {}
        self._by_idempotency_key: dict[str, str] = {}
        # Answers to captures, voids and refunds by idempotency key: a replay is answered, not redone.
        self._answers: dict[tuple[Flow, str], ProviderResult] = {}
        # Declined, failed and 3-D Secure answers by idempotency key and attempt id.
        self._refusals: dict[str, ProviderResult] = {}
        # 3-D Secure challenges waiting for the cardholder, by provider reference.
        self._challenges: dict[str, _Challenge] = {}
        self._challenged_attempts: dict[str, str] = {}
        self.calls: dict[str, int] = {flow.value: 0 for flow in self.flows}

    async def _delay(self, flow: Flow) -> None:
        self.calls[flow.value] += 1
        if self.latency_s:
            await asyncio.sleep(self.latency_s)

    async def authorize(self, request: AuthorizeRequest) -> ProviderResult:
        """Decide by card number; remember approvals so they can be captured and synced."""
        await self._delay(Flow.AUTHORIZE)
        known = self._by_idempotency_key.get(request.idempotency_key)
        if known is not None:
            # Providers deduplicate on their idempotency key; so does the sandbox.
            return ProviderResult(outcome=Outcome.APPROVED, provider_reference=known, raw_status="succeeded")
        refused = self._refusals.get(request.idempotency_key)
        if refused is not None:
            return refused
        number = request.card.number if request.card is not None else ""
        outcome, code, message = TEST_CARDS.get(number, (Outcome.APPROVED, None, None))
        if request.three_ds_required and outcome is Outcome.APPROVED:
            outcome, code, message = TEST_CARDS[THREE_DS_CARD]
        if outcome is Outcome.TECHNICAL and code == "timeout":
            return ProviderResult(outcome=outcome, code=code, message=message, raw_status="timeout")
        reference = "sbx_" + secrets.token_hex(8)
        if outcome in (Outcome.APPROVED, Outcome.UNKNOWN):
            status = "captured" if request.capture else "authorized"
            self._authorizations[reference] = _Authorization(
                request.amount, request.currency, status, request.amount if request.capture else 0
            )
            self._by_idempotency_key[request.idempotency_key] = reference
            self._by_idempotency_key[request.attempt_id] = reference
        if outcome is Outcome.UNKNOWN:
            return ProviderResult(outcome=outcome, code=code, message=message, raw_status="timeout")
        if outcome is Outcome.REQUIRES_ACTION:
            self._challenges[reference] = _Challenge(request.amount, request.currency, request.capture)
            self._challenged_attempts[request.attempt_id] = reference
            result = ProviderResult(
                outcome=outcome,
                provider_reference=reference,
                code=code,
                message=message,
                raw_status="requires_action",
                next_action={"type": "redirect_to_url", "url": f"{CHALLENGE_PATH}/{reference}"},
            )
        else:
            result = ProviderResult(
                outcome=outcome,
                provider_reference=reference,
                code=code,
                message=message,
                raw_status="succeeded" if outcome is Outcome.APPROVED else "declined",
                amount=request.amount if outcome is Outcome.APPROVED else None,
            )
        if outcome is not Outcome.APPROVED:
            # A refusal is the provider's answer too: replays and look-ups find it, as at a provider.
            self._refusals[request.idempotency_key] = self._refusals[request.attempt_id] = result
        return result

    def _once(self, flow: Flow, key: str, act: Callable[[], ProviderResult]) -> ProviderResult:
        """Act once per idempotency key, as providers do; a replay gets the first answer."""
        answer = self._answers.get((flow, key))
        if answer is None:
            answer = self._answers[(flow, key)] = act()
        return answer

    def _find(self, reference: str) -> _Authorization | None:
        return self._authorizations.get(reference)

    def complete_challenge(self, reference: str, succeeded: bool) -> bool:
        """The cardholder finished (or failed) the 3-D Secure challenge of ``reference``.

        Returns:
            False when the sandbox has no open challenge of that reference.
        """
        challenge = self._challenges.get(reference)
        if challenge is None or challenge.finished:
            return False
        challenge.finished = True
        challenge.succeeded = succeeded
        if succeeded:
            status = "captured" if challenge.capture else "authorized"
            self._authorizations[reference] = _Authorization(
                challenge.amount, challenge.currency, status, challenge.amount if challenge.capture else 0
            )
        return True

    async def capture(self, request: CaptureRequest) -> ProviderResult:
        """Capture part or all of a remembered authorization."""
        await self._delay(Flow.CAPTURE)
        return self._once(Flow.CAPTURE, request.idempotency_key, lambda: self._capture_once(request))

    def _capture_once(self, request: CaptureRequest) -> ProviderResult:
        auth = self._find(request.provider_reference)
        if auth is None:
            return self._unseen(request.provider_reference)
        if auth.status == "voided" or auth.captured + request.amount > auth.amount:
            return ProviderResult(outcome=Outcome.DECLINED_HARD, code="amount_too_large", raw_status=auth.status)
        auth.captured += request.amount
        auth.status = "captured"
        return ProviderResult(
            outcome=Outcome.APPROVED, provider_reference=request.provider_reference, raw_status="succeeded"
        )

    async def void(self, request: VoidRequest) -> ProviderResult:
        """Cancel an uncaptured authorization."""
        await self._delay(Flow.VOID)
        return self._once(Flow.VOID, request.idempotency_key, lambda: self._void_once(request))

    def _void_once(self, request: VoidRequest) -> ProviderResult:
        auth = self._find(request.provider_reference)
        if auth is None:
            return self._unseen(request.provider_reference)
        if auth.captured:
            return ProviderResult(outcome=Outcome.DECLINED_HARD, code="payment_intent_unexpected_state")
        auth.status = "voided"
        return ProviderResult(
            outcome=Outcome.APPROVED, provider_reference=request.provider_reference, raw_status="canceled"
        )

    async def refund(self, request: RefundRequest) -> ProviderResult:
        """Refund part of the captured amount."""
        await self._delay(Flow.REFUND)
        return self._once(Flow.REFUND, request.idempotency_key, lambda: self._refund_once(request))

    def _refund_once(self, request: RefundRequest) -> ProviderResult:
        auth = self._find(request.provider_reference)
        if auth is not None and auth.refunded + request.amount > auth.captured:
            return ProviderResult(outcome=Outcome.DECLINED_HARD, code="amount_too_large")
        if auth is not None:
            auth.refunded += request.amount
        return ProviderResult(
            outcome=Outcome.APPROVED, provider_reference="sbr_" + secrets.token_hex(8), raw_status="succeeded"
        )

    @staticmethod
    def _unseen(reference: str) -> ProviderResult:
        # Another worker's sandbox made this authorization (see the module docstring).
        if reference.startswith("sbx_"):
            return ProviderResult(outcome=Outcome.APPROVED, provider_reference=reference, raw_status="succeeded")
        return ProviderResult(outcome=Outcome.DECLINED_HARD, code="resource_missing", raw_status="not_found")

    async def sync(self, request: SyncRequest) -> ProviderResult:
        """Report what the sandbox knows of an operation; an attempt it never saw was never authorized.

        The sandbox's state is in this process, so "never saw it" is certain here: ``technical``
        with code ``not_found``, the outcome rule's proof that nothing happened. A capture or void reads the
        authorization's state; a refund, which the sandbox does not index, stays ``unknown``
        (a replay with the same key is harmless).
        """
        await self._delay(Flow.SYNC)
        reference = (
            request.provider_reference
            or self._by_idempotency_key.get(request.attempt_id)
            or self._challenged_attempts.get(request.attempt_id)
        )
        auth = self._find(reference) if reference else None
        if request.operation != "authorize":
            done = {"capture": "captured", "void": "voided"}.get(request.operation)
            if auth is not None and done is not None and auth.status == done:
                return ProviderResult(outcome=Outcome.APPROVED, provider_reference=reference, raw_status=auth.status)
            return ProviderResult(outcome=Outcome.UNKNOWN, provider_reference=reference, raw_status="no_lookup")
        challenge = self._challenges.get(reference) if reference else None
        if auth is None and challenge is not None:
            return challenge.result(reference)
        if auth is None:
            refused = self._refusals.get(request.attempt_id)
            if refused is not None:
                return refused
            return ProviderResult(outcome=Outcome.TECHNICAL, code="not_found", raw_status="not_found")
        return ProviderResult(
            outcome=Outcome.APPROVED, provider_reference=reference, raw_status=auth.status, amount=auth.amount
        )
