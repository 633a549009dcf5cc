-- Run once by the postgres image on an empty data directory
-- (/docker-entrypoint-initdb.d), as POSTGRES_USER. One database per service
-- that has one (services/topology.py: has_database); each service's
-- DATABASE_URL in docker-compose.yml names its own. The services apply their
-- own migrations at start-up.
CREATE DATABASE redline_accounts;
CREATE DATABASE redline_inventory;
CREATE DATABASE redline_orders;
CREATE DATABASE redline_payments;
CREATE DATABASE redline_notifications;
