"""``switch ledger verify``: prove the ledger's invariants on a live database.

Each check is one query that returns the rows violating it, so a report names exactly which
transactions or payments are wrong.
"""

from __future__ import annotations

import asyncpg
import msgspec

# (name, description, query returning one row per violation with a ``detail`` text column)
_CHECKS: tuple[tuple[str, str, str], ...] = (
    (
        "balanced",
        "every journal transaction sums to zero per currency and phase",
        """
        SELECT format('transaction %s %s %s sums to %s', transaction_id, currency, phase, sum(amount)) AS detail
        FROM journal_entries GROUP BY transaction_id, currency, phase HAVING sum(amount) <> 0
        """,
    ),
    (
        "non_empty",
        "every journal transaction has entries",
        """
        SELECT format('transaction %s (%s of %s) has no entries', t.id, t.kind, t.payment_id) AS detail
        FROM journal_transactions t
        WHERE NOT EXISTS (SELECT 1 FROM journal_entries e WHERE e.transaction_id = t.id)
        """,
    ),
    (
        "holds_match_payments",
        "each payment's open authorization hold equals what it can still capture",
        """
        WITH held AS (
            SELECT t.payment_id, sum(e.amount) AS amount
            FROM journal_transactions t JOIN journal_entries e ON e.transaction_id = t.id
            WHERE e.phase = 'pending' AND e.account LIKE 'provider\\_receivable:%'
            GROUP BY t.payment_id
        )
        SELECT format('payment %s (%s) holds %s, expected %s', p.id, p.status, coalesce(h.amount, 0),
                      CASE WHEN p.status IN ('authorized', 'partially_captured', 'partially_refunded', 'captured',
                                             'refunded') AND NOT p.capture_closed
                           THEN p.amount - p.amount_captured ELSE 0 END) AS detail
        FROM payments p LEFT JOIN held h ON h.payment_id = p.id
        WHERE coalesce(h.amount, 0) <>
              CASE WHEN p.status IN ('authorized', 'partially_captured', 'partially_refunded', 'captured', 'refunded')
                        AND NOT p.capture_closed
                   THEN p.amount - p.amount_captured ELSE 0 END
        """,
    ),
    (
        "posted_match_payments",
        "each payment's posted receivable equals captured minus refunded",
        """
        WITH posted AS (
            SELECT t.payment_id, sum(e.amount) AS amount
            FROM journal_transactions t JOIN journal_entries e ON e.transaction_id = t.id
            WHERE e.phase = 'posted' AND e.account LIKE 'provider\\_receivable:%'
            GROUP BY t.payment_id
        )
        SELECT format('payment %s (%s) has %s posted, expected %s', p.id, p.status, coalesce(o.amount, 0),
                      p.amount_captured - p.amount_refunded) AS detail
        FROM payments p LEFT JOIN posted o ON o.payment_id = p.id
        WHERE coalesce(o.amount, 0) <> p.amount_captured - p.amount_refunded
        """,
    ),
    (
        "authorized_have_postings",
        "every payment that reached an authorized status has its authorization transaction",
        """
        SELECT format('payment %s is %s without an authorize or sale transaction', p.id, p.status) AS detail
        FROM payments p
        WHERE p.status IN ('authorized', 'partially_captured', 'captured', 'partially_refunded', 'refunded', 'voided')
          AND NOT EXISTS (SELECT 1 FROM journal_transactions t
                          WHERE t.payment_id = p.id AND t.kind IN ('authorize', 'sale'))
        """,
    ),
    (
        "unsuccessful_have_no_postings",
        "declined, failed and unfinished payments moved no money",
        """
        SELECT format('payment %s is %s but has transaction %s', p.id, p.status, t.id) AS detail
        FROM payments p JOIN journal_transactions t ON t.payment_id = p.id
        WHERE p.status IN ('declined', 'failed', 'requires_action', 'pending', 'in_review')
        """,
    ),
    (
        "refunds_match_payments",
        "each payment's refunded total equals the sum of its refunds",
        """
        SELECT format('payment %s shows %s refunded, refunds sum to %s', p.id, p.amount_refunded,
                      coalesce(sum(r.amount), 0)) AS detail
        FROM payments p LEFT JOIN refunds r ON r.payment_id = p.id AND r.status IN ('succeeded', 'pending')
        GROUP BY p.id, p.amount_refunded HAVING p.amount_refunded <> coalesce(sum(r.amount), 0)
        """,
    ),
    (
        "currency_consistent",
        "journal entries are in their payment's currency",
        """
        SELECT format('entry %s of payment %s is in %s, payment is in %s', e.id, p.id, e.currency, p.currency)
               AS detail
        FROM journal_entries e JOIN journal_transactions t ON t.id = e.transaction_id
        JOIN payments p ON p.id = t.payment_id WHERE e.currency <> p.currency
        """,
    ),
    (
        "unique_idempotency_keys",
        "no idempotency key is stored twice for a merchant",
        """
        SELECT format('merchant %s key %s stored %s times', merchant_id, key, count(*)) AS detail
        FROM idempotency_keys GROUP BY merchant_id, key HAVING count(*) > 1
        """,
    ),
)


class CheckResult(msgspec.Struct, frozen=True):
    """One invariant and the rows that break it (at most ``limit`` of them)."""

    name: str
    description: str
    violations: list[str]


class VerifyReport(msgspec.Struct, frozen=True):
    """The outcome of every check."""

    checks: list[CheckResult]

    @property
    def ok(self) -> bool:
        """True when no check found a violation."""
        return all(not check.violations for check in self.checks)

    def render(self) -> str:
        """Human-readable report, one line per check and one per violation."""
        lines = []
        for check in self.checks:
            mark = "ok  " if not check.violations else "FAIL"
            lines.append(f"{mark} {check.name}: {check.description}")
            lines.extend(f"     - {violation}" for violation in check.violations)
        lines.append("ledger verified: all invariants hold" if self.ok else "ledger verification FAILED")
        return "\n".join(lines)


async def verify_ledger(connection: asyncpg.Connection | asyncpg.Pool, limit: int = 20) -> VerifyReport:
    """Run every invariant check in one repeatable-read snapshot and report the violations."""
    results = []
    if isinstance(connection, asyncpg.Pool):
        async with connection.acquire() as conn:
            return await verify_ledger(conn, limit)
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        for name, description, query in _CHECKS:
            rows = await connection.fetch(f"SELECT detail FROM ({query}) AS v LIMIT {int(limit)}")
            results.append(CheckResult(name, description, [row["detail"] for row in rows]))
    return VerifyReport(results)
