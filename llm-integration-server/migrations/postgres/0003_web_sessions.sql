-- The browser door's secrets, stored as SHA-256 hashes (hex): one-time
-- login links (kind 'link', deleted when used) and session cookies (kind
-- 'session'), each with its expiry in milliseconds since the Unix epoch.
-- The same table as SQLite's 0004_web_sessions.sql.
CREATE TABLE web_tokens (
    token_hash     TEXT PRIMARY KEY,
    kind           TEXT NOT NULL CHECK (kind IN ('link', 'session')),
    user_id        BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    expires_at_ms  BIGINT NOT NULL
);
CREATE INDEX web_tokens_expiry ON web_tokens (expires_at_ms);
