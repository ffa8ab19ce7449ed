-- Capture, void and refund intents: written (with the merchant's Idempotency-Key reservation)
-- before the provider is called, closed with the outcome and its postings afterwards. The id is
-- the journal operation id of the movement (and the refund's id), and the provider idempotency key
-- is derived from it, so a retried request or recovery replays instead of acting twice.
CREATE TABLE payment_operations (
    id                  text PRIMARY KEY,
    payment_id          text NOT NULL REFERENCES payments(id),
    merchant_id         text NOT NULL REFERENCES merchants(id),
    kind                text NOT NULL CHECK (kind IN ('capture', 'void', 'refund')),
    amount              bigint NOT NULL CHECK (amount >= 0),
    currency            text NOT NULL,
    provider            text NOT NULL,
    provider_key        text NOT NULL,
    -- open: the provider may or may not have acted; succeeded: it did (booked); refused: it said
    -- no (a decline, nothing moved); failed: certainly nothing happened (technical).
    status              text NOT NULL CHECK (status IN ('open', 'succeeded', 'refused', 'failed')),
    -- The request's own parameters (final, reason, metadata), so a replay acts on what was asked.
    params              json NOT NULL,
    idempotency_key     text,
    outcome             text,
    code                text,
    provider_reference  text,
    -- Who drives an open operation: the live request until its lease ends, then a retry or recovery.
    lease_until         bigint NOT NULL,
    checks              integer NOT NULL DEFAULT 0,
    next_check          bigint NOT NULL,
    -- Set when recovery gave up resolving it by itself: listed for an operator.
    stuck_since         bigint,
    created             bigint NOT NULL,
    finished            bigint
);
-- One writer per payment: at most one open operation, whichever worker tries.
CREATE UNIQUE INDEX payment_operations_one_open ON payment_operations (payment_id) WHERE status = 'open';
CREATE INDEX payment_operations_due ON payment_operations (next_check) WHERE status = 'open';
CREATE INDEX payment_operations_idempotency ON payment_operations (merchant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Recovery of authorization attempts is fair: each attempt has its own next check and backoff,
-- and after a bounded time it is marked for an operator instead of blocking newer ones.
ALTER TABLE payment_attempts ADD COLUMN checks integer NOT NULL DEFAULT 0;
ALTER TABLE payment_attempts ADD COLUMN next_check bigint;
ALTER TABLE payment_attempts ADD COLUMN stuck_since bigint;
UPDATE payment_attempts SET next_check = created WHERE next_check IS NULL;
CREATE INDEX payment_attempts_due ON payment_attempts (next_check) WHERE status IN ('intent', 'unknown');
