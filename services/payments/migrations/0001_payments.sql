-- One payment per order; the order id makes charge and refund idempotent.
-- A refund for an order never charged leaves a 'voided' row, so a charge that
-- arrives late (after the saga compensated) cannot take money.
CREATE TABLE payments (
    order_id       uuid        PRIMARY KEY,
    amount_cents   integer     NOT NULL CHECK (amount_cents >= 0),
    currency       text        NOT NULL,
    status         text        NOT NULL
                   CHECK (status IN ('charged', 'declined', 'refunded', 'voided')),
    decline_reason text,
    processor_ref  text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_status_idx ON payments (status);
