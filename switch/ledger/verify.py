"""``switch ledger verify``: prove the ledger's invariants on a live database.

Each check is one query that returns the rows violating it, so a report names exactly which
transactions or payments are wrong.
"""

from __future__ import annotations

import asyncpg
import msgspec

# Capture and void transactions written before migration 0005 (payment_operations) name no
# operation row: captures used a bare capture id, voids the payment id. Only those are exempt.
_INTENTS_SINCE = "(SELECT coalesce(max(extract(epoch FROM applied_at)), 0) FROM schema_migrations WHERE version = 5)"

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
    # Entries cannot outlive their transaction (journal_entries.transaction_id is a foreign key), but
    # a transaction's payment_id is not one: a deleted payment would leave its money unexplained.
    (
        "no_orphan_transactions",
        "every journal transaction that names a payment names one that exists",
        """
        SELECT format('transaction %s (%s) names payment %s, which does not exist', t.id, t.kind, t.payment_id)
               AS detail
        FROM journal_transactions t
        WHERE t.payment_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.id = t.payment_id)
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
                      CASE WHEN p.status IN ('authorized', 'in_review', 'partially_captured', 'partially_refunded',
                                             'captured', 'refunded') AND NOT p.capture_closed
                           THEN p.amount - p.amount_captured ELSE 0 END) AS detail
        FROM payments p LEFT JOIN held h ON h.payment_id = p.id
        WHERE coalesce(h.amount, 0) <>
              CASE WHEN p.status IN ('authorized', 'in_review', 'partially_captured', 'partially_refunded',
                                     'captured', 'refunded')
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
        WHERE p.status IN ('authorized', 'in_review', 'partially_captured', 'captured', 'partially_refunded',
                           'refunded', 'voided')
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
        WHERE p.status IN ('declined', 'failed', 'requires_action', 'pending')
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
    # A payable booked to another merchant pays that merchant out for this merchant's sale.
    (
        "payable_is_payment_merchant",
        "a payment's transactions belong to its merchant and credit only that merchant's payable account",
        """
        SELECT format('transaction %s of payment %s (merchant %s) %s', t.id, p.id, p.merchant_id,
                      CASE WHEN t.merchant_id <> p.merchant_id THEN 'is recorded for merchant ' || t.merchant_id
                           ELSE 'books to ' || e.account END) AS detail
        FROM journal_transactions t JOIN payments p ON p.id = t.payment_id
        LEFT JOIN journal_entries e ON e.transaction_id = t.id AND e.account LIKE 'merchant\\_payable:%'
             AND e.account <> 'merchant_payable:' || p.merchant_id
        WHERE t.merchant_id <> p.merchant_id OR e.id IS NOT NULL
        """,
    ),
    # Settlement is reconciled per provider account, so a receivable must name the one that holds the money.
    (
        "receivable_is_payment_provider",
        "a payment's transactions book its receivable to the provider account that processed it",
        """
        SELECT format('entry %s of payment %s books to %s, the payment was processed by %s', e.id, p.id,
                      e.account, coalesce(p.provider, 'no provider')) AS detail
        FROM journal_entries e JOIN journal_transactions t ON t.id = e.transaction_id
        JOIN payments p ON p.id = t.payment_id
        WHERE e.account LIKE 'provider\\_receivable:%'
          AND e.account IS DISTINCT FROM 'provider_receivable:' || p.provider
        """,
    ),
    # Reads serve the stored body while the state machine and the other checks use the columns; if
    # they disagree the merchant is told something the ledger does not show.
    (
        "body_matches_columns",
        "each payment's stored API object agrees with its columns",
        """
        SELECT format('payment %s body disagrees with its columns: %s', p.id, array_to_string(d.fields, '; '))
               AS detail
        FROM payments p
        CROSS JOIN LATERAL (SELECT array_remove(ARRAY[
            CASE WHEN p.body->>'id' IS DISTINCT FROM p.id
                 THEN format('id %s <> %s', coalesce(p.body->>'id', '(missing)'), p.id) END,
            CASE WHEN p.body->>'status' IS DISTINCT FROM p.status
                 THEN format('status %s <> %s', coalesce(p.body->>'status', '(missing)'), p.status) END,
            CASE WHEN p.body->>'amount' IS DISTINCT FROM p.amount::text
                 THEN format('amount %s <> %s', coalesce(p.body->>'amount', '(missing)'), p.amount) END,
            CASE WHEN p.body->>'currency' IS DISTINCT FROM p.currency
                 THEN format('currency %s <> %s', coalesce(p.body->>'currency', '(missing)'), p.currency) END,
            CASE WHEN p.body->>'amount_captured' IS DISTINCT FROM p.amount_captured::text
                 THEN format('amount_captured %s <> %s', coalesce(p.body->>'amount_captured', '(missing)'),
                             p.amount_captured) END,
            CASE WHEN p.body->>'amount_refunded' IS DISTINCT FROM p.amount_refunded::text
                 THEN format('amount_refunded %s <> %s', coalesce(p.body->>'amount_refunded', '(missing)'),
                             p.amount_refunded) END
        ], NULL) AS fields) d
        WHERE cardinality(d.fields) > 0
        """,
    ),
    # The kind decides which template the other checks expect, so a relabelled transaction (a capture
    # booked as a refund) would otherwise pass every sum.
    (
        "kind_matches_operation",
        "each transaction's kind agrees with the operation it names",
        f"""
        SELECT format('%s transaction %s of payment %s names %s, %s', t.kind, t.id, t.payment_id,
                      t.operation_id, x.problem) AS detail
        FROM journal_transactions t
        LEFT JOIN payment_operations o ON o.id = t.operation_id
        LEFT JOIN refunds r ON r.id = t.operation_id
        CROSS JOIN LATERAL (SELECT CASE
            WHEN t.kind IN ('sale', 'authorize') THEN
                CASE WHEN t.operation_id IS DISTINCT FROM t.payment_id THEN 'expected its payment id' END
            WHEN t.kind = 'refund' THEN CASE
                WHEN r.id IS NULL THEN 'which is no refund'
                WHEN r.payment_id IS DISTINCT FROM t.payment_id THEN 'a refund of payment ' || r.payment_id
                WHEN o.id IS NOT NULL AND (o.kind <> 'refund' OR o.payment_id IS DISTINCT FROM t.payment_id)
                    THEN format('which is a %s operation of payment %s', o.kind, o.payment_id)
            END
            WHEN t.kind IN ('capture', 'void') THEN CASE
                WHEN o.id IS NOT NULL THEN
                    CASE WHEN o.kind <> t.kind OR o.payment_id IS DISTINCT FROM t.payment_id
                         THEN format('which is a %s operation of payment %s', o.kind, o.payment_id) END
                WHEN t.created < {_INTENTS_SINCE} AND t.kind = 'void' AND t.operation_id = t.payment_id THEN NULL
                WHEN t.created < {_INTENTS_SINCE} AND t.kind = 'capture' AND r.id IS NULL
                     AND t.operation_id IS DISTINCT FROM t.payment_id THEN NULL
                ELSE 'which is no ' || t.kind || ' operation'
            END
            ELSE 'an unknown kind of transaction'
        END AS problem) x
        WHERE x.problem IS NOT NULL
        """,
    ),
    # A sale and a hold both name their payment as their operation, so only their phases tell them
    # apart: a sale relabelled a hold (or the reverse) would otherwise pass every other check.
    (
        "sale_and_hold_phases",
        "a sale posts money (no pending entries) and an authorization hold is pending (no posted entries)",
        """
        SELECT format('%s transaction %s of payment %s has %s entries', t.kind, t.id, t.payment_id, e.phase)
               AS detail
        FROM journal_transactions t JOIN journal_entries e ON e.transaction_id = t.id
        WHERE (t.kind = 'sale' AND e.phase <> 'posted') OR (t.kind = 'authorize' AND e.phase <> 'pending')
        GROUP BY t.kind, t.id, t.payment_id, e.phase
        """,
    ),
    # Intent first: an operation is booked exactly when it succeeded, in the batch that closed it.
    (
        "operations_booked",
        "each succeeded capture, void or refund has exactly one transaction; any other has none",
        """
        SELECT format('%s operation %s of payment %s is %s and has %s journal transactions', o.kind, o.id,
                      o.payment_id, o.status, count(t.id)) AS detail
        FROM payment_operations o LEFT JOIN journal_transactions t ON t.operation_id = o.id
        GROUP BY o.id, o.kind, o.payment_id, o.status
        HAVING count(t.id) <> CASE WHEN o.status = 'succeeded' THEN 1 ELSE 0 END
        """,
    ),
    # The primary key already makes a duplicate key impossible. What can go wrong is a finished key
    # whose stored answer names an object the books lack (or another merchant's): every retry of
    # that request would be told of money the ledger does not show.
    (
        "idempotent_responses_exist",
        "every stored payment, capture, void or refund answer names this merchant's payment (and refund)",
        """
        WITH stored AS (
            SELECT merchant_id, key, endpoint, convert_from(response, 'UTF8')::json AS body
            FROM idempotency_keys
            WHERE status_code BETWEEN 200 AND 299 AND endpoint LIKE 'POST /v1/payments%'
        )
        SELECT format('merchant %s key %s (%s) replays %s %s, which %s', s.merchant_id, s.key, s.endpoint,
                      coalesce(s.body->>'object', 'nothing'), s.body->>'id',
                      CASE WHEN p.id IS NULL THEN 'names no payment'
                           WHEN p.merchant_id <> s.merchant_id THEN 'belongs to merchant ' || p.merchant_id
                           ELSE 'is no refund of payment ' || p.id END) AS detail
        FROM stored s
        LEFT JOIN payments p
               ON p.id = CASE WHEN s.body->>'object' = 'refund' THEN s.body->>'payment' ELSE s.body->>'id' END
        LEFT JOIN refunds r ON s.body->>'object' = 'refund' AND r.id = s.body->>'id'
        WHERE p.id IS NULL OR p.merchant_id <> s.merchant_id
           OR (s.body->>'object' = 'refund' AND r.payment_id IS DISTINCT FROM p.id)
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

    @property
    def failed(self) -> set[str]:
        """Names of the checks that found at least one violation."""
        return {check.name for check in self.checks if check.violations}

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
    """Run every invariant check in one repeatable-read snapshot and report the violations.

    Args:
        connection: A connection to the migrated database, or a pool to take one from.
        limit: Most violations listed per check.

    Returns:
        One result per check, in the order the checks are defined.
    """
    results = []
    if isinstance(connection, asyncpg.Pool):
        async with connection.acquire() as conn:
            return await verify_ledger(conn, limit)
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        for name, description, query in _CHECKS:
            rows = await connection.fetch(f"SELECT detail FROM ({query}) AS v LIMIT {int(limit)}")
            results.append(CheckResult(name, description, [row["detail"] for row in rows]))
    return VerifyReport(results)
