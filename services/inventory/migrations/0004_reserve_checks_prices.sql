-- The caller may say what it priced each line at (orders caches catalog
-- prices instead of asking for them on every order): reserve_stock checks each
-- line's price under the line's stock lock, alongside its stock, and refuses
-- the order when a price is not the catalog's any more. Prices are still the
-- catalog's, never the client's: an order priced from a stale cache is
-- refused here, before anything is charged.
--
-- A refused line says why: short_available NULL for an unknown product;
-- changed_price_cents (the catalog's price now) when the price changed; else
-- the stock was short. A line of no price (p_prices NULL, or shorter than the
-- lines: unnest pads it with NULLs) is not checked, as before; the default
-- keeps the old three-argument call working while replicas of the previous
-- version still make it during a rolling upgrade.
DROP FUNCTION reserve_stock(uuid, integer[], integer[]);

CREATE FUNCTION reserve_stock(
    p_order_id uuid,
    p_product_ids integer[],
    p_quantities integer[],
    p_prices integer[] DEFAULT NULL,
    OUT status text,
    OUT created boolean,
    OUT product_ids integer[],
    OUT quantities integer[],
    OUT short_product_id integer,
    OUT short_available integer,
    OUT short_requested integer,
    OUT changed_price_cents integer
) LANGUAGE plpgsql AS $$
DECLARE
    line record;
    left_in_stock integer;
    price_now integer;
BEGIN
    created := false;
    -- The primary key serialises two calls for the same order: the second
    -- waits here, then sees the first one's outcome (or inserts, if the first
    -- was refused). A released tombstone answers a late reserve the same way.
    INSERT INTO reservations (order_id, status) VALUES (p_order_id, 'reserved')
    ON CONFLICT (order_id) DO NOTHING;
    IF NOT FOUND THEN
        SELECT r.status, r.product_ids, r.quantities INTO status, product_ids, quantities
          FROM reservation_as_it_stands(p_order_id) r;
        RETURN;
    END IF;
    -- One line per product, in product-id order (the lock order), whatever
    -- order the caller sent them in; each stock row locked and checked before
    -- any moves. Lines of one product priced differently cannot both be right:
    -- lowest and highest must both be the catalog's price.
    FOR line IN
        SELECT l.product_id, sum(l.quantity)::integer AS quantity,
               min(l.price) AS lowest, max(l.price) AS highest
          FROM unnest(p_product_ids, p_quantities, p_prices) AS l (product_id, quantity, price)
         GROUP BY l.product_id
         ORDER BY l.product_id
    LOOP
        SELECT s.available, p.price_cents INTO left_in_stock, price_now
          FROM stock s JOIN products p ON p.id = s.product_id
         WHERE s.product_id = line.product_id FOR UPDATE OF s;
        IF NOT FOUND OR left_in_stock < line.quantity
           OR line.lowest <> price_now OR line.highest <> price_now THEN
            -- Refused: nothing moved, and the order may try again.
            DELETE FROM reservations r WHERE r.order_id = p_order_id;
            short_product_id := line.product_id;
            short_available := left_in_stock;  -- NULL: no such product
            short_requested := line.quantity;
            IF line.lowest <> price_now OR line.highest <> price_now THEN
                changed_price_cents := price_now;
            END IF;
            product_ids := NULL;
            quantities := NULL;
            RETURN;
        END IF;
        product_ids := array_append(product_ids, line.product_id);
        quantities := array_append(quantities, line.quantity);
    END LOOP;
    -- Every row is locked already, so one UPDATE moves them all in no
    -- particular order; the CHECKs stand behind the test above.
    UPDATE stock s SET available = s.available - l.quantity,
                       reserved = s.reserved + l.quantity
      FROM unnest(product_ids, quantities) AS l (product_id, quantity)
     WHERE s.product_id = l.product_id;
    INSERT INTO reservation_items (order_id, product_id, quantity)
    SELECT p_order_id, l.product_id, l.quantity
      FROM unnest(product_ids, quantities) AS l (product_id, quantity);
    status := 'reserved';
    created := true;
END
$$;
