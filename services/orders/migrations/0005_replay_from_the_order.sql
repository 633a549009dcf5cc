-- A finished key replays the response its order's final state gives
-- (services/orders/service.py::response_for), read with the order: storing
-- that response was one more UPDATE per order, and a window between the
-- order's last step and that UPDATE in which a retry got a 409.
ALTER TABLE idempotency_keys DROP COLUMN response_status;
ALTER TABLE idempotency_keys DROP COLUMN response_body;
