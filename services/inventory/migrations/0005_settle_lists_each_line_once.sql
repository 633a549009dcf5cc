-- settle_reservation's second pass (its UPDATE missed a reserve that
-- committed before its re-read; tests/test_inventory_settle_race.py) appended
-- the settled lines to the ones the re-read had already put in its OUT
-- arguments: a commit in that race answered with every line twice (the stock
-- moved once, correctly). The settled lines are now listed from empty. The
-- rest of the body is 0003's: a replaced PL/pgSQL function needs all of it.
CREATE OR REPLACE FUNCTION settle_reservation(
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
            -- A second pass starts from the lines the re-read returned: list
            -- each line once, as it is settled.
            product_ids := NULL;
            quantities := NULL;
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
