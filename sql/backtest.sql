-- p2pay.backtest(from, to, rules): replaying stored payments through the
-- rules in memory.  A history that fires every rule is inserted through the
-- trigger in created_at order, part of it before the range replayed so that
-- windows, first-seen pairs, running means, the previous payment, what a
-- payer received, the legs of loops and each account's normal (its days of
-- history) reach across its start; then the
-- replay under the current rules must match what the trigger decided, rule
-- by rule.
CREATE EXTENSION p2pay;
SET TimeZone = 'UTC';
SET IntervalStyle = 'postgres';
SET DateStyle = 'ISO, YMD';

CREATE FUNCTION u(n int) RETURNS uuid LANGUAGE sql IMMUTABLE
  AS $$ SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid $$;
CREATE FUNCTION method(n int) RETURNS uuid LANGUAGE sql IMMUTABLE
  AS $$ SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid $$;
CREATE FUNCTION tx(n int) RETURNS uuid LANGUAGE sql IMMUTABLE
  AS $$ SELECT ('00000000-0000-4000-9000-' || lpad(n::text, 12, '0'))::uuid $$;
-- The SQLSTATE and message of a statement's error.
CREATE FUNCTION try(statement text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE statement;
  RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
-- Everything p2pay keeps, as one checksum.
CREATE FUNCTION fingerprint() RETURNS text LANGUAGE sql AS $$
  SELECT md5(concat_ws('|',
    (SELECT string_agg(p::text, ',' ORDER BY p.id) FROM p2pay.payments p),
    (SELECT string_agg(a::text, ',' ORDER BY a.user_id) FROM p2pay.account_stats a),
    (SELECT string_agg(s::text, ',' ORDER BY s.payer_id, s.payee_id) FROM p2pay.pair_stats s),
    (SELECT string_agg(d::text, ',' ORDER BY d.user_id, d.day) FROM p2pay.account_daily d),
    (SELECT string_agg(r::text, ',' ORDER BY r.name) FROM p2pay.rules r),
    (SELECT string_agg(r::text, ',') FROM p2pay.ruleset r),
    (SELECT string_agg(c::text, ',' ORDER BY c.id) FROM p2pay.config_history c),
    (SELECT string_agg(d::text, ',' ORDER BY d.id) FROM p2pay.decision_log d),
    (SELECT string_agg(f::text, ',' ORDER BY f.transaction_id) FROM p2pay.fraud_labels f)))
$$;

-- 200 users opened long ago with Bank transfer registered; user 201 opened
-- six days before the range.
\set F '''2026-03-02 10:00:00+00'''::timestamptz
\set TO '''2026-03-04 10:00:00+00'''::timestamptz
INSERT INTO p2pay.users (id, created_at)
  SELECT u(n), '2020-01-01' FROM generate_series(1, 200) n;
INSERT INTO p2pay.users (id, created_at) VALUES (u(201), :F - interval '6 days');
INSERT INTO p2pay.user_payment_methods (user_id, payment_method_id)
  SELECT u(n), method(1) FROM generate_series(1, 201) n;

-- The lists, as they stand while the history is inserted and afterwards.
INSERT INTO p2pay.blocklist (user_id, reason) VALUES (u(35), 'confirmed mule');
INSERT INTO p2pay.blocklist (user_id, reason, expires_at)
  VALUES (u(37), 'under investigation', :F + interval '1 day');
INSERT INTO p2pay.allowlist (user_id, reason) VALUES (u(39), 'payroll account');
SELECT p2pay.snooze('amount_limit', u(41), '2099-01-01', 'known large payer');

-- The history, one scenario per group of users.  The range replayed is
-- [F, TO); what lies before F is history, what lies at or after TO is not
-- replayed.
CREATE TEMP TABLE plan (seq int, payer int, payee int, amount numeric,
                        at timestamptz, cur char(3), meth int, scenario text);
INSERT INTO plan (seq, payer, payee, amount, at, cur, meth, scenario)
SELECT row_number() OVER (), payer, payee, amount, at, coalesce(cur, 'USD'), coalesce(meth, 1), scenario
  FROM (VALUES
  -- amount_limit: the pair was seen before F, so only the limit fires (an
  -- analyst later declines the review)
  (1, 2, 100, :F - interval '2 hours', NULL, NULL, 'amount_limit'),
  (1, 2, 12000, :F + interval '1 hour', NULL, NULL, 'amount_limit'),
  -- payer_velocity_count: 7 payments in the hour before F, 5 from F on (the
  -- first exactly at F); the 11th and 12th fire
  (3, 4, 10, :F - interval '35 minutes', NULL, NULL, 'velocity_count'),
  (3, 4, 10, :F - interval '30 minutes', NULL, NULL, 'velocity_count'),
  (3, 4, 10, :F - interval '25 minutes', NULL, NULL, 'velocity_count'),
  (3, 4, 10, :F - interval '20 minutes', NULL, NULL, 'velocity_count'),
  (3, 4, 10, :F - interval '15 minutes', NULL, NULL, 'velocity_count'),
  (3, 4, 10, :F - interval '10 minutes', NULL, NULL, 'velocity_count'),
  (3, 4, 10, :F - interval '5 minutes', NULL, NULL, 'velocity_count'),
  (3, 4, 10, :F, NULL, NULL, 'velocity_count'),
  (3, 4, 10, :F + interval '5 minutes', NULL, NULL, 'velocity_count'),
  (3, 4, 10, :F + interval '10 minutes', NULL, NULL, 'velocity_count'),
  (3, 4, 10, :F + interval '15 minutes', NULL, NULL, 'velocity_count'),
  (3, 4, 10, :F + interval '20 minutes', NULL, NULL, 'velocity_count'),
  -- payer_velocity_amount: the 5000 lies exactly 24 hours before the 2000,
  -- outside its window, so the 2000 makes 20000 and does not fire; the 0.01
  -- after it does
  (5, 6, 5000, :F - interval '23 hours', NULL, NULL, 'velocity_amount'),
  (5, 6, 9000, :F - interval '22 hours', NULL, NULL, 'velocity_amount'),
  (5, 6, 9000, :F - interval '2 hours', NULL, NULL, 'velocity_amount'),
  (5, 6, 2000, :F + interval '1 hour', NULL, NULL, 'velocity_amount'),
  (5, 6, 0.01, :F + interval '1 hour 1 minute', NULL, NULL, 'velocity_amount'),
  -- the same limit in decimal: 8873.03 + 9866.2 + 598.48 + 662.29 is exactly
  -- 20000 and does not fire (a float8 running sum would make it
  -- 20000.000000000004 and fire)
  (7, 8, 8873.03, :F - interval '20 hours', NULL, NULL, 'decimal_sum'),
  (7, 8, 9866.2, :F - interval '10 hours', NULL, NULL, 'decimal_sum'),
  (7, 8, 598.48, :F + interval '2 hours', NULL, NULL, 'decimal_sum'),
  (7, 8, 662.29, :F + interval '3 hours 30 minutes', NULL, NULL, 'decimal_sum'),
  -- structuring: three payments in [9000, 10000) within 24 hours (their
  -- total passes payer_velocity_amount too)
  (22, 23, 9500, :F - interval '3 hours', NULL, NULL, 'structuring'),
  (22, 23, 9600, :F - interval '2 hours', NULL, NULL, 'structuring'),
  (22, 23, 9700, :F + interval '1 hour', NULL, NULL, 'structuring'),
  -- new_payee_high_amount (24 is known to p2pay from a payment 40 days
  -- before: min_known_days 30), new_account_high_amount
  (24, 34, 10, :F - interval '40 days', NULL, NULL, 'new_payee'),
  (24, 25, 1500, :F + interval '1 hour', NULL, NULL, 'new_payee'),
  (201, 26, 1500, :F + interval '2 hours', NULL, NULL, 'new_account'),
  -- round_trip: 28 paid 27 1000 two hours before
  (27, 28, 1000, :F - interval '2 hours', NULL, NULL, 'round_trip'),
  (28, 27, 1000, :F + interval '1 hour', NULL, NULL, 'round_trip'),
  -- unregistered_method: Cash
  (29, 30, 10, :F + interval '1 hour', NULL, 4, 'unregistered'),
  -- amount_deviation: five earlier payments of 100, then 600
  (31, 32, 100, :F - interval '5 days', NULL, NULL, 'deviation'),
  (31, 32, 100, :F - interval '4 days', NULL, NULL, 'deviation'),
  (31, 32, 100, :F - interval '3 days', NULL, NULL, 'deviation'),
  (31, 32, 100, :F - interval '2 days', NULL, NULL, 'deviation'),
  (31, 32, 100, :F - interval '1 day', NULL, NULL, 'deviation'),
  (31, 32, 600, :F + interval '1 hour', NULL, NULL, 'deviation'),
  -- dormant_reactivation: previous payment 100 days before
  (33, 34, 10, :F - interval '100 days', NULL, NULL, 'dormant'),
  (33, 34, 1500, :F + interval '1 hour', NULL, NULL, 'dormant'),
  -- blocklist: 35 listed for good, 37 until F + 1 day
  (36, 35, 10, :F + interval '1 hour', NULL, NULL, 'blocklist'),
  (37, 38, 10, :F + interval '2 hours', NULL, NULL, 'blocklist'),
  (37, 38, 10, :F + interval '1 day 1 hour', NULL, NULL, 'blocklist'),
  -- allowlist: approved whatever fires; snooze: amount_limit does not fire
  (39, 40, 15000, :F + interval '1 hour', NULL, NULL, 'allowlist'),
  (41, 42, 15000, :F + interval '1 hour', NULL, NULL, 'snooze'),
  -- in the base currency: 9300 EUR is 10044 USD
  (45, 46, 9300, :F + interval '1 hour', 'EUR', NULL, 'currency'),
  -- outside the range: at TO, and after it
  (43, 44, 20000, :TO, NULL, NULL, 'after'),
  (3, 4, 10, :TO + interval '1 hour', NULL, NULL, 'after')
  ) AS v (payer, payee, amount, at, cur, meth, scenario);
-- payer_fan_out: 9 pays 11 payees 55 minutes apart on its first day (no
-- history: the absolute limit decides); the 11th, after F, fires
INSERT INTO plan (seq, payer, payee, amount, at, cur, meth, scenario)
  SELECT 100 + k, 9, 10 + k, 10, :F - interval '9 hours' + k * interval '55 minutes', 'USD', 1, 'fan_out'
    FROM generate_series(0, 10) k;
-- payee_fan_in: 21 payers pay 100 (short_history_min_amount) into 21, 28
-- minutes apart on its first day; the 21st, after F, fires
INSERT INTO plan (seq, payer, payee, amount, at, cur, meth, scenario)
  SELECT 200 + k, 100 + k, 21, 100, :F - interval '9 hours' + k * interval '28 minutes', 'USD', 1, 'fan_in'
    FROM generate_series(0, 20) k;
-- The money-flow rules, their facts reaching back before F.  pass_through:
-- five payers (50..54) pay 400 each into 55 before F; after F, 55 moves
-- 1000 out, exactly half of the 2000: it fires.  62 is paid the same by
-- 57..61, but 57's payment lies exactly 24 hours before 62's 1000, outside
-- the window: four payers are not enough.
INSERT INTO plan (seq, payer, payee, amount, at, cur, meth, scenario)
  SELECT 300 + k, 50 + k, 55, 400, :F - interval '5 hours' + k * interval '1 hour', 'USD', 1, 'mule'
    FROM generate_series(0, 4) k;
INSERT INTO plan (seq, payer, payee, amount, at, cur, meth, scenario) VALUES
  (305, 55, 56, 1000, :F + interval '2 hours 15 minutes', 'USD', 1, 'mule'),
  (310, 57, 62, 400, :F + interval '2 hours 20 minutes' - interval '24 hours', 'USD', 1, 'mule_window');
INSERT INTO plan (seq, payer, payee, amount, at, cur, meth, scenario)
  SELECT 311 + k, 58 + k, 62, 400, :F - interval '4 hours' + k * interval '1 hour', 'USD', 1, 'mule_window'
    FROM generate_series(0, 3) k;
INSERT INTO plan (seq, payer, payee, amount, at, cur, meth, scenario) VALUES
  (315, 62, 63, 1000, :F + interval '2 hours 20 minutes', 'USD', 1, 'mule_window');
-- cycle, every leg 1000 (min_amount) and all but the last before F: the
-- loop 64 -> 65 -> 66 -> 64 and the loop of 4 67 -> 68 -> 69 -> 70 -> 67
-- (whose leg 68 -> 69 joins two accounts with no payment in the range)
-- fire; the loop of 4 71 -> ... -> 74 -> 71 with a leg of 999.99 does not.
INSERT INTO plan (seq, payer, payee, amount, at, cur, meth, scenario)
  SELECT seq, payer, payee, amount, :F + at, 'USD', 1, scenario
    FROM (VALUES (320, 64, 65, 1000, interval '-2 hours', 'cycle_3'),
                 (321, 65, 66, 1000, interval '-1 hour', 'cycle_3'),
                 (322, 66, 64, 1000, interval '2 hours 30 minutes', 'cycle_3'),
                 (330, 67, 68, 1000, interval '-3 hours', 'cycle_4'),
                 (331, 68, 69, 1000, interval '-2 hours', 'cycle_4'),
                 (332, 69, 70, 1000, interval '-1 hour', 'cycle_4'),
                 (333, 70, 67, 1000, interval '2 hours 45 minutes', 'cycle_4'),
                 (340, 71, 72, 1000, interval '-3 hours', 'cycle_short_leg'),
                 (341, 72, 73, 999.99, interval '-2 hours', 'cycle_short_leg'),
                 (342, 73, 74, 1000, interval '-1 hour', 'cycle_short_leg'),
                 (343, 74, 71, 1000, interval '2 hours 50 minutes', 'cycle_short_leg'))
         AS v (seq, payer, payee, amount, at, scenario);
-- Each account's normal: payer_velocity_count, payer_fan_out and
-- payee_fan_in compare with its totals per UTC day, with more room while
-- it has fewer than 7 days of history (D is the start of the day of F).
-- The shop 1000 is paid 12 by the same 25 customers (1100..1124) every day
-- from ten days before F through the range, twice on the day of F (before
-- F and after it): under short_history_min_amount in its first seven days,
-- within its normal after them, it never fires.  The personal account
-- 1001 was paid by one friend a day for the week before F; in the range 25
-- strangers (1130..1154) pay it, and the 21st to the 25th fire.  The
-- payroll account 1002 pays the same 12 people (1160..1171) ten minutes
-- apart every day: on its first day the 11th and 12th fire payer_fan_out,
-- and after that, compared with the days it has, nothing.
-- young_payee_high_amount: 1301 pays 2000 to 1300, opened 30 days before.
\set D '''2026-03-02 00:00:00+00'''::timestamptz
INSERT INTO p2pay.users (id, created_at)
  SELECT u(n), '2020-01-01' FROM generate_series(1000, 1199) n
  UNION ALL VALUES (u(1300), :F - interval '30 days'), (u(1301), '2020-01-01');
INSERT INTO p2pay.user_payment_methods (user_id, payment_method_id)
  SELECT u(n), method(1) FROM generate_series(1000, 1199) n
  UNION ALL VALUES (u(1301), method(1));
INSERT INTO plan (seq, payer, payee, amount, at, cur, meth, scenario)
  SELECT 10000 + (d + 10) * 100 + c, 1100 + c, 1000, 12,
         :D + d * interval '1 day' + interval '12 hours' + c * interval '1 minute', 'USD', 1, 'shop'
    FROM generate_series(-10, 1) d, generate_series(0, 24) c
  UNION ALL
  SELECT 12000 + c, 1100 + c, 1000, 12, :D + interval '8 hours' + c * interval '1 minute',
         'USD', 1, 'shop'
    FROM generate_series(0, 24) c
  UNION ALL
  SELECT 13000 + d, 1200 + d, 1001, 20, :D + d * interval '1 day' + interval '9 hours',
         'USD', 1, 'personal'
    FROM generate_series(-7, -1) d
  UNION ALL
  SELECT 13100 + n, 1130 + n, 1001, 12, :D + interval '13 hours' + n * interval '1 minute',
         'USD', 1, 'personal'
    FROM generate_series(0, 24) n
  UNION ALL
  SELECT 14000 + (d + 10) * 100 + c, 1002, 1160 + c, 12,
         :D + d * interval '1 day' + interval '14 hours' + c * interval '10 minutes', 'USD', 1, 'payroll'
    FROM generate_series(-10, 1) d, generate_series(0, 11) c
  UNION ALL
  VALUES (16000, 1301, 1300, 2000, :F + interval '5 hours', 'USD', 1, 'young_payee');

-- Through the trigger, in created_at order.
INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency,
                            payment_method_id, created_at)
  SELECT tx(seq), u(payer), u(payee), amount, cur, method(meth), at
    FROM plan ORDER BY at, seq;

-- What the trigger decided in the range.
SELECT pl.scenario, p.amount, p.created_at - :F AS after_from, p.decision, p.reasons
  FROM p2pay.payments p JOIN plan pl ON tx(pl.seq) = p.transaction_id
 WHERE p.created_at >= :F AND p.created_at < :TO AND p.reasons <> '{}'
 ORDER BY p.created_at, p.id;

-- The money-flow payments after F: the mule's and the two loops' fire, the
-- near misses' don't.
SELECT pl.scenario, p.amount, p.created_at - :F AS after_from, p.decision, p.reasons
  FROM p2pay.payments p JOIN plan pl ON tx(pl.seq) = p.transaction_id
 WHERE pl.seq BETWEEN 300 AND 399 AND p.created_at >= :F
 ORDER BY p.created_at, p.id;

-- The accounts with a normal: before F, the payroll's payees past the 10th
-- on its first day fired; in the range only the personal account's
-- strangers past the 20th do.
SELECT pl.scenario, p.created_at >= :F AS in_range, count(*) AS payments,
       count(*) FILTER (WHERE 'payee_fan_in' = ANY (p.reasons)) AS fan_in,
       count(*) FILTER (WHERE 'payer_fan_out' = ANY (p.reasons)) AS fan_out,
       count(*) FILTER (WHERE 'payer_velocity_count' = ANY (p.reasons)) AS velocity_count
  FROM p2pay.payments p JOIN plan pl ON tx(pl.seq) = p.transaction_id
 WHERE pl.scenario IN ('shop', 'personal', 'payroll') AND p.created_at < :TO
 GROUP BY 1, 2 ORDER BY 1, 2;

-- The two payments whose totals reach 20000 exactly fired nothing.
SELECT pl.scenario, p.amount, p.reasons
  FROM p2pay.payments p JOIN plan pl ON tx(pl.seq) = p.transaction_id
 WHERE pl.scenario IN ('velocity_amount', 'decimal_sum') AND p.created_at >= :F
 ORDER BY p.created_at, p.id;

-- An analyst declines the amount_limit review: decided at the time is still
-- review (decision_log's old_decision).
SELECT p2pay.resolve(tx(seq), 'decline', 'confirmed with the bank')
  FROM plan WHERE scenario = 'amount_limit' AND amount = 12000;
SELECT p.decision, d.old_decision, d.new_decision
  FROM plan pl JOIN p2pay.payments p ON p.transaction_id = tx(pl.seq)
  JOIN p2pay.decision_log d ON d.transaction_id = p.transaction_id;

-- (1) The replay under the current rules matches the trigger, rule by rule
-- and overall; every rule fired in the range.
SELECT rule, payments, fired, fired_at_time, would_review, reviewed_at_time,
       would_decline, declined_at_time,
       (fired, would_review, would_decline) = (fired_at_time, reviewed_at_time, declined_at_time)
         AND fired > 0 AS matches
  FROM p2pay.backtest(:F, :TO);
-- no labels yet: recall is null, precision 0 where anything fired
SELECT rule, labelled_fraud, fired_on_fraud, precision, recall
  FROM p2pay.backtest(:F, :TO) WHERE rule IN ('amount_limit', 'overall');

-- Every range whose edges cut the history matches too; the one of a second
-- replays only the 662.29 that brings decimal_sum to 20000.  One starts
-- after the shop's first customers on the day of F (the first part of that
-- day is history, its figures built from the payments), one in the
-- shop's and the payroll's fourth day of history.
SELECT f AS "from", t AS "to", count(*) AS rules,
       bool_and((fired, would_review, would_decline) = (fired_at_time, reviewed_at_time, declined_at_time)) AS matches,
       max(payments) AS payments
  FROM (VALUES (:F - interval '200 days', :TO + interval '1 day'),
               (:F + interval '10 minutes', :F + interval '3 hours'),
               (:F + interval '1 hour', :F + interval '1 hour 1 minute'),
               (:F + interval '3 hours 30 minutes', :F + interval '3 hours 30 minutes 1 second'),
               (:F + interval '1 day', :TO),
               (:D + interval '8 hours 10 minutes', :TO),
               (:D - interval '4 days' + interval '12 hours 5 minutes', :TO),
               ('-infinity', 'infinity')) AS r (f, t),
       LATERAL p2pay.backtest(f, t) b
 GROUP BY f, t ORDER BY f, t;

-- (2) A tighter amount_limit fires on the 9700 of structuring as well.
SELECT rule, fired, fired_at_time, would_review, would_decline
  FROM p2pay.backtest(:F, :TO, '[{"name": "amount_limit", "params": {"max_amount": 5000}}]')
 WHERE rule IN ('amount_limit', 'overall');
-- The money-flow facts are the replay's own: with min_payers 4 the mule
-- whose fifth payer fell out of the window fires too, and with loops of 3
-- only the loop of 4 does not.
SELECT rule, fired, fired_at_time, would_review, reviewed_at_time
  FROM p2pay.backtest(:F, :TO, '[{"name": "pass_through", "params": {"min_payers": 4}},
                                 {"name": "cycle", "params": {"max_length": 3}}]')
 WHERE rule IN ('pass_through', 'cycle', 'overall');
-- The normals are the replay's own.  Held to the absolute limits alone
-- (baseline_factor 0), all the shop's 50 payments in the range (25 payers
-- in 24 hours) and all the payroll's 24 (12 payees) fire too.  Asking for
-- 11 days of history: the shop, the payroll (10 days on the day of F) and
-- the personal account (7) are short of it, so payee_fan_in looks only at
-- payments of 100 or more (theirs are of 12 and 20), and the payroll's
-- payees stay inside 11/10 times its room: only the fan_in and fan_out
-- scenarios fire.  Asking for 8: the shop and the payroll have a full
-- normal and stay silent, and the personal account's strangers pay 12.
SELECT b.params, rule, fired, fired_at_time
  FROM (VALUES ('{"baseline_factor": 0}'), ('{"baseline_days": 11}'),
               ('{"baseline_days": 8}')) AS b (params),
       LATERAL p2pay.backtest(:F, :TO,
         jsonb_build_array(jsonb_build_object('name', 'payee_fan_in', 'params', b.params::jsonb),
                           jsonb_build_object('name', 'payer_fan_out', 'params', b.params::jsonb)))
 WHERE rule IN ('payer_fan_out', 'payee_fan_in')
 ORDER BY 1, 2;
-- A rule in shadow mode still fires but decides nothing; one switched off
-- has no row.
SELECT rule, fired, would_review, would_decline
  FROM p2pay.backtest(:F, :TO, '[{"name": "amount_limit", "mode": "shadow"},
                                 {"name": "blocklist", "mode": "off"}]')
 WHERE rule IN ('amount_limit', 'blocklist', 'overall');

-- (3) Fraud labels.  In the range: the 12000 of amount_limit (review), the
-- round trip (review) and the new payee's 1500 (approved) are fraud, the
-- Cash payment is not; the history's 1000 before F is outside the range.
INSERT INTO p2pay.fraud_labels (transaction_id, is_fraud, source)
  SELECT tx(pl.seq), l.is_fraud, l.source
    FROM plan pl
    JOIN (VALUES ('amount_limit', 1, 12000, true, 'chargeback'),
                 ('round_trip', 27, 1000, true, 'confirmed'),
                 ('round_trip', 28, 1000, true, 'confirmed'),
                 ('new_payee', 24, 1500, true, 'chargeback'),
                 ('unregistered', 29, 10, false, 'cleared'))
         AS l (scenario, payer, amount, is_fraud, source)
      ON (pl.scenario, pl.payer, pl.amount) = (l.scenario, l.payer, l.amount);
-- Expected: labelled_fraud 3 on every row.  amount_limit fired 3 times (the
-- 12000, the allowlisted 15000, the 10044 in EUR), once on fraud: precision
-- 1/3, recall 1/3.  round_trip fired once, on fraud: precision 1, recall
-- 1/3.  new_payee_high_amount fired once, on the 1500 (fraud): precision
-- 1 (the range's other first large payments are by payers p2pay has known
-- for less than 30 days).  unregistered_method fired on the Cash payment
-- only: precision 0, recall 0.  Overall 2 flagged payments are fraud (the
-- new payee's was approved): recall 2/3, precision 2 / flagged (20 reviewed
-- and 2 declined: 2/22).
SELECT rule, fired, labelled_fraud, fired_on_fraud,
       round(precision::numeric, 4) AS precision, round(recall::numeric, 4) AS recall
  FROM p2pay.backtest(:F, :TO)
 WHERE rule IN ('amount_limit', 'round_trip', 'new_payee_high_amount', 'unregistered_method', 'overall');
SELECT b.labelled_fraud = 3 AND b.fired_on_fraud = 2
       AND b.precision = 2.0 / (b.would_review + b.would_decline)
       AND b.recall = 2.0 / 3 AS overall_as_expected,
       a.precision = 1.0 / 3 AND a.recall = 1.0 / 3 AS amount_limit_as_expected,
       r.precision = 1 AND r.recall = 1.0 / 3 AS round_trip_as_expected
  FROM p2pay.backtest(:F, :TO) b, p2pay.backtest(:F, :TO) a, p2pay.backtest(:F, :TO) r
 WHERE b.rule = 'overall' AND a.rule = 'amount_limit' AND r.rule = 'round_trip';
-- a rule that fires nowhere has a null precision
SELECT rule, fired, precision, recall
  FROM p2pay.backtest(:F, :TO, '[{"name": "amount_limit", "params": {"max_amount": 1000000}}]')
 WHERE rule = 'amount_limit';

-- It writes nothing: no transaction id is taken, and everything p2pay
-- keeps is as it was.
BEGIN;
SELECT fingerprint() AS before \gset
SELECT count(*) FROM p2pay.backtest(:F, :TO);
SELECT count(*) FROM p2pay.backtest('-infinity', 'infinity',
  '[{"name": "payer_velocity_count", "params": {"max_count": 1, "window": "30 days"}}]');
SELECT pg_current_xact_id_if_assigned() IS NULL AS no_transaction_id,
       fingerprint() = :'before' AS unchanged;
COMMIT;

-- (4) The current rules change; the replay under them differs from what
-- was decided (amount_limit at 5000 also fires on the 9700 of structuring,
-- which is now declined; round_trip is off and has no row), and the rules as
-- installed (version 1) reproduce it again.
UPDATE p2pay.rules SET params = '{"max_amount": 5000}' WHERE name = 'amount_limit';
UPDATE p2pay.rules SET mode = 'off' WHERE name = 'round_trip';
SELECT rule, fired, fired_at_time, would_review, reviewed_at_time,
       would_decline, declined_at_time
  FROM p2pay.backtest(:F, :TO)
 WHERE (fired, would_review, would_decline) <> (fired_at_time, reviewed_at_time, declined_at_time);
SELECT rule, fired, fired_at_time, would_review, reviewed_at_time,
       would_decline, declined_at_time,
       (fired, would_review, would_decline) = (fired_at_time, reviewed_at_time, declined_at_time) AS matches
  FROM p2pay.backtest(:F, :TO, p2pay.rules_at(1));

-- (5) Errors: nothing is replayed.
SELECT * FROM p2pay.backtest(NULL, :TO);
SELECT * FROM p2pay.backtest(:F, :F);
SELECT s AS statement, try(s) AS error
  FROM (VALUES
    ('SELECT * FROM p2pay.backtest(NULL, now())'),
    ('SELECT * FROM p2pay.backtest(now(), NULL)'),
    ('SELECT * FROM p2pay.backtest(now(), now())'),
    ('SELECT * FROM p2pay.backtest(now(), now() - interval ''1 day'')'),
    ('SELECT * FROM p2pay.backtest(''infinity'', ''infinity'')'),
    ('SELECT * FROM p2pay.backtest(now() - interval ''1 day'', now(), ''{"name": "amount_limit"}'')'),
    ('SELECT * FROM p2pay.backtest(now() - interval ''1 day'', now(), ''null'')'),
    ('SELECT * FROM p2pay.backtest(now() - interval ''1 day'', now(), ''[42]'')'),
    ('SELECT * FROM p2pay.backtest(now() - interval ''1 day'', now(), ''[{"mode": "off"}]'')'),
    ('SELECT * FROM p2pay.backtest(now() - interval ''1 day'', now(), ''[{"name": "no_such_rule"}]'')'),
    ('SELECT * FROM p2pay.backtest(now() - interval ''1 day'', now(), ''[{"name": "amount_limit", "mode": "loud"}]'')'),
    ('SELECT * FROM p2pay.backtest(now() - interval ''1 day'', now(), ''[{"name": "amount_limit", "weight": 2}]'')'),
    ('SELECT * FROM p2pay.backtest(now() - interval ''1 day'', now(), ''[{"name": "amount_limit", "params": {"max_amt": 1}}]'')'),
    ('SELECT * FROM p2pay.backtest(now() - interval ''1 day'', now(), ''[{"name": "amount_limit", "params": {"max_amount": -1}}]'')'),
    ('SELECT * FROM p2pay.backtest(now() - interval ''1 day'', now(), ''[{"name": "structuring", "params": {"window": "1 month"}}]'')'),
    ('SELECT * FROM p2pay.backtest(now() - interval ''1 day'', now(), ''[{"name": "amount_limit", "colour": "red"}]'')')
  ) AS t (s);

-- (6) Payment by payment: backtest_payments() replays the same payments in
-- the same order.  Under the rules that scored them (version 1) every
-- payment gets what the trigger gave it; under the rules as changed in (4)
-- the payments listed are those the change decides otherwise.
SELECT count(*) AS payments,
       count(*) FILTER (WHERE (reasons, shadow_reasons, risk_score, decision,
                               shadow_risk_score, shadow_decision)
                              IS DISTINCT FROM
                              (reasons_at_time, shadow_reasons_at_time, risk_score_at_time,
                               decision_at_time, shadow_risk_score_at_time,
                               shadow_decision_at_time)) AS differing
  FROM p2pay.backtest_payments(:F, :TO, p2pay.rules_at(1));
SELECT (SELECT count(*) FROM p2pay.backtest_payments(:F, :TO))
       = (SELECT payments FROM p2pay.backtest(:F, :TO) WHERE rule = 'overall') AS same_payments;
SELECT p.amount, b.reasons_at_time, b.decision_at_time, b.reasons, b.decision
  FROM p2pay.backtest_payments(:F, :TO) b
  JOIN p2pay.payments p USING (transaction_id)
 WHERE (b.reasons, b.decision) IS DISTINCT FROM (reasons_at_time, decision_at_time)
 ORDER BY b.created_at, p.id;
SELECT * FROM p2pay.backtest_payments(NULL, :TO);
SELECT * FROM p2pay.backtest_payments(:F, :F);
SELECT has_function_privilege('public', 'p2pay.backtest_payments(timestamptz, timestamptz, jsonb)',
                              'EXECUTE') AS public_may_run;

DROP TABLE plan;
DROP FUNCTION u(int), method(int), tx(int), try(text), fingerprint();
DROP EXTENSION p2pay;
