"""Black Friday load profile for the switch (locust).

Mix per simulated shopper: mostly card authorizations with automatic capture, some manual
capture followed by a capture, a few refunds and reads, declines at the rate the sandbox cards
give them, and every POST carrying an Idempotency-Key as real merchants' clients do (with a small
share of retries that must replay).

Risk's platform velocity rules are live on the payment path (more than 3 payments of one card a
minute, more than 3 cards per email a day), so each approving checkout uses a fresh Luhn-valid
card (the sandbox approves any valid number) and a fresh email, as a crowd of real shoppers
would; only the declining test cards repeat, and they decline either way. The per-key rate limit
(``SWITCH_RATE_LIMIT_PER_S``, 100 by default) is far below this profile's rate: raise it on the
switch under test (``SWITCH_RATE_LIMIT_PER_S=1000000 SWITCH_RATE_LIMIT_BURST=1000000``), since a
``429`` counts as a failure here.

Run against a local switch (see loadtest/README.md)::

    SWITCH_LOADTEST_KEY=sk_test_... .venv/bin/locust -f loadtest/locustfile.py \
        --host http://127.0.0.1:8000 --headless -u 200 -r 50 -t 60s
"""

from __future__ import annotations

import os
import random
import uuid

from locust import FastHttpUser, between, task

KEY = os.environ.get("SWITCH_LOADTEST_KEY", "")
# A BIN prefix (a fresh approving card is made from it) or a sandbox test card that declines.
CARDS = ["424242"] * 18 + ["555555"] * 6 + ["4000000000009995", "4000000000000002"]
CURRENCIES = [("EUR", 4999), ("USD", 2599), ("JPY", 3980), ("GBP", 1850), ("KWD", 12_500)]


def _card_number(card: str) -> str:
    """A declining test card as it is, or a fresh 16-digit Luhn-valid number on a BIN prefix."""
    if len(card) == 16:
        return card
    payload = card + "".join(random.choices("0123456789", k=15 - len(card)))
    total = 0
    for position, char in enumerate(reversed(payload)):
        digit = int(char) * (2 if position % 2 == 0 else 1)
        total += digit - 9 if digit > 9 else digit
    return payload + str(-total % 10)


def _payment(capture: str) -> dict[str, object]:
    currency, typical = random.choice(CURRENCIES)
    return {
        "amount": max(1, int(random.lognormvariate(0, 0.6) * typical)),
        "currency": currency,
        "capture": capture,
        "reference": f"bf-{uuid.uuid4().hex[:12]}",
        "payment_method": {
            "type": "card",
            "card": {"number": _card_number(random.choice(CARDS)), "exp_month": 12, "exp_year": 2031, "cvc": "123"},
        },
        "customer": {"email": f"shopper-{uuid.uuid4().hex[:16]}@example.com", "country": "DE"},
    }


class Shopper(FastHttpUser):
    """One merchant integration sending a Black Friday checkout stream."""

    wait_time = between(0.05, 0.5)

    def on_start(self) -> None:
        """Authenticate every request with the merchant key."""
        if not KEY:
            raise RuntimeError("set SWITCH_LOADTEST_KEY to a merchant secret key")
        self.headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        self.captured: list[str] = []

    def _post(self, path: str, body: dict[str, object], name: str, key: str | None = None) -> dict | None:
        headers = {**self.headers, "Idempotency-Key": key or uuid.uuid4().hex}
        with self.client.post(path, json=body, headers=headers, name=name, catch_response=True) as response:
            if response.status_code >= 500 or response.status_code == 429:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return None
            response.success()
            return response.json() if response.status_code < 300 else None

    @task(70)
    def checkout(self) -> None:
        """Authorize and capture at once."""
        key = uuid.uuid4().hex
        body = _payment("automatic")
        payment = self._post("/v1/payments", body, "POST /v1/payments (automatic)", key)
        if payment and payment["status"] == "captured":
            self.captured.append(payment["id"])
            del self.captured[:-100]
        if random.random() < 0.03:
            # A client that timed out retries with the same key and must get the same payment back.
            self._post("/v1/payments", body, "POST /v1/payments (retry)", key)

    @task(15)
    def authorize_then_ship(self) -> None:
        """Authorize now, capture when the order ships."""
        payment = self._post("/v1/payments", _payment("manual"), "POST /v1/payments (manual)")
        if payment and payment["status"] == "authorized":
            self._post(f"/v1/payments/{payment['id']}/capture", {}, "POST /v1/payments/{id}/capture")

    @task(5)
    def refund(self) -> None:
        """Refund part of a captured order."""
        if self.captured:
            payment_id = self.captured.pop(random.randrange(len(self.captured)))
            self._post(f"/v1/payments/{payment_id}/refunds", {"amount": 1}, "POST /v1/payments/{id}/refunds")

    @task(10)
    def read(self) -> None:
        """Order status pages and back-office lists."""
        if self.captured and random.random() < 0.7:
            self.client.get(
                f"/v1/payments/{random.choice(self.captured)}", headers=self.headers, name="GET /v1/payments/{id}"
            )
        else:
            self.client.get("/v1/payments?limit=20", headers=self.headers, name="GET /v1/payments")
