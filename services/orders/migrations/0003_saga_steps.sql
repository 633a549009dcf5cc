-- The saga's steps by name: Step in services/orders/saga.py and the machine
-- drawn at its top list the same ones (tests/test_saga_states.py holds the
-- three together). A step the code does not know is never written.
ALTER TABLE orders ADD CONSTRAINT orders_step_known CHECK (step IN (
    'created', 'reserved', 'charging', 'charged', 'confirmed',
    'compensating_refund', 'compensating_release', 'cancelled'
));
