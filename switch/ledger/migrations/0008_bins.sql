-- Operator-loaded BIN ranges (`switch bins load PATH`), merged by every worker over the bundled,
-- synthetic table in switch/risk/data/bins.csv. A load replaces the rows whole and bumps the
-- generation in the same transaction; workers poll the one-row generation table and reload the
-- ranges only when it changed, so a load reaches every worker without a restart.
CREATE TABLE bin_ranges (
    line        integer PRIMARY KEY,
    bin_low     text NOT NULL CHECK (bin_low ~ '^[0-9]{1,8}$'),
    bin_high    text NOT NULL CHECK (bin_high ~ '^[0-9]{1,8}$' AND length(bin_high) = length(bin_low)),
    brand       text,
    country     text CHECK (country ~ '^[A-Z]{2}$'),
    funding     text CHECK (funding IN ('credit', 'debit', 'prepaid')),
    issuer      text,
    UNIQUE (bin_low, bin_high)
);

CREATE TABLE bin_table_generation (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    generation  bigint NOT NULL,
    source      text,
    row_count   integer NOT NULL DEFAULT 0,
    loaded_at   bigint
);
INSERT INTO bin_table_generation (generation) VALUES (0);
