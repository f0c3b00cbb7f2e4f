-- The contract: CREATE EXTENSION gives the schema, seeded reference data,
-- the rule catalogue and the default thresholds.
CREATE EXTENSION p2pay;

SELECT extname, extversion, extrelocatable, n.nspname
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE extname = 'p2pay';

SELECT code, name, rate_to_base FROM p2pay.currencies ORDER BY code;
SELECT id, name FROM p2pay.payment_methods ORDER BY name;
SELECT name, enabled, weight, params FROM p2pay.rules ORDER BY name;
SELECT review_threshold, decline_threshold FROM p2pay.settings;
SELECT enum_range(NULL::p2pay.decision);

-- Every table's rows are kept by pg_dump.
SELECT c.relname
  FROM pg_extension e, unnest(e.extconfig) AS cfg(oid) JOIN pg_class c ON c.oid = cfg.oid
 WHERE e.extname = 'p2pay' ORDER BY 1;

-- The prefix is reserved: a misspelt setting is an error, not a silent no-op.
SET p2pay.future_tolerence = 10;
SHOW p2pay.future_tolerance;

DROP EXTENSION p2pay;
