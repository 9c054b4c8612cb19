-- A credential's id is never given to another credential: caches of
-- opened keys and model lists are keyed by it, and a reused id would hand
-- one integration's key to the next integration stored. SQLite reuses the
-- highest INTEGER PRIMARY KEY after it is deleted unless the table is
-- AUTOINCREMENT, which cannot be added in place: the table is rebuilt
-- (nothing references it).
CREATE TABLE credentials_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    integration_id  INTEGER NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    provider        TEXT NOT NULL,
    nonce           BLOB NOT NULL,
    ciphertext      BLOB NOT NULL,
    last4           TEXT,
    created_at      TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
INSERT INTO credentials_new (id, integration_id, provider, nonce, ciphertext, last4, created_at)
    SELECT id, integration_id, provider, nonce, ciphertext, last4, created_at FROM credentials;
DROP TABLE credentials;
ALTER TABLE credentials_new RENAME TO credentials;
