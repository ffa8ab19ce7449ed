-- Versioned per-merchant documents (the routing config, the risk rules): every version is kept,
-- one is active, and a newer one may roll out to a percentage of traffic first (the canary).
CREATE TABLE merchant_documents (
    merchant_id  text NOT NULL REFERENCES merchants(id),
    kind         text NOT NULL CHECK (kind IN ('routing', 'risk')),
    version      integer NOT NULL CHECK (version >= 1),
    body         jsonb NOT NULL,
    created      bigint NOT NULL,
    PRIMARY KEY (merchant_id, kind, version)
);

CREATE TABLE merchant_document_heads (
    merchant_id     text NOT NULL REFERENCES merchants(id),
    kind            text NOT NULL CHECK (kind IN ('routing', 'risk')),
    active_version  integer NOT NULL,
    -- A version rolling out to canary_percent of traffic (sticky per customer or card), or null.
    canary_version  integer,
    canary_percent  integer CHECK (canary_percent BETWEEN 1 AND 99),
    updated         bigint NOT NULL,
    PRIMARY KEY (merchant_id, kind),
    FOREIGN KEY (merchant_id, kind, active_version) REFERENCES merchant_documents (merchant_id, kind, version),
    FOREIGN KEY (merchant_id, kind, canary_version) REFERENCES merchant_documents (merchant_id, kind, version),
    CHECK ((canary_version IS NULL) = (canary_percent IS NULL))
);
