-- docker/init-p2pay.sql: run by the postgres image's entrypoint, once, when
-- it initialises an empty data directory; it connects to POSTGRES_DB as
-- POSTGRES_USER (a superuser, which CREATE EXTENSION p2pay needs) and stops
-- at the first error.  A data directory that already exists is left alone.
CREATE EXTENSION IF NOT EXISTS p2pay;
SELECT extname, extversion FROM pg_catalog.pg_extension WHERE extname = 'p2pay';
