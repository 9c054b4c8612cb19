-- The control plane's records. Integer primary keys are the domain ids.
-- Owners are (owner_kind, owner_id): 'user' or 'team'.

CREATE TABLE users (
    id          INTEGER PRIMARY KEY,
    email       TEXT NOT NULL UNIQUE,
    operator    INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE teams (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE team_members (
    team_id     INTEGER NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (team_id, user_id)
);

CREATE TABLE vms (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    owner_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    team_id       INTEGER REFERENCES teams(id) ON DELETE SET NULL,
    comment       TEXT NOT NULL DEFAULT '',
    default_port  INTEGER,
    created_at    TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE vm_tags (
    vm_id  INTEGER NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
    tag    TEXT NOT NULL,
    PRIMARY KEY (vm_id, tag)
);

-- The source addresses the data plane knows a VM by; one VM per address.
CREATE TABLE vm_addresses (
    address  TEXT PRIMARY KEY,
    vm_id    INTEGER NOT NULL REFERENCES vms(id) ON DELETE CASCADE
);

CREATE TABLE integrations (
    id          INTEGER PRIMARY KEY,
    owner_kind  TEXT NOT NULL CHECK (owner_kind IN ('user', 'team')),
    owner_id    INTEGER NOT NULL,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    -- The type's settings as JSON (sources with credential ids and hints; never a key).
    settings    TEXT NOT NULL,
    comment     TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at  TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (owner_kind, owner_id, name)
);

CREATE TABLE attachments (
    integration_id  INTEGER NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    position        INTEGER NOT NULL,
    spec            TEXT NOT NULL,
    PRIMARY KEY (integration_id, spec)
);

-- Provider API keys, sealed with the master key (XChaCha20-Poly1305).
CREATE TABLE credentials (
    id              INTEGER PRIMARY KEY,
    integration_id  INTEGER NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    provider        TEXT NOT NULL,
    nonce           BLOB NOT NULL,
    ciphertext      BLOB NOT NULL,
    last4           TEXT,
    created_at      TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- Connected ChatGPT accounts; tokens sealed with the master key.
CREATE TABLE chatgpt_accounts (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    nonce       BLOB NOT NULL,
    ciphertext  BLOB NOT NULL,
    email       TEXT,
    plan        TEXT,
    status      TEXT NOT NULL DEFAULT 'connected',
    created_at  TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (user_id, name)
);

-- Access tokens for the /exec door, stored as SHA-256 hashes.
CREATE TABLE access_tokens (
    id            INTEGER PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash    BLOB NOT NULL UNIQUE,
    label         TEXT NOT NULL DEFAULT '',
    created_at    TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- LLM allocation per owner, in millionths of a currency unit.
CREATE TABLE allocations (
    owner_kind      TEXT NOT NULL CHECK (owner_kind IN ('user', 'team')),
    owner_id        INTEGER NOT NULL,
    balance_micros  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (owner_kind, owner_id)
);

-- One record per proxied request.
CREATE TABLE usage_ledger (
    id                     INTEGER PRIMARY KEY,
    started_at_ms          INTEGER NOT NULL,
    owner_kind             TEXT NOT NULL,
    owner_id               INTEGER NOT NULL,
    vm_id                  INTEGER NOT NULL,
    integration_id         INTEGER NOT NULL,
    provider               TEXT NOT NULL,
    source                 TEXT NOT NULL,
    model                  TEXT,
    input_tokens           INTEGER NOT NULL DEFAULT 0,
    output_tokens          INTEGER NOT NULL DEFAULT 0,
    cache_creation_tokens  INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens      INTEGER NOT NULL DEFAULT 0,
    cost_micros            INTEGER NOT NULL DEFAULT 0,
    status                 INTEGER NOT NULL,
    duration_ms            INTEGER NOT NULL,
    ttfb_ms                INTEGER
);
CREATE INDEX usage_ledger_owner_time ON usage_ledger (owner_kind, owner_id, started_at_ms);

-- The store's own metadata (master key check, ...).
CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  BLOB NOT NULL
);

-- Bumped by every configuration write; replicas poll it.
CREATE TABLE config_version (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  INTEGER NOT NULL
);
INSERT INTO config_version (id, version) VALUES (1, 1);
