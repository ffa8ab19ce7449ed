-- Refunds keep the merchant's metadata so that reading one returns what creating it returned.
ALTER TABLE refunds ADD COLUMN metadata json NOT NULL DEFAULT '{}';
