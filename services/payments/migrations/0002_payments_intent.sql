-- A charge is recorded before the card processor is called ('pending', with
-- the idempotency key the processor gets and the payment method to ask again
-- with) and its outcome after; a refund likewise ('refunding', then
-- 'refunded'). No transaction is open while the processor works: a crash in
-- between leaves a row that says what may have happened, and the next charge
-- or refund of the order asks the processor again with the same key.
ALTER TABLE payments ADD COLUMN payment_method text;
ALTER TABLE payments ADD COLUMN processor_key text;
ALTER TABLE payments DROP CONSTRAINT payments_status_check;
ALTER TABLE payments ADD CONSTRAINT payments_status_check CHECK (
    status IN ('pending', 'charged', 'declined', 'refunding', 'refunded', 'voided')
);
