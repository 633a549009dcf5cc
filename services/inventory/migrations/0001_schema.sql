-- The product catalog and its stock. Stock is a ledger in three columns:
-- available + reserved + sold is constant for a product unless an operator
-- restocks it, and no column can go negative.
CREATE TABLE products (
    id          integer     PRIMARY KEY,
    sku         text        NOT NULL UNIQUE,
    name        text        NOT NULL,
    description text        NOT NULL,
    category    text        NOT NULL,
    price_cents integer     NOT NULL CHECK (price_cents > 0),
    currency    text        NOT NULL DEFAULT 'USD',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX products_category_idx ON products (category, id);
CREATE INDEX products_name_lower_idx ON products (lower(name) text_pattern_ops);

CREATE TABLE stock (
    product_id integer PRIMARY KEY REFERENCES products (id),
    available  integer NOT NULL CHECK (available >= 0),
    reserved   integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    sold       integer NOT NULL DEFAULT 0 CHECK (sold >= 0)
);

-- A reservation per order; the order id makes every operation idempotent.
-- A release for an order never seen leaves a 'released' tombstone, so a
-- reserve call that arrives late (after the saga gave up) cannot take stock.
CREATE TABLE reservations (
    order_id   uuid        PRIMARY KEY,
    status     text        NOT NULL CHECK (status IN ('reserved', 'released', 'committed')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reservations_open_idx ON reservations (created_at) WHERE status = 'reserved';

CREATE TABLE reservation_items (
    order_id   uuid    NOT NULL REFERENCES reservations (order_id),
    product_id integer NOT NULL REFERENCES products (id),
    quantity   integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_id)
);
