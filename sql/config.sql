-- Rule rows and thresholds are checked when they are written, never at
-- payment time, and a change takes effect for the very next insert.
CREATE EXTENSION p2pay;

CREATE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE sql;
  RETURN 'accepted';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- Invalid rule configuration is refused.
SELECT stmt, try(stmt) FROM (VALUES
  ($$INSERT INTO p2pay.rules (name, weight, params) VALUES ('no_such_rule', 0.5, '{}')$$),
  ($$UPDATE p2pay.rules SET name = 'amount_cap' WHERE name = 'amount_limit'$$),
  ($$UPDATE p2pay.rules SET weight = 1.5 WHERE name = 'amount_limit'$$),
  ($$UPDATE p2pay.rules SET weight = -0.1 WHERE name = 'amount_limit'$$),
  ($$UPDATE p2pay.rules SET weight = 'NaN' WHERE name = 'amount_limit'$$),
  ($$UPDATE p2pay.rules SET params = '[]' WHERE name = 'amount_limit'$$),
  ($$UPDATE p2pay.rules SET params = '{"max_amount": "lots"}' WHERE name = 'amount_limit'$$),
  ($$UPDATE p2pay.rules SET params = '{"max_amount": -1}' WHERE name = 'amount_limit'$$),
  ($$UPDATE p2pay.rules SET params = '{"max_amount": 100, "currency": "USD"}' WHERE name = 'amount_limit'$$),
  ($$UPDATE p2pay.rules SET params = '{}' WHERE name = 'amount_limit'$$),
  ($$UPDATE p2pay.rules SET params = '{"x": 1}' WHERE name = 'blocklist'$$),
  ($$UPDATE p2pay.rules SET params = params || '{"window": "-1 hour"}' WHERE name = 'payer_velocity_count'$$),
  ($$UPDATE p2pay.rules SET params = params || '{"window": "0"}' WHERE name = 'payer_velocity_count'$$),
  ($$UPDATE p2pay.rules SET params = params || '{"window": "1 month"}' WHERE name = 'payer_velocity_count'$$),
  ($$UPDATE p2pay.rules SET params = params || '{"window": "soon"}' WHERE name = 'payer_velocity_count'$$),
  ($$UPDATE p2pay.rules SET params = params || '{"window": 3600}' WHERE name = 'payer_velocity_count'$$),
  ($$UPDATE p2pay.rules SET params = params || '{"max_count": 2.5}' WHERE name = 'payer_velocity_count'$$),
  ($$UPDATE p2pay.rules SET params = params || '{"band": 1}' WHERE name = 'structuring'$$),
  ($$UPDATE p2pay.rules SET params = params || '{"factor": 0}' WHERE name = 'amount_deviation'$$),
  ($$UPDATE p2pay.rules SET enabled = NULL WHERE name = 'amount_limit'$$),
  ($$DELETE FROM p2pay.rules WHERE name = 'round_trip'$$),
  ($$TRUNCATE p2pay.rules$$),
  ($$UPDATE p2pay.settings SET review_threshold = 0.9$$),
  ($$UPDATE p2pay.settings SET decline_threshold = 1.2$$),
  ($$DELETE FROM p2pay.settings$$),
  ($$INSERT INTO p2pay.settings (singleton) VALUES (false)$$)
) AS t(stmt);

-- Every interval, count, amount and factor a rule takes is bounded, so that
-- nothing a rule computes with can overflow: a window of 213503983 days
-- once wrapped around to about 16 hours.  The detail names the bound.
CREATE FUNCTION try_detail(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  detail text;
BEGIN
  EXECUTE sql;
  RETURN 'accepted';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
  RETURN SQLSTATE || ': ' || SQLERRM || ' (' || detail || ')';
END $$;
BEGIN;
SELECT change, try_detail(format('UPDATE p2pay.rules SET params = params || %L WHERE name = %L',
                                 change, rule)) FROM (VALUES
  ('payer_velocity_amount', '{"window": "213503983 days"}'),
  ('payer_velocity_amount', '{"window": "2147483647 days"}'),
  ('payer_velocity_amount', '{"window": "3651 days"}'),
  ('payer_velocity_amount', '{"window": "3650 days 00:00:01"}'),
  ('payer_velocity_amount', '{"window": "3650 days"}'),
  ('new_account_high_amount', '{"max_age": "9999999 days"}'),
  ('dormant_reactivation', '{"idle": "3650 days"}'),
  ('payer_velocity_count', '{"max_count": 1000001}'),
  ('payer_velocity_count', '{"max_count": 1000000}'),
  ('payer_velocity_count', '{"baseline_days": 31}'),
  ('payer_velocity_count', '{"baseline_days": 30}'),
  ('payer_velocity_count', '{"baseline_factor": 1001}'),
  ('payer_velocity_count', '{"baseline_factor": 0}'),
  ('amount_limit', '{"max_amount": 1000000000000001}'),
  ('amount_limit', '{"max_amount": 1e400}'),
  ('amount_limit', '{"max_amount": 1000000000000000}'),
  ('amount_deviation', '{"factor": 1000.5}'),
  ('amount_deviation', '{"min_history": 1e20}'),
  ('payee_fan_in', '{"short_history_min_amount": -1}'),
  ('payee_fan_in', '{"short_history_min_amount": "100"}'),
  ('payer_fan_out', '{"short_history_min_amount": 50}'),
  ('amount_limit', '{"short_history_min_amount": 50}'),
  ('young_payee_high_amount', '{"max_age": "3651 days"}'),
  ('young_payee_high_amount', '{"max_age": "1 month"}')
) AS t(rule, change);
-- prune_state() reads payer_velocity_amount's window: the longest works.
SELECT hours, days FROM p2pay.prune_state();
ROLLBACK;

-- Nothing was changed by the refused statements.
SELECT count(*) AS rules, bool_and(enabled) AS all_enabled FROM p2pay.rules;
SELECT * FROM p2pay.settings;

-- A valid change is accepted, with the hint's idiom for one parameter.
UPDATE p2pay.rules SET params = params || '{"max_amount": 500}' WHERE name = 'amount_limit';
SELECT params FROM p2pay.rules WHERE name = 'amount_limit';

-- Inserting an existing rule updates it (this is how pg_restore brings
-- rule changes back after CREATE EXTENSION has seeded the catalogue).
INSERT INTO p2pay.rules (name, enabled, weight, params)
  VALUES ('amount_limit', true, 0.45, '{"max_amount": 600}');
SELECT name, weight, params FROM p2pay.rules WHERE name = 'amount_limit';
INSERT INTO p2pay.settings (review_threshold, decline_threshold) VALUES (0.35, 0.85);
SELECT review_threshold, decline_threshold FROM p2pay.settings;

-- The next insert scores under the changed rule, in the same transaction
-- and after it; a rolled-back change is forgotten.
INSERT INTO p2pay.users (id) VALUES
  ('00000000-0000-4000-8000-00000000000a'), ('00000000-0000-4000-8000-00000000000b');
INSERT INTO p2pay.user_payment_methods VALUES
  ('00000000-0000-4000-8000-00000000000a', '00000000-0000-4000-8000-000000000001');
CREATE FUNCTION pay(amount numeric) RETURNS text LANGUAGE sql AS $$
  INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
  VALUES ('00000000-0000-4000-8000-00000000000a', '00000000-0000-4000-8000-00000000000b',
          amount, 'USD', '00000000-0000-4000-8000-000000000001')
  RETURNING round(risk_score::numeric, 4) || ' ' || decision || ' ' || reasons::text
$$;
SELECT pay(10);
SELECT pay(700);
BEGIN;
UPDATE p2pay.rules SET enabled = false WHERE name = 'amount_limit';
SELECT pay(700);
ROLLBACK;
SELECT pay(700);
BEGIN;
UPDATE p2pay.rules SET weight = 0.9 WHERE name = 'amount_limit';
SELECT pay(700);
UPDATE p2pay.settings SET decline_threshold = 0.95;
SELECT pay(700);
COMMIT;
SELECT pay(700);

-- A score equal to a threshold reaches it, although 1 - (1 - 0.2) is not
-- exactly 0.2 in binary floating point.
UPDATE p2pay.rules SET weight = 0.2 WHERE name = 'amount_limit';
UPDATE p2pay.settings SET review_threshold = 0.2;
SELECT pay(700);
SELECT risk_score = 0.2 AS exact FROM p2pay.payments ORDER BY id DESC LIMIT 1;

DROP FUNCTION try(text), pay(numeric);
DROP EXTENSION p2pay;
