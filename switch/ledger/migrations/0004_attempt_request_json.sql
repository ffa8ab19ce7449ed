-- The stored request is only ever read back whole (by recovery); plain json skips jsonb's parse on
-- every attempt insert, which is on the authorization path.
ALTER TABLE payment_attempts ALTER COLUMN request TYPE json USING request::json;
