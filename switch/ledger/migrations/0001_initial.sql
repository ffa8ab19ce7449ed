-- Merchants authenticate with a secret key; only its SHA-256 is stored.
CREATE TABLE merchants (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    key_hash    bytea NOT NULL UNIQUE,
    key_prefix  text NOT NULL,
    providers   text[] NOT NULL DEFAULT ARRAY['sandbox'],
    created     bigint NOT NULL
);

-- The current state of each payment; history lives in attempts, refunds and the journal.
CREATE TABLE payments (
    id                  text PRIMARY KEY,
    merchant_id         text NOT NULL REFERENCES merchants(id),
    status              text NOT NULL,
    amount              bigint NOT NULL CHECK (amount > 0),
    currency            text NOT NULL,
    amount_captured     bigint NOT NULL DEFAULT 0 CHECK (amount_captured >= 0),
    amount_refunded     bigint NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0),
    capture_method      text NOT NULL,
    capture_closed      boolean NOT NULL DEFAULT false,
    provider            text,
    provider_reference  text,
    body                json NOT NULL,  -- the API object, kept byte-exact for reads
    reference           text,
    created             bigint NOT NULL,
    version             integer NOT NULL DEFAULT 1,
    CHECK (amount_captured <= amount),
    CHECK (amount_refunded <= amount_captured)
);
CREATE INDEX payments_merchant_created ON payments (merchant_id, created DESC, id DESC);

-- One row per provider call of an authorization; written as an intent before the call.
CREATE TABLE payment_attempts (
    id                  text PRIMARY KEY,
    payment_id          text NOT NULL,
    merchant_id         text NOT NULL REFERENCES merchants(id),
    provider            text NOT NULL,
    amount              bigint NOT NULL,
    currency            text NOT NULL,
    status              text NOT NULL,
    outcome             text,
    code                text,
    provider_reference  text,
    latency_ms          integer,
    -- The payment as requested (card data masked), so recovery can finish it after a crash.
    request             jsonb NOT NULL,
    idempotency_key     text,
    created             bigint NOT NULL
);
CREATE INDEX payment_attempts_payment ON payment_attempts (payment_id);
CREATE INDEX payment_attempts_open ON payment_attempts (status) WHERE status = 'intent';

CREATE TABLE refunds (
    id                  text PRIMARY KEY,
    payment_id          text NOT NULL REFERENCES payments(id),
    merchant_id         text NOT NULL REFERENCES merchants(id),
    amount              bigint NOT NULL CHECK (amount > 0),
    currency            text NOT NULL,
    status              text NOT NULL,
    provider_reference  text,
    reason              text,
    created             bigint NOT NULL
);
CREATE INDEX refunds_payment ON refunds (payment_id);

-- Double-entry journal. A transaction's entries sum to zero per currency and phase; entries are
-- never updated or deleted. phase 'pending' holds authorizations, 'posted' is money owed.
CREATE TABLE journal_transactions (
    id           text PRIMARY KEY,
    merchant_id  text NOT NULL,
    payment_id   text,
    kind         text NOT NULL,
    -- The operation that caused it (payment, capture, refund id): one transaction per operation.
    operation_id text NOT NULL,
    created      bigint NOT NULL,
    UNIQUE (kind, operation_id)
);
CREATE INDEX journal_transactions_payment ON journal_transactions (payment_id);

CREATE TABLE journal_entries (
    id              bigserial PRIMARY KEY,
    transaction_id  text NOT NULL REFERENCES journal_transactions(id),
    account         text NOT NULL,
    currency        text NOT NULL,
    phase           text NOT NULL CHECK (phase IN ('pending', 'posted')),
    amount          bigint NOT NULL CHECK (amount <> 0)
);
CREATE INDEX journal_entries_transaction ON journal_entries (transaction_id);
CREATE INDEX journal_entries_account ON journal_entries (account, currency);

-- Stored responses of idempotent POSTs, replayed for the retention period.
CREATE TABLE idempotency_keys (
    merchant_id   text NOT NULL,
    key           text NOT NULL,
    endpoint      text NOT NULL,
    body_hash     bytea NOT NULL,
    -- 0 while the first request is in flight; the HTTP status once it finished.
    status_code   integer NOT NULL,
    response      bytea,
    created       bigint NOT NULL,
    PRIMARY KEY (merchant_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created);

-- A key for card fingerprints, generated once per database so that zero-config starts need none.
CREATE TABLE switch_secrets (
    name   text PRIMARY KEY,
    value  bytea NOT NULL
);
