-- Card vault: envelope encryption. Each data key (AES-256) is stored only wrapped (AES-256-GCM)
-- by a master key that never reaches the database; master_key_id names which one wraps it.
CREATE TABLE vault_keys (
    id             text PRIMARY KEY,
    master_key_id  text NOT NULL,
    wrapped        bytea NOT NULL,
    active         boolean NOT NULL DEFAULT false,
    created        bigint NOT NULL
);
-- New cards are sealed under the one active data key; older keys stay for decryption.
CREATE UNIQUE INDEX vault_keys_one_active ON vault_keys (active) WHERE active;

-- A saved card: the number sealed under a data key (nonce + ciphertext, the token and merchant as
-- associated data), the display fields kept apart in clear. The CVC is never stored.
CREATE TABLE vault_cards (
    token        text PRIMARY KEY,
    merchant_id  text NOT NULL REFERENCES merchants(id),
    key_id       text NOT NULL REFERENCES vault_keys(id),
    nonce        bytea NOT NULL,
    ciphertext   bytea NOT NULL,
    brand        text NOT NULL,
    bin          text NOT NULL,
    last4        text NOT NULL,
    exp_month    integer NOT NULL,
    exp_year     integer NOT NULL,
    fingerprint  text NOT NULL,
    created      bigint NOT NULL
);
CREATE INDEX vault_cards_key ON vault_cards (key_id);

-- Merchant keys: several per scope (rotation with overlap), each hashed, each may expire or be
-- revoked. A scope is a merchants row: the test scope is the merchant's own row, its live scope a
-- second row (livemode, account_id naming the test row), so every merchant_id filter isolates modes.
ALTER TABLE merchants ALTER COLUMN key_hash DROP NOT NULL;
ALTER TABLE merchants ADD COLUMN livemode boolean NOT NULL DEFAULT false;
ALTER TABLE merchants ADD COLUMN account_id text REFERENCES merchants(id);
CREATE UNIQUE INDEX merchants_one_live_scope ON merchants (account_id) WHERE account_id IS NOT NULL;

CREATE TABLE merchant_keys (
    id           text PRIMARY KEY,
    merchant_id  text NOT NULL REFERENCES merchants(id),
    key_hash     bytea NOT NULL UNIQUE,
    key_prefix   text NOT NULL,
    created      bigint NOT NULL,
    expires_at   bigint,
    revoked_at   bigint
);
CREATE INDEX merchant_keys_merchant ON merchant_keys (merchant_id);
INSERT INTO merchant_keys (id, merchant_id, key_hash, key_prefix, created)
SELECT 'key_' || md5(id), id, key_hash, key_prefix, created FROM merchants WHERE key_hash IS NOT NULL;

-- Outbound merchant events: an outbox written in the same ledger batch as the change it describes,
-- fanned out to the scope's endpoints in that same statement, delivered by a background worker.
CREATE TABLE webhook_endpoints (
    id           text PRIMARY KEY,
    merchant_id  text NOT NULL REFERENCES merchants(id),
    url          text NOT NULL,
    events       text[] NOT NULL,
    secret       text NOT NULL,
    description  text,
    created      bigint NOT NULL
);
CREATE INDEX webhook_endpoints_merchant ON webhook_endpoints (merchant_id);

CREATE TABLE events (
    -- Commit-independent but causal order: events of one payment are written by successive batches.
    seq          bigserial UNIQUE,
    id           text PRIMARY KEY,
    merchant_id  text NOT NULL REFERENCES merchants(id),
    type         text NOT NULL,
    payment_id   text,
    body         json NOT NULL,  -- exactly the bytes delivered and signed
    created      bigint NOT NULL
);
CREATE INDEX events_merchant_seq ON events (merchant_id, seq DESC);

CREATE TABLE event_deliveries (
    endpoint_id   text NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    event_id      text NOT NULL REFERENCES events(id),
    seq           bigint NOT NULL,
    -- Deliveries with one ordering key (the payment, else the event) go out in seq order.
    ordering_key  text NOT NULL,
    status        text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts      integer NOT NULL DEFAULT 0,
    next_attempt  bigint NOT NULL,
    lease_until   bigint NOT NULL DEFAULT 0,
    last_status   integer,
    last_error    text,
    delivered_at  bigint,
    created       bigint NOT NULL,
    PRIMARY KEY (endpoint_id, event_id)
);
CREATE INDEX event_deliveries_due ON event_deliveries (next_attempt) WHERE status = 'pending';
CREATE INDEX event_deliveries_order ON event_deliveries (endpoint_id, ordering_key, seq) WHERE status = 'pending';
CREATE INDEX event_deliveries_event ON event_deliveries (event_id);
