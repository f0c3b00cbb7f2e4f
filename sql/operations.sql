-- Operating the rules: modes and shadow scoring, rule-set versions and
-- their history, the allowlist and snoozes, the review queue and resolve(),
-- and the dry run score().
CREATE EXTENSION p2pay;
SET TimeZone = 'UTC';

CREATE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE sql;
  RETURN 'accepted';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
CREATE FUNCTION u(n int) RETURNS uuid LANGUAGE sql IMMUTABLE
  AS $$ SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid $$;
CREATE FUNCTION tx(n int) RETURNS uuid LANGUAGE sql IMMUTABLE
  AS $$ SELECT ('aaaaaaaa-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid $$;

INSERT INTO p2pay.users (id, created_at) SELECT u(n), '2020-01-01' FROM generate_series(1, 9) n;
INSERT INTO p2pay.user_payment_methods SELECT u(n), '00000000-0000-4000-8000-000000000001' FROM generate_series(1, 9) n;

CREATE FUNCTION pay(t int, payer int, payee int, amount numeric) RETURNS TABLE (
  decision p2pay.decision, reasons text[], score numeric,
  shadow_decision p2pay.decision, shadow_reasons text[], shadow_score numeric, version bigint)
LANGUAGE sql AS $$
  INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency, payment_method_id, created_at)
  VALUES (tx(t), u(payer), u(payee), amount, 'USD', '00000000-0000-4000-8000-000000000001',
          '2026-03-01 10:00+00'::timestamptz + t * interval '1 minute')
  RETURNING decision, reasons, round(risk_score::numeric, 4), shadow_decision, shadow_reasons,
            round(shadow_risk_score::numeric, 4), ruleset_version
$$;

-- The installed catalogue: version 1 is 1.0's, and the update to 1.1, which
-- CREATE EXTENSION runs too, made version 2 (three rules changed, one new).
SELECT version FROM p2pay.ruleset;
SELECT version AS installed FROM p2pay.ruleset \gset
SELECT version, table_name, operation, count(*) FROM p2pay.config_history GROUP BY 1, 2, 3 ORDER BY 1, 2;

----------------------------------------------------------------------------
-- Modes.  enabled follows mode and mode follows enabled.
----------------------------------------------------------------------------
-- a payment decided while amount_limit is active, before any switch
SELECT * FROM pay(0, 9, 8, 20000);
CREATE TABLE decided_before AS
  SELECT transaction_id, risk_score, decision, reasons FROM p2pay.payments;
UPDATE p2pay.rules SET mode = 'shadow' WHERE name = 'amount_limit';
UPDATE p2pay.rules SET enabled = false WHERE name = 'round_trip';
SELECT name, mode, enabled FROM p2pay.rules WHERE name IN ('amount_limit', 'round_trip') ORDER BY name;
UPDATE p2pay.rules SET enabled = true WHERE name = 'round_trip';
UPDATE p2pay.rules SET mode = 'shadow' WHERE name = 'round_trip';
SELECT name, mode, enabled FROM p2pay.rules WHERE name IN ('amount_limit', 'round_trip') ORDER BY name;
-- changing both, they must agree
SELECT try($$UPDATE p2pay.rules SET mode = 'off', enabled = true WHERE name = 'round_trip'$$);
SELECT try($$UPDATE p2pay.rules SET mode = 'sleeping' WHERE name = 'round_trip'$$);

-- Each of those four transactions made a version, with who and what.
SELECT version FROM p2pay.ruleset;
SELECT version, table_name, operation, old_row->>'mode' AS old_mode, new_row->>'mode' AS new_mode,
       changed_by = session_user AS by_me
  FROM p2pay.config_history WHERE version > :installed ORDER BY id;

-- A shadow rule is evaluated and recorded but decides nothing.
SELECT * FROM pay(1, 1, 2, 15000);
-- With amount_limit active again the same payment is reviewed; the earlier
-- one keeps the decision it was given.
UPDATE p2pay.rules SET mode = 'active' WHERE name = 'amount_limit';
SELECT * FROM pay(2, 1, 2, 15000);
SELECT transaction_id = tx(1) AS first, decision, reasons, shadow_reasons, ruleset_version
  FROM p2pay.payments WHERE transaction_id <> tx(0) ORDER BY id;
-- switched to shadow and back, the rule changed no past decision
SELECT count(*) AS changed FROM decided_before b JOIN p2pay.payments p USING (transaction_id)
 WHERE (p.risk_score, p.decision, p.reasons) IS DISTINCT FROM (b.risk_score, b.decision, b.reasons);
SELECT count(*) AS kept FROM decided_before;

-- The rule rows as they were at each version, for reproducing a decision.
SELECT r->>'name' AS name, r->>'mode' AS mode FROM jsonb_array_elements(p2pay.rules_at(:installed)) r
 WHERE r->>'name' = 'amount_limit';
SELECT r->>'name' AS name, r->>'mode' AS mode FROM jsonb_array_elements(p2pay.rules_at(:installed + 1)) r
 WHERE r->>'name' = 'amount_limit';
SELECT jsonb_array_length(p2pay.rules_at(:installed + 4));

----------------------------------------------------------------------------
-- Lists: an allowlisted payer or payee is approved unless blocklisted; a
-- snoozed rule does not fire for the user until the snooze ends.
----------------------------------------------------------------------------
INSERT INTO p2pay.allowlist (user_id, reason) VALUES (u(3), 'payroll account');
SELECT * FROM pay(3, 3, 4, 15000);
INSERT INTO p2pay.blocklist (user_id, reason) VALUES (u(4), 'mule');
SELECT * FROM pay(4, 3, 4, 15000);
SELECT p2pay.snooze('amount_limit', u(5), now() + interval '1 day', 'known large buyer');
SELECT * FROM pay(5, 5, 6, 15000);
SELECT rule, until > now() AS future, reason FROM p2pay.snoozes;
SELECT try($$SELECT p2pay.snooze('no_such_rule', u(5), now() + interval '1 day')$$);
SELECT try($$SELECT p2pay.snooze('amount_limit', u(5), now() - interval '1 day')$$);
SELECT try($$SELECT p2pay.snooze('amount_limit', '00000000-0000-4000-8000-0000000000ff', now() + interval '1 day')$$);
-- list changes are versioned too
SELECT table_name, operation FROM p2pay.config_history
 WHERE table_name IN ('allowlist', 'blocklist', 'snoozes') ORDER BY id;

----------------------------------------------------------------------------
-- The review queue.
----------------------------------------------------------------------------
SELECT * FROM pay(6, 7, 8, 12000);
SELECT * FROM pay(7, 8, 9, 11000);
SELECT transaction_id = tx(2) AS t2, transaction_id = tx(6) AS t6, transaction_id = tx(7) AS t7, reasons
  FROM p2pay.review_queue;
SELECT p2pay.resolve(tx(6), 'approve', 'customer confirmed by phone');
SELECT p2pay.resolve(tx(7), 'decline', 'card reported stolen');
SELECT count(*) AS still_queued FROM p2pay.review_queue;
SELECT transaction_id = tx(6) AS t6, old_decision, new_decision, note, resolved_by = session_user AS by_me
  FROM p2pay.decision_log ORDER BY id;
SELECT decision, is_approved FROM p2pay.payments WHERE transaction_id IN (tx(6), tx(7)) ORDER BY id;
SELECT try($$SELECT p2pay.resolve(tx(6), 'decline', 'again')$$);
SELECT try($$SELECT p2pay.resolve(tx(99), 'approve', 'no such payment')$$);
SELECT try($$SELECT p2pay.resolve(tx(2), 'review', 'not a resolution')$$);
SELECT try($$SELECT p2pay.resolve(NULL, 'approve', 'null')$$);
SELECT count(*) AS log_rows FROM p2pay.decision_log;

----------------------------------------------------------------------------
-- The dry run gives what an insert would get now and changes nothing.
----------------------------------------------------------------------------
SELECT count(*) AS payments, (SELECT sum(out_count) FROM p2pay.account_stats) AS counted
  FROM p2pay.payments;
SELECT risk_score, decision, reasons, shadow_decision, ruleset_version
  FROM p2pay.score(u(1), u(2), 15000, 'USD', '00000000-0000-4000-8000-000000000001',
                   '2026-03-01 10:08+00');
SELECT count(*) AS payments, (SELECT sum(out_count) FROM p2pay.account_stats) AS counted
  FROM p2pay.payments;
-- the insert it previewed gets the same verdict
SELECT * FROM pay(8, 1, 2, 15000);
-- bad input is refused as an insert's would be
SELECT try($$SELECT * FROM p2pay.score(u(1), u(1), 10, 'USD', '00000000-0000-4000-8000-000000000001')$$);
SELECT try($$SELECT * FROM p2pay.score(u(1), u(2), -1, 'USD', '00000000-0000-4000-8000-000000000001')$$);
SELECT try($$SELECT * FROM p2pay.score(u(1), u(2), 10, 'XYZ', '00000000-0000-4000-8000-000000000001')$$);
SELECT try($$SELECT * FROM p2pay.score(u(1), u(2), 10, 'USD', NULL)$$);

DROP TABLE decided_before;
DROP FUNCTION pay(int, int, int, numeric), try(text), u(int), tx(int);
DROP EXTENSION p2pay;
