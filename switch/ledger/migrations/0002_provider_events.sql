-- Inbound provider notifications already applied, so a duplicate or replayed one changes nothing.
CREATE TABLE provider_events (
    account      text NOT NULL,
    event_id     text NOT NULL,
    event_type   text NOT NULL,
    payment_id   text,
    outcome      text NOT NULL,
    received     bigint NOT NULL,
    PRIMARY KEY (account, event_id)
);

-- Notifications name the provider's reference, not ours.
CREATE INDEX payments_provider_reference ON payments (provider, provider_reference);

-- Which provider accounts each merchant routes to is data, so rename the column to say so.
COMMENT ON COLUMN merchants.providers IS 'provider account names in routing priority order';
