-- Whether a usage record's counts are the gateway's estimate (the
-- provider's final usage never came: the client hung up, the upstream
-- failed, the gateway stopped).
ALTER TABLE usage_ledger ADD COLUMN estimated INTEGER NOT NULL DEFAULT 0;
