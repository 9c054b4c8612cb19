-- Slices of an owner's balance held by a server, which reserves against
-- them in memory. The balance an owner has left is `allocations.balance_micros`
-- plus the `micros` of their leases; a lease not renewed by `expires_at_ms`
-- (its server stopped or crashed) goes back to the balance.
CREATE TABLE allocation_leases (
    owner_kind      TEXT NOT NULL,
    owner_id        BIGINT NOT NULL,
    holder          TEXT NOT NULL,
    micros          BIGINT NOT NULL,
    expires_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (owner_kind, owner_id, holder)
);
CREATE INDEX allocation_leases_expiry ON allocation_leases (expires_at_ms);
