-- A request holds the Idempotency-Key it claimed like a saga holds its order:
-- by a token, until claimed_until (one saga lease). A key whose request died
-- before creating its order (a crash, or a failure that could not release it)
-- is free again after that, and a slow claimant that lost it cannot add an
-- order. A key past expires_at (24 hours) is a new key. The recovery loop
-- purges both kinds.
ALTER TABLE idempotency_keys ADD COLUMN claim_token uuid;
ALTER TABLE idempotency_keys ADD COLUMN claimed_until timestamptz NOT NULL DEFAULT now();
CREATE INDEX idempotency_keys_abandoned_idx ON idempotency_keys (claimed_until)
    WHERE order_id IS NULL;
