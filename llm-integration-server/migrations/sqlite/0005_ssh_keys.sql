-- SSH public keys by which users sign in to the SSH door. A key belongs
-- to one user; it is found by its SHA-256 fingerprint (`SHA256:…`, as
-- `ssh-keygen -l` prints it).
CREATE TABLE ssh_keys (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    fingerprint  TEXT NOT NULL UNIQUE,
    public_key   TEXT NOT NULL,
    comment      TEXT NOT NULL DEFAULT '',
    created_at   TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX ssh_keys_user ON ssh_keys (user_id);
