-- pgTAP: p2pay.merge_row(), the BEFORE INSERT trigger on the five tables
-- CREATE EXTENSION seeds (rules, settings, ruleset, currencies,
-- payment_methods).  pg_restore re-inserts their rows after the extension
-- has seeded them: an insert of an existing key updates that row with the
-- inserted values (ruleset's xact emptied), in every replication role, and
-- a new key is inserted.  The function refuses any other table (42809) and
-- any other use (22023).  Everything happens in one transaction that is
-- rolled back.
\ir preamble.psql

SELECT plan(18);

SELECT set_eq(
  $$SELECT c.relname::text, t.tgname::text, t.tgenabled::text FROM pg_trigger t
      JOIN pg_class c ON c.oid = t.tgrelid
     WHERE t.tgfoid = 'p2pay.merge_row()'::regprocedure$$,
  $$VALUES ('rules', 'rules_merge', 'A'), ('settings', 'settings_merge', 'A'),
           ('ruleset', 'ruleset_merge', 'A'), ('currencies', 'currencies_merge', 'A'),
           ('payment_methods', 'payment_methods_merge', 'A')$$,
  'merge_row() is the merge trigger of the five seeded tables, enabled ALWAYS');

------------------------------------------------------------------------------
-- A seeded key inserted again: the row is updated, nothing is added
------------------------------------------------------------------------------
SELECT lives_ok(
  $$INSERT INTO p2pay.rules (name, mode, enabled, weight, params, description)
    VALUES ('amount_limit', 'shadow', false, 0.9, '{"max_amount": 5000}', 'restored')$$,
  'a rule inserted again is accepted');
SELECT results_eq(
  $$SELECT count(*)::integer, min(mode::text), bool_and(enabled), min(weight), min(params::text), min(description)
      FROM p2pay.rules WHERE name = 'amount_limit'$$,
  $$VALUES (1, 'shadow', false, 0.9::float8, '{"max_amount": 5000}', 'restored')$$,
  'rules: the existing row takes every inserted value');
SELECT results_eq(
  $$SELECT operation, new_row->>'weight' FROM p2pay.config_history
     WHERE table_name = 'rules' ORDER BY id DESC LIMIT 1$$,
  $$VALUES ('UPDATE', '0.9')$$,
  'rules: the merge is recorded in config_history as an update');

SELECT lives_ok($$INSERT INTO p2pay.settings (review_threshold, decline_threshold) VALUES (0.2, 0.6)$$,
                'the settings row inserted again is accepted');
SELECT results_eq($$SELECT count(*)::integer, min(review_threshold), min(decline_threshold) FROM p2pay.settings$$,
                  $$VALUES (1, 0.2::float8, 0.6::float8)$$,
                  'settings: the one row takes the inserted thresholds');

SELECT lives_ok(
  $$INSERT INTO p2pay.ruleset (version, changed_at, changed_by, xact)
    VALUES (41, '2026-01-02 03:04:05+00', 'restorer', '12345')$$,
  'the ruleset row inserted again is accepted');
SELECT results_eq(
  $$SELECT count(*)::integer, min(version), bool_and(changed_by = 'restorer'), bool_and(xact IS NULL)
      FROM p2pay.ruleset$$,
  $$VALUES (1, 41::bigint, true, true)$$,
  'ruleset: the one row takes the inserted version, and its xact (another database''s) is emptied');

SELECT lives_ok($$INSERT INTO p2pay.currencies (code, name, rate_to_base) VALUES ('EUR', 'Euro (restored)', 1.25)$$,
                'a seeded currency inserted again is accepted');
SELECT results_eq($$SELECT count(*)::integer, min(name), min(rate_to_base) FROM p2pay.currencies WHERE code = 'EUR'$$,
                  $$VALUES (1, 'Euro (restored)', 1.25::numeric)$$,
                  'currencies: the existing row takes the inserted name and rate');

-- With session_replication_role = replica, as README says to restore.
SET LOCAL session_replication_role = replica;
SELECT lives_ok($$INSERT INTO p2pay.payment_methods (id, name)
                  VALUES ('00000000-0000-4000-8000-000000000001', 'Wire transfer')$$,
                'a seeded payment method inserted again, as a replica, is accepted');
SELECT results_eq($$SELECT count(*)::integer, min(name) FROM p2pay.payment_methods
                     WHERE id = '00000000-0000-4000-8000-000000000001'$$,
                  $$VALUES (1, 'Wire transfer')$$,
                  'payment_methods: the existing row is updated in replica mode too');
SELECT lives_ok($$INSERT INTO p2pay.currencies (code, name, rate_to_base) VALUES ('EUR', 'Euro', 1.08)$$,
                'a currency inserted again, as a replica, is accepted');
SELECT results_eq($$SELECT count(*)::integer, min(rate_to_base) FROM p2pay.currencies WHERE code = 'EUR'$$,
                  $$VALUES (1, 1.08::numeric)$$,
                  'currencies: the existing row is updated in replica mode too');
RESET session_replication_role;

-- A new key is inserted as it is.
INSERT INTO p2pay.currencies (code, name, rate_to_base) VALUES ('GBP', 'Pound sterling', 1.27);
SELECT results_eq($$SELECT name, rate_to_base FROM p2pay.currencies WHERE code = 'GBP'$$,
                  $$VALUES ('Pound sterling', 1.27::numeric)$$,
                  'a new currency is inserted');

------------------------------------------------------------------------------
-- Refusals, even to a superuser
------------------------------------------------------------------------------
CREATE TEMP TABLE rules (name text, mode text, enabled bool, weight float8, params jsonb, description text);
CREATE TRIGGER t_merge BEFORE INSERT ON pg_temp.rules FOR EACH ROW EXECUTE FUNCTION p2pay.merge_row('name');
SELECT throws_ok($$INSERT INTO pg_temp.rules VALUES ('amount_limit', 'active', true, 1, '{}', NULL)$$,
                 '42809', 'trigger function p2pay.merge_row() can only run on p2pay.rules, p2pay.settings, p2pay.ruleset, p2pay.currencies and p2pay.payment_methods',
                 'merge_row() refuses a table of another''s, named as p2pay''s');
CREATE TRIGGER t_merge_after AFTER INSERT ON p2pay.currencies FOR EACH ROW EXECUTE FUNCTION p2pay.merge_row('code');
SELECT throws_ok($$INSERT INTO p2pay.currencies (code, name, rate_to_base) VALUES ('CHF', 'Swiss franc', 1.1)$$,
                 '22023', 'trigger function p2pay.merge_row() must be fired BEFORE INSERT FOR EACH ROW, with key columns as arguments',
                 'merge_row() refuses to run as an AFTER trigger');
DROP TRIGGER t_merge_after ON p2pay.currencies;
-- (named to fire before settings_merge, which would skip the row)
CREATE TRIGGER a_merge_bare BEFORE INSERT ON p2pay.settings FOR EACH ROW EXECUTE FUNCTION p2pay.merge_row();
SELECT throws_ok($$INSERT INTO p2pay.settings (review_threshold, decline_threshold) VALUES (0.2, 0.6)$$,
                 '22023', 'trigger function p2pay.merge_row() must be fired BEFORE INSERT FOR EACH ROW, with key columns as arguments',
                 'merge_row() refuses to run without key columns');

SELECT * FROM finish();
ROLLBACK;
