-- Sanctions lists loaded by `switch sanctions load`: one row per listed party, its aliases and
-- programs. A load replaces one list's rows in one transaction (other lists stay).
CREATE TABLE sanctions_entries (
    list_name   text NOT NULL,
    entry_id    text NOT NULL,
    -- individual, entity, vessel, aircraft, or what the source calls it
    kind        text NOT NULL,
    name        text NOT NULL,
    aliases     text[] NOT NULL DEFAULT '{}',
    programs    text[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (list_name, entry_id)
);

-- What each list was loaded from and when, for `switch sanctions status`.
CREATE TABLE sanctions_lists (
    list_name   text PRIMARY KEY,
    format      text NOT NULL CHECK (format IN ('ofac', 'opensanctions')),
    source      text NOT NULL,
    entries     integer NOT NULL CHECK (entries > 0),
    aliases     integer NOT NULL CHECK (aliases >= 0),
    loaded_at   bigint NOT NULL,
    generation  bigint NOT NULL
);

-- One row: bumped by every load, polled by every worker (about once a second) so a new list
-- is screened everywhere without a restart. Its row lock also serializes concurrent loads.
CREATE TABLE sanctions_generation (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    generation  bigint NOT NULL
);
INSERT INTO sanctions_generation (id, generation) VALUES (true, 0);
