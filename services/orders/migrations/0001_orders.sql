-- Orders and the saga that completes them. The saga's progress is written
-- step by step, so an orders process killed mid-saga is finished by the
-- recovery loop of the next one: every order ends confirmed or cancelled.
CREATE TABLE orders (
    id              uuid        PRIMARY KEY,
    user_id         uuid        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('pending', 'confirmed', 'cancelled')),
    -- The last saga step reached (see services/orders/saga.py for the machine).
    step            text        NOT NULL,
    -- Why the order was (or is being) cancelled; set when compensation starts.
    reason          text,
    total_cents     integer     NOT NULL CHECK (total_cents >= 0),
    currency        text        NOT NULL DEFAULT 'USD',
    payment_method  text        NOT NULL,
    -- A lease: the process driving the saga, and until when. Recovery takes
    -- over pending orders whose lease ran out.
    lease_owner     text,
    lease_until     timestamptz,
    attempts        integer     NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (status <> 'cancelled' OR reason IS NOT NULL)
);
CREATE INDEX orders_user_idx ON orders (user_id, created_at DESC);
CREATE INDEX orders_pending_idx ON orders (lease_until) WHERE status = 'pending';

CREATE TABLE order_items (
    order_id         uuid    NOT NULL REFERENCES orders (id),
    product_id       integer NOT NULL,
    name             text    NOT NULL,
    quantity         integer NOT NULL CHECK (quantity > 0),
    unit_price_cents integer NOT NULL CHECK (unit_price_cents > 0),
    PRIMARY KEY (order_id, product_id)
);

-- Every step the saga took, for the audit trail and for tests.
CREATE TABLE saga_events (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id   uuid        NOT NULL REFERENCES orders (id),
    step       text        NOT NULL,
    outcome    text        NOT NULL,
    detail     text,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX saga_events_order_idx ON saga_events (order_id, id);

-- Idempotency-Key semantics (IETF draft-ietf-httpapi-idempotency-key-header):
-- a key is scoped to its user; the same key with another body is a 422, the
-- same key while the first request runs is a 409, a finished one replays its
-- response. Keys are kept at least 24 hours.
CREATE TABLE idempotency_keys (
    user_id         uuid        NOT NULL,
    key             text        NOT NULL,
    request_hash    text        NOT NULL,
    order_id        uuid,
    response_status integer,
    response_body   jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL DEFAULT now() + interval '24 hours',
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_expiry_idx ON idempotency_keys (expires_at);
