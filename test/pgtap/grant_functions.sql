-- pgTAP: p2pay.grant_app(), grant_analyst() and grant_admin(), the grants
-- of README "Privileges" as functions.  Each is run for a role that has
-- nothing, and the role's privileges on the schema and on every relation,
-- column and function in it are then exactly those the README lists; run
-- again, nothing changes, and a table the extension gains later is covered.
-- Refused for a role that is not the extension's owner, a null role and a
-- role that does not exist.  Everything happens in one transaction that is
-- rolled back, the roles included.
\ir preamble.psql

SELECT plan(25);

CREATE ROLE p2pay_grants_app NOLOGIN;
CREATE ROLE p2pay_grants_analyst NOLOGIN;
CREATE ROLE p2pay_grants_admin NOLOGIN;
CREATE ROLE p2pay_grants_outsider NOLOGIN;

-- Every privilege a role holds in schema p2pay, one a row.
CREATE FUNCTION pg_temp.privileges(r name) RETURNS SETOF text LANGUAGE sql AS $$
  SELECT 'schema ' || x.privilege_type
    FROM pg_namespace n, aclexplode(n.nspacl) x
   WHERE n.nspname = 'p2pay' AND x.grantee = r::regrole
  UNION ALL
  SELECT c.oid::regclass || ' ' || x.privilege_type
    FROM pg_class c, aclexplode(c.relacl) x
   WHERE c.relnamespace = 'p2pay'::regnamespace AND x.grantee = r::regrole
  UNION ALL
  SELECT a.attrelid::regclass || '.' || a.attname || ' ' || x.privilege_type
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid, aclexplode(a.attacl) x
   WHERE c.relnamespace = 'p2pay'::regnamespace AND x.grantee = r::regrole
  UNION ALL
  SELECT p.oid::regprocedure || ' ' || x.privilege_type
    FROM pg_proc p, aclexplode(p.proacl) x
   WHERE p.pronamespace = 'p2pay'::regnamespace AND x.grantee = r::regrole
$$;

-- What README "Privileges" grants each role.
CREATE TEMP TABLE app_expected(p) AS VALUES
  ('schema USAGE'), ('p2pay.currencies SELECT'), ('p2pay.payment_methods SELECT'),
  ('p2pay.users SELECT'), ('p2pay.users INSERT'),
  ('p2pay.user_payment_methods SELECT'), ('p2pay.user_payment_methods INSERT'),
  ('p2pay.payments SELECT'), ('p2pay.payments INSERT');
-- SELECT on every table and view of the schema (GRANT ... ON ALL TABLES).
CREATE TEMP TABLE analyst_expected(p) AS
  SELECT c.oid::regclass || ' SELECT' FROM pg_class c
   WHERE c.relnamespace = 'p2pay'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  UNION ALL VALUES
  ('schema USAGE'), ('p2pay.fraud_labels INSERT'), ('p2pay.fraud_labels UPDATE'),
  ('p2pay.review_claims INSERT'), ('p2pay.review_claims UPDATE'), ('p2pay.review_claims DELETE'),
  ('p2pay.resolve(uuid,p2pay.decision,text) EXECUTE'),
  ('p2pay.score(uuid,uuid,numeric,character,uuid,timestamp with time zone) EXECUTE'),
  ('p2pay.backtest(timestamp with time zone,timestamp with time zone,jsonb) EXECUTE'),
  ('p2pay.backtest_payments(timestamp with time zone,timestamp with time zone,jsonb) EXECUTE'),
  ('p2pay.rule_stats_read() EXECUTE'), ('p2pay.decision_stats_read() EXECUTE'),
  ('p2pay.flagged_since(timestamp with time zone,p2pay.decision,interval) EXECUTE');
CREATE TEMP TABLE admin_expected(p) AS VALUES
  ('p2pay.rules UPDATE'), ('p2pay.settings UPDATE'),
  ('p2pay.blocklist INSERT'), ('p2pay.blocklist UPDATE'), ('p2pay.blocklist DELETE'),
  ('p2pay.allowlist INSERT'), ('p2pay.allowlist UPDATE'), ('p2pay.allowlist DELETE'),
  ('p2pay.snoozes INSERT'), ('p2pay.snoozes UPDATE'), ('p2pay.snoozes DELETE'),
  ('p2pay.currencies INSERT'), ('p2pay.payment_methods INSERT'),
  ('p2pay.snooze(text,uuid,timestamp with time zone,text) EXECUTE'),
  ('p2pay.rule_stats_reset() EXECUTE'), ('p2pay.decision_stats_reset() EXECUTE');

SELECT is_empty($$SELECT pg_temp.privileges('p2pay_grants_app')
                  UNION ALL SELECT pg_temp.privileges('p2pay_grants_analyst')
                  UNION ALL SELECT pg_temp.privileges('p2pay_grants_admin')$$,
                'the fresh roles hold no privilege in p2pay');

------------------------------------------------------------------------------
-- Each function's grants, exactly
------------------------------------------------------------------------------
SELECT lives_ok($$SELECT p2pay.grant_app('p2pay_grants_app')$$, 'grant_app() runs');
SELECT set_eq($$SELECT pg_temp.privileges('p2pay_grants_app')$$, 'TABLE app_expected',
              'grant_app() grants exactly what README "Privileges" grants p2pay_app');
SELECT lives_ok($$SELECT p2pay.grant_analyst('p2pay_grants_analyst')$$, 'grant_analyst() runs');
SELECT set_eq($$SELECT pg_temp.privileges('p2pay_grants_analyst')$$, 'TABLE analyst_expected',
              'grant_analyst() grants exactly what README "Privileges" grants p2pay_analyst');
SELECT lives_ok($$SELECT p2pay.grant_admin('p2pay_grants_admin')$$, 'grant_admin() runs');
SELECT set_eq($$SELECT pg_temp.privileges('p2pay_grants_admin')$$, 'TABLE admin_expected',
              'grant_admin() grants exactly what README "Privileges" grants p2pay_admin itself');
SELECT is(pg_has_role('p2pay_grants_admin', 'p2pay_grants_analyst', 'MEMBER'), false,
          'grant_admin() makes the role a member of no other role');

-- What the grants let each role do, as PostgreSQL decides it.
SELECT ok(has_table_privilege('p2pay_grants_app', 'p2pay.payments', 'INSERT')
          AND NOT has_table_privilege('p2pay_grants_app', 'p2pay.rules', 'SELECT')
          AND NOT has_function_privilege('p2pay_grants_app', 'p2pay.score(uuid, uuid, numeric, char, uuid, timestamptz)', 'EXECUTE'),
          'the application role inserts payments, and neither reads the rules nor runs score()');
SELECT ok(has_table_privilege('p2pay_grants_analyst', 'p2pay.review_queue', 'SELECT')
          AND has_function_privilege('p2pay_grants_analyst', 'p2pay.resolve(uuid, p2pay.decision, text)', 'EXECUTE')
          AND NOT has_table_privilege('p2pay_grants_analyst', 'p2pay.rules', 'UPDATE'),
          'the analyst role reads the review queue and resolves, and does not change rules');
SELECT ok(has_table_privilege('p2pay_grants_admin', 'p2pay.rules', 'UPDATE')
          AND has_function_privilege('p2pay_grants_admin', 'p2pay.snooze(text, uuid, timestamptz, text)', 'EXECUTE')
          AND NOT has_table_privilege('p2pay_grants_admin', 'p2pay.payments', 'SELECT'),
          'the admin role changes rules and snoozes, and reads payments only as an analyst too');

------------------------------------------------------------------------------
-- Idempotent, and run again after an update: what the update added
------------------------------------------------------------------------------
SELECT lives_ok($$SELECT p2pay.grant_app('p2pay_grants_app'), p2pay.grant_analyst('p2pay_grants_analyst'),
                         p2pay.grant_admin('p2pay_grants_admin')$$,
                'each function runs again');
SELECT set_eq($$SELECT pg_temp.privileges('p2pay_grants_app')$$, 'TABLE app_expected',
              'grant_app() run twice grants the same');
SELECT set_eq($$SELECT pg_temp.privileges('p2pay_grants_analyst')$$, 'TABLE analyst_expected',
              'grant_analyst() run twice grants the same');
SELECT set_eq($$SELECT pg_temp.privileges('p2pay_grants_admin')$$, 'TABLE admin_expected',
              'grant_admin() run twice grants the same');

-- A table as an update of the extension would add it.
CREATE TABLE p2pay.added_by_an_update (x integer);
SELECT is(has_table_privilege('p2pay_grants_analyst', 'p2pay.added_by_an_update', 'SELECT'), false,
          'a table added after the grant is not readable by the analyst role');
SELECT p2pay.grant_analyst('p2pay_grants_analyst');
SELECT is(has_table_privilege('p2pay_grants_analyst', 'p2pay.added_by_an_update', 'SELECT'), true,
          'grant_analyst() run again after the update covers the added table');
DROP TABLE p2pay.added_by_an_update;

------------------------------------------------------------------------------
-- Refusals
------------------------------------------------------------------------------
SELECT throws_ok($$SELECT p2pay.grant_app(NULL)$$, '22004', NULL, 'grant_app() refuses a null role');
SELECT throws_ok($$SELECT p2pay.grant_analyst(NULL)$$, '22004', NULL, 'grant_analyst() refuses a null role');
SELECT throws_ok($$SELECT p2pay.grant_admin(NULL)$$, '22004', NULL, 'grant_admin() refuses a null role');
SELECT throws_ok($$SELECT p2pay.grant_admin('p2pay_grants_nobody')$$, '42704', NULL,
                 'grant_admin() refuses a role that does not exist');

-- A role that does not own the extension may not run them, not even for
-- itself (EXECUTE is revoked from PUBLIC).
SET LOCAL ROLE p2pay_grants_outsider;
SELECT throws_ok($$SELECT p2pay.grant_app('p2pay_grants_outsider')$$, '42501', NULL,
                 'a role that does not own the extension may not run grant_app()');
SELECT throws_ok($$SELECT p2pay.grant_analyst('p2pay_grants_outsider')$$, '42501', NULL,
                 'a role that does not own the extension may not run grant_analyst()');
SELECT throws_ok($$SELECT p2pay.grant_admin('p2pay_grants_outsider')$$, '42501', NULL,
                 'a role that does not own the extension may not run grant_admin()');
RESET ROLE;
SELECT is_empty($$SELECT pg_temp.privileges('p2pay_grants_outsider')$$,
                'the refused role holds no privilege in p2pay');

SELECT * FROM finish();
ROLLBACK;
