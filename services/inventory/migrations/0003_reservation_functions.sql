-- Reserve, commit and release as functions: one statement, so one round trip
-- each and atomic without BEGIN/COMMIT. As transactions of single statements
-- they took ~5 round trips each (services/inventory/store.py calls these).
--
-- The guarantees are the ones store.py's docstring states, and they hold here
-- for these reasons:
-- * All lines or none: reserve locks and checks every line before it moves
--   any stock; a refused order leaves nothing (its reservation row deleted).
-- * No overselling: stock moves only after its locked row showed enough, plus
--   the CHECKs.
-- * No deadlock between two multi-item orders: stock rows are locked one
--   statement per line, in product-id order, in a loop (reserve: SELECT ...
--   FOR UPDATE; settle: UPDATE). A single UPDATE ... FROM join would lock them
--   in whatever order its plan visits them.
-- * The same visibility as the transactions they replace: a VOLATILE function
--   (the default) takes a fresh snapshot for each statement it runs, so under
--   READ COMMITTED each statement below sees what it saw as a round trip of
--   its own, and the old reasoning about waits and races holds line by line.
--
-- A refusal (out of stock, unknown product) is an answer, not an error: the
-- function checks every line under its lock before moving any, and returns
-- the first short line (short_product_id, short_available NULL for an unknown
-- product, short_requested) with a NULL status, having changed nothing. No
-- ERROR in PostgreSQL's log or on the database span for a sold-out product.

-- A reservation as it stands (a NULL status when there is none): what a
-- repeated call answers with. Read in one statement, so the status and the
-- lines come from one snapshot.
CREATE FUNCTION reservation_as_it_stands(
    p_order_id uuid, OUT status text, OUT product_ids integer[], OUT quantities integer[]
) LANGUAGE sql STABLE AS $$
    SELECT r.status,
           (SELECT array_agg(i.product_id ORDER BY i.product_id)
              FROM reservation_items i WHERE i.order_id = r.order_id),
           (SELECT array_agg(i.quantity ORDER BY i.product_id)
              FROM reservation_items i WHERE i.order_id = r.order_id)
      FROM reservations r WHERE r.order_id = p_order_id
$$;

CREATE FUNCTION reserve_stock(
    p_order_id uuid,
    p_product_ids integer[],
    p_quantities integer[],
    OUT status text,
    OUT created boolean,
    OUT product_ids integer[],
    OUT quantities integer[],
    OUT short_product_id integer,
    OUT short_available integer,
    OUT short_requested integer
) LANGUAGE plpgsql AS $$
DECLARE
    line record;
    left_in_stock integer;
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
    -- any moves.
    FOR line IN
        SELECT l.product_id, sum(l.quantity)::integer AS quantity
          FROM unnest(p_product_ids, p_quantities) AS l (product_id, quantity)
         GROUP BY l.product_id
         ORDER BY l.product_id
    LOOP
        SELECT s.available INTO left_in_stock FROM stock s
         WHERE s.product_id = line.product_id FOR UPDATE;
        IF NOT FOUND OR left_in_stock < line.quantity THEN
            -- Refused: nothing moved, and the order may try again.
            DELETE FROM reservations r WHERE r.order_id = p_order_id;
            short_product_id := line.product_id;
            short_available := left_in_stock;  -- NULL: no such product
            short_requested := line.quantity;
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

-- Give a reserved order its final status (committed or released) and move its
-- stock from reserved to sold or available. Returns the reservation as it now
-- stands: the settled one, or, when it was not reserved, whatever it already
-- was (the idempotent replay; a NULL status when there is none).
CREATE FUNCTION settle_reservation(
    p_order_id uuid,
    p_status text,
    OUT status text,
    OUT product_ids integer[],
    OUT quantities integer[]
) LANGUAGE plpgsql AS $$
DECLARE
    line record;
BEGIN
    LOOP
        -- The check and the change in one statement: an UPDATE that waited on
        -- the row lock re-checks the status against the winner's row, so a
        -- commit racing a release settles the order once. It locks the
        -- reservation before any stock row.
        UPDATE reservations r SET status = p_status, updated_at = now()
         WHERE r.order_id = p_order_id AND r.status = 'reserved';
        IF FOUND THEN
            FOR line IN
                SELECT i.product_id, i.quantity FROM reservation_items i
                 WHERE i.order_id = p_order_id
                 ORDER BY i.product_id
            LOOP
                UPDATE stock s
                   SET reserved = s.reserved - line.quantity,
                       available = s.available
                           + CASE p_status WHEN 'released' THEN line.quantity ELSE 0 END,
                       sold = s.sold
                           + CASE p_status WHEN 'committed' THEN line.quantity ELSE 0 END
                 WHERE s.product_id = line.product_id;
                product_ids := array_append(product_ids, line.product_id);
                quantities := array_append(quantities, line.quantity);
            END LOOP;
            status := p_status;
            RETURN;
        END IF;
        SELECT r.status, r.product_ids, r.quantities INTO status, product_ids, quantities
          FROM reservation_as_it_stands(p_order_id) r;
        IF status IS DISTINCT FROM 'reserved' THEN
            RETURN;
        END IF;
        -- Reserved by a transaction that committed after the UPDATE looked
        -- (this SELECT's snapshot is newer): the next UPDATE settles it, or
        -- sees its new state. At most twice: 'reserved' only goes to final
        -- states.
    END LOOP;
END
$$;

CREATE FUNCTION commit_reservation(
    p_order_id uuid, OUT status text, OUT product_ids integer[], OUT quantities integer[]
) LANGUAGE plpgsql AS $$
BEGIN
    SELECT s.status, s.product_ids, s.quantities INTO status, product_ids, quantities
      FROM settle_reservation(p_order_id, 'committed') s;
END
$$;

CREATE FUNCTION release_reservation(
    p_order_id uuid, OUT status text, OUT product_ids integer[], OUT quantities integer[]
) LANGUAGE plpgsql AS $$
BEGIN
    -- Waits for a reserve of the same order still in flight, then finds its
    -- row; an order never seen gets a released tombstone, so a reserve that
    -- arrives late cannot take stock.
    INSERT INTO reservations (order_id, status) VALUES (p_order_id, 'released')
    ON CONFLICT (order_id) DO NOTHING;
    SELECT s.status, s.product_ids, s.quantities INTO status, product_ids, quantities
      FROM settle_reservation(p_order_id, 'released') s;
END
$$;
