-- The specialist catalogue, when specialists.store = "database". Each specialist is its JSON (the
-- catalogue file's form of one entry); the columns beside it are what the database must enforce:
-- ids unique ignoring case (id_key), names unique after NFKC and case folding (name_key), and
-- a change applied only to the version it was based on (version).
CREATE TABLE specialists (
    id         VARCHAR(64) PRIMARY KEY,
    id_key     VARCHAR(64) NOT NULL UNIQUE,
    name_key   TEXT NOT NULL UNIQUE,
    version    BIGINT NOT NULL,
    spec       TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- Every version ever stored, and removals (deleted, with the last spec), oldest first.
CREATE TABLE specialist_versions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id         VARCHAR(64) NOT NULL,
    version    BIGINT NOT NULL,
    spec       TEXT NOT NULL,
    deleted    BOOLEAN NOT NULL DEFAULT 0,
    changed_at TIMESTAMP NOT NULL
);
CREATE INDEX specialist_versions_by_id ON specialist_versions (id, version);

-- One row: bumped in the transaction of every change, so a server polls one number to learn
-- whether its copy is current; seeded says the default catalogue was stored (or a change made).
CREATE TABLE catalogue_revision (
    id       INTEGER PRIMARY KEY,
    revision BIGINT NOT NULL,
    seeded   BOOLEAN NOT NULL
);
INSERT INTO catalogue_revision (id, revision, seeded) VALUES (1, 0, 0);
