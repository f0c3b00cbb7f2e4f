/*
 * bench/plpgsql_check.sql: does the hand-written PL/pgSQL trigger
 * (bench/plpgsql_rules.sql) fire the same rules as p2pay's C trigger?
 *
 * Run it in a scratch database where CREATE EXTENSION p2pay has been done:
 *
 *   psql -X -v ON_ERROR_STOP=1 -f bench/plpgsql_check.sql
 *
 * It loads plpgsql_rules.sql, generates a few hundred users and a few
 * thousand payments over 120 days (deterministically: the same data every
 * run), with patterns that make every rule fire: bursts, fan-out, fan-in
 * into mule accounts and their cash-out, large and near-threshold amounts,
 * new accounts, round trips, loops of three and four accounts, sleepers,
 * blocklisted users, unregistered methods; and accounts whose normal is
 * high (a shop, a payroll) so that the comparison with the normal is
 * exercised too.  The payments are inserted in created_at order once
 * through p2pay's trigger and once, after TRUNCATE p2pay.payments, through
 * the PL/pgSQL one; it prints per rule how many payments each flagged and
 * on how many they disagree, then the payments whose reasons differ.
 * Everything it creates lives in schema bench_check and is removed when it
 * runs again; it refuses to run if p2pay.payments holds other payments,
 * since it truncates the table.
 *
 * Where the two may legitimately differ:
 *
 * - cycle: p2pay follows at most 32 accounts out of each account on the
 *   way round (the lowest ids, see docs/rules.md); the hand-written
 *   join follows them all.  The "cycle_hub" pattern pays 40 accounts from
 *   the loop's second account and closes the loop through the one with the
 *   highest id: the PL/pgSQL trigger flags it, p2pay does not.
 * - payee_fan_in, payer_fan_out, payer_velocity_count: p2pay stops
 *   counting once the rule is decided (past the absolute limit and past
 *   baseline_factor times the normal); the hand-written queries count the
 *   whole window.  The "shop_spike" (normal 10 payers a day, then 36 in a
 *   day) and "payroll_spike" (normal 12 payees a day, then 40 in two
 *   hours) patterns check that both flag the payments past 3 times the
 *   normal.
 * - pass_through: p2pay sums what at most 200 payers paid in; no account
 *   here has that many payers in a day, so the two agree.
 * - The normal (velocity, fan-out, fan-in): p2pay counts it from
 *   account_daily as payments, distinct payees and distinct payers per UTC
 *   day over the 30 days before the payment's day, divided by the days
 *   since the account's first payment (at most 30); the hand-written
 *   version counts the same thing from the payments, so with payments
 *   replayed in created_at order the two agree.  They would part when
 *   payments arrive out of order (p2pay's "new payee today" is decided when
 *   the payment is inserted) or when a rate in currencies changes (p2pay
 *   keeps amount_base from insert time, the view converts at query time).
 * - Comparisons at exact equality (a count equal to 3 times the normal,
 *   an amount equal to 5 times the mean): p2pay compares in float8, the
 *   hand-written version in numeric.
 */

\set ON_ERROR_STOP 1
SET client_min_messages = warning;
\o /dev/null
\ir plpgsql_rules.sql

SET max_parallel_workers_per_gather = 0;   -- the same random() sequence every run

------------------------------------------------------------------------------
-- A clean slate: remove what an earlier run left
------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION pg_temp.u(i int) RETURNS uuid
  LANGUAGE sql IMMUTABLE AS $$ SELECT md5('bench_check user ' || i)::uuid $$;
CREATE OR REPLACE FUNCTION pg_temp.m(i int) RETURNS uuid
  LANGUAGE sql IMMUTABLE AS $$ SELECT ('00000000-0000-4000-8000-00000000000' || i)::uuid $$;
-- day d of the generated history, which starts on 2024-01-01 UTC
CREATE OR REPLACE FUNCTION pg_temp.at(d float8) RETURNS timestamptz
  LANGUAGE sql IMMUTABLE AS $$ SELECT '2024-01-01 00:00:00+00'::timestamptz + d * interval '1 day' $$;

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM p2pay.payments p
              WHERE p.payer_id NOT IN (SELECT pg_temp.u(i) FROM generate_series(1, 500) i)) THEN
    RAISE EXCEPTION 'p2pay.payments holds payments this check did not make'
      USING HINT = 'Run the check in a scratch database: it truncates p2pay.payments.';
  END IF;
END $$;

SELECT bench.use_p2pay();
TRUNCATE p2pay.payments;
DELETE FROM p2pay.blocklist WHERE user_id IN (SELECT pg_temp.u(i) FROM generate_series(1, 500) i);
DELETE FROM p2pay.user_payment_methods WHERE user_id IN (SELECT pg_temp.u(i) FROM generate_series(1, 500) i);
DELETE FROM p2pay.users WHERE id IN (SELECT pg_temp.u(i) FROM generate_series(1, 500) i);
DROP SCHEMA IF EXISTS bench_check CASCADE;
CREATE SCHEMA bench_check;

------------------------------------------------------------------------------
-- Users.  1-300 pay each other at random; the rest play the patterns.
------------------------------------------------------------------------------

SELECT setseed(0.4242);

-- opened 200 to 500 days before the history starts, except the new
-- accounts 330-339, opened during it
INSERT INTO p2pay.users (id, first_name, created_at)
SELECT pg_temp.u(i), 'user ' || i,
       CASE WHEN i BETWEEN 330 AND 339 THEN pg_temp.at(40 + (i - 330) * 7)
            ELSE pg_temp.at(-200 - random() * 300) END
  FROM generate_series(1, 420) i;

-- everyone has a bank transfer, every other one a credit card too
INSERT INTO p2pay.user_payment_methods (user_id, payment_method_id)
SELECT pg_temp.u(i), pg_temp.m(1) FROM generate_series(1, 420) i
UNION ALL
SELECT pg_temp.u(i), pg_temp.m(2) FROM generate_series(2, 420, 2) i;

-- 298 for good, 299 until day 60, 300 until after the history ends
INSERT INTO p2pay.blocklist (user_id, reason, expires_at) VALUES
  (pg_temp.u(298), 'chargebacks', NULL),
  (pg_temp.u(299), 'under investigation', pg_temp.at(60)),
  (pg_temp.u(300), 'card testing', pg_temp.at(200));

------------------------------------------------------------------------------
-- Payments, generated into bench_check.input, inserted later in time order
------------------------------------------------------------------------------

CREATE TABLE bench_check.input (
  seq        int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  pattern    text NOT NULL,
  payer      int NOT NULL,
  payee      int NOT NULL,
  amount     numeric NOT NULL,
  currency   char(3) NOT NULL DEFAULT 'USD',
  method     int NOT NULL DEFAULT 1,
  day        float8 NOT NULL
);

-- 3000 payments between random users of 1-300: mostly small, 3% of them
-- 1000 to 5000; 30% in EUR or ILS; 5% by a method the payer never registered
INSERT INTO bench_check.input (pattern, payer, payee, amount, currency, method, day)
SELECT 'background', a, 1 + (a + floor(random() * 299)::int) % 300,
       CASE WHEN random() < 0.03 THEN round((1000 + random() * 4000)::numeric, 2)
            ELSE round((5 * exp(random() * 5.5))::numeric, 2) END,
       CASE WHEN c < 0.7 THEN 'USD' WHEN c < 0.9 THEN 'EUR' ELSE 'ILS' END,
       CASE WHEN random() < 0.05 THEN 3 + floor(random() * 2)::int ELSE 1 END,
       random() * 120
  FROM (SELECT 1 + floor(random() * 300)::int AS a, random() AS c, g
          FROM generate_series(1, 3000) g) s
 ORDER BY g;

-- sleepers 301-310: one small payment in the first days, then one over
-- 1000 after 75 to 110 days (dormant_reactivation past 90)
INSERT INTO bench_check.input (pattern, payer, payee, amount, day)
SELECT 'sleeper', i, 1 + (i * 7) % 300, 100, (i - 301) * 0.5 FROM generate_series(301, 310) i
UNION ALL
SELECT 'sleeper', i, 1 + (i * 11) % 300, 1500 + (i - 301) * 100, (i - 301) * 0.5 + 75 + (i - 301) * 4
  FROM generate_series(301, 310) i;

-- shop 311: 24 distinct customers a day, days 75-104 (fan-in above 20, but
-- its normal once it has a week of history)
INSERT INTO bench_check.input (pattern, payer, payee, amount, day)
SELECT 'shop', 1 + (d * 37 + k * 11) % 300, 311, 20 + (k * 7) % 60, d + 0.3 + k * 0.02
  FROM generate_series(75, 104) d, generate_series(1, 24) k;

-- shop 312: 10 customers a day, days 80-95, then 36 on day 96 (above 3
-- times its normal)
INSERT INTO bench_check.input (pattern, payer, payee, amount, day)
SELECT 'shop_spike', 1 + (d * 41 + k * 13) % 300, 312, 35, d + 0.2 + k * 0.015
  FROM generate_series(80, 96) d, generate_series(1, 36) k
 WHERE k <= 10 OR d = 96;

-- payroll 313: 12 distinct payees a day within 40 minutes, days 80-104
-- (fan-out above 10, its normal after a week; velocity above 10 every day)
INSERT INTO bench_check.input (pattern, payer, payee, amount, day)
SELECT 'payroll', 313, 1 + (d * 13 + k * 7) % 300, 250, d + 0.4 + k * 0.0023
  FROM generate_series(80, 104) d, generate_series(1, 12) k;

-- payroll 313 again on day 105: 40 distinct payees within 2 hours (fan-out
-- above 3 times its normal of 12)
INSERT INTO bench_check.input (pattern, payer, payee, amount, day)
SELECT 'payroll_spike', 313, 1 + (105 * 13 + k * 7) % 300, 250, 105.4 + k * 0.002
  FROM generate_series(1, 40) k;

-- bursts: 5 payers make 14 payments to different payees within 40 minutes
INSERT INTO bench_check.input (pattern, payer, payee, amount, day)
SELECT 'burst', b * 17, 1 + (b * 17 + k * 3) % 300, 20 + k * 5, 50 + b * 10 + k * 0.002
  FROM generate_series(1, 5) b, generate_series(1, 14) k;

-- fan-out: 3 payers pay 13 different payees an hour apart
INSERT INTO bench_check.input (pattern, payer, payee, amount, day)
SELECT 'fan_out', b * 23, 1 + (b * 23 + k * 5) % 300, 60, 55 + b * 9 + k / 24.0
  FROM generate_series(1, 3) b, generate_series(1, 13) k;

-- mules 320-325: paid by 6, 8, 25, 25, 4 and 30 strangers within 10
-- hours, then pay 60% of it on in one lump two hours later (pass_through;
-- fan-in for 25 and 30; the mule with 4 payers is below pass_through's 5)
INSERT INTO bench_check.input (pattern, payer, payee, amount, day)
SELECT 'mule_in', 1 + (m * 29 + k * 7) % 300, m, 300 + (k * 37) % 400, 45 + (m - 320) * 11 + k * 0.4 / n
  FROM (VALUES (320, 6), (321, 8), (322, 25), (323, 25), (324, 4), (325, 30)) v(m, n),
       generate_series(1, n) k;
INSERT INTO bench_check.input (pattern, payer, payee, amount, day)
SELECT 'mule_out', m, 1 + (m * 31) % 300,
       round(0.6 * (SELECT sum(i.amount) FROM bench_check.input i
                     WHERE i.pattern = 'mule_in' AND i.payee = m), 2),
       45 + (m - 320) * 11 + 0.5
  FROM generate_series(320, 325) m;

-- velocity amount: 4 payers pay 5 x 4500 within 10 hours
INSERT INTO bench_check.input (pattern, payer, payee, amount, day)
SELECT 'velocity_amount', b * 41, 1 + (b * 41 + k * 9) % 300, 4500, 58 + b * 8 + k * 0.08
  FROM generate_series(1, 4) b, generate_series(1, 5) k;

-- structuring: 4 amounts in [9000, 10000) within 12 hours; payer 4 in EUR
-- (8500-9200 EUR is 9180-9936 USD); payer 5 makes only 2 and is not flagged
INSERT INTO bench_check.input (pattern, payer, payee, amount, currency, day)
SELECT 'structuring', b * 53 % 300 + 1, 1 + (b * 53 + k) % 300,
       CASE WHEN b = 4 THEN 8500 + k * 150 ELSE 9100 + k * 200 END,
       CASE WHEN b = 4 THEN 'EUR' ELSE 'USD' END,
       62 + b * 7 + k * 0.1
  FROM generate_series(1, 5) b, generate_series(1, 4) k
 WHERE b < 5 OR k <= 2;

-- large amounts
INSERT INTO bench_check.input (pattern, payer, payee, amount, currency, day)
SELECT 'large', 1 + (k * 59) % 290, 1 + (k * 61 + 5) % 290, 10500 + k * 4000,
       CASE WHEN k % 3 = 0 THEN 'ILS' ELSE 'USD' END, 30 + k * 8
  FROM generate_series(1, 10) k;

-- new accounts 330-339, opened on day 40 + 7 i: pay 2000 after 1-5 days;
-- 330 and 331 pay again after 8 days (not new any more)
INSERT INTO bench_check.input (pattern, payer, payee, amount, day)
SELECT 'new_account', i, 1 + (i * 3) % 300, 2000, 40 + (i - 330) * 7 + 1 + (i % 5)
  FROM generate_series(330, 339) i
UNION ALL
SELECT 'new_account_old', i, 1 + (i * 3) % 300, 2000, 40 + (i - 330) * 7 + 8.5
  FROM generate_series(330, 331) i;

-- round trips 340-355, pairs (A, B): A pays B 2000, B pays 1500 back 5
-- hours later; pair 6's payment back is 900 (too small), pair 7's comes
-- 30 hours later (outside the window)
INSERT INTO bench_check.input (pattern, payer, payee, amount, day)
SELECT 'round_trip', 340 + 2 * p, 341 + 2 * p, 2000, 20 + p * 9 FROM generate_series(0, 7) p
UNION ALL
SELECT 'round_trip', 341 + 2 * p, 340 + 2 * p,
       CASE WHEN p = 6 THEN 900 ELSE 1500 END,
       20 + p * 9 + CASE WHEN p = 7 THEN 1.25 ELSE 0.2 END
  FROM generate_series(0, 7) p;

-- loops of three (360-377): B pays C, C pays A, then A pays B and closes
-- it; loop 5's legs are 800 (too small), loop 4's first leg is 30 hours old
INSERT INTO bench_check.input (pattern, payer, payee, amount, day)
SELECT 'cycle3', a + leg_from, a + leg_to, CASE WHEN l = 5 THEN 800 ELSE 3000 END,
       33 + l * 10 + step * 0.05 - CASE WHEN l = 4 AND step = 0 THEN 1.3 ELSE 0 END
  FROM generate_series(0, 5) l, LATERAL (SELECT 360 + 3 * l AS a) x,
       (VALUES (0, 1, 2), (1, 2, 0), (2, 0, 1)) s(step, leg_from, leg_to);

-- loops of four (380-399): B pays C, C pays D, D pays A, then A pays B;
-- loop 4's closing payment is 500 (too small to be looked at)
INSERT INTO bench_check.input (pattern, payer, payee, amount, day)
SELECT 'cycle4', a + leg_from, a + leg_to,
       CASE WHEN l = 4 AND step = 3 THEN 500 ELSE 2500 END,
       36 + l * 12 + step * 0.04
  FROM generate_series(0, 4) l, LATERAL (SELECT 380 + 4 * l AS a) x,
       (VALUES (0, 1, 2), (1, 2, 3), (2, 3, 0), (3, 0, 1)) s(step, leg_from, leg_to);

-- cycle_hub: hub 401 pays 40 accounts of 1-300 1500 each; the one among
-- them with the highest id pays 402, which then pays the hub: a loop
-- 402 -> 401 -> C -> 402 that p2pay, following the 32 lowest ids, can't see
INSERT INTO bench_check.input (pattern, payer, payee, amount, day)
SELECT 'cycle_hub', 401, 1 + (k * 7) % 300, 1500, 90 + k * 0.003
  FROM generate_series(1, 40) k;
INSERT INTO bench_check.input (pattern, payer, payee, amount, day)
SELECT 'cycle_hub', c, 402, 2000, 90.2
  FROM (SELECT i.payee AS c FROM bench_check.input i WHERE i.pattern = 'cycle_hub'
         ORDER BY pg_temp.u(i.payee) DESC LIMIT 1) top;
INSERT INTO bench_check.input (pattern, payer, payee, amount, day)
VALUES ('cycle_hub', 402, 401, 2000, 90.3);

-- amount deviation: 5 payers, 403-407, pay 50 six times, then 400
INSERT INTO bench_check.input (pattern, payer, payee, amount, day)
SELECT 'deviation', 402 + b, 1 + (b * 43 + k) % 300, CASE WHEN k = 7 THEN 400 ELSE 50 END,
       70 + b + k * 0.1
  FROM generate_series(1, 5) b, generate_series(1, 7) k;

------------------------------------------------------------------------------
-- Score them twice: through p2pay's trigger, then through the PL/pgSQL one
------------------------------------------------------------------------------

CREATE TABLE bench_check.result (
  impl           text NOT NULL,
  transaction_id uuid NOT NULL,
  reasons        text[],
  risk_score     double precision,
  decision       p2pay.decision,
  is_approved    boolean,
  PRIMARY KEY (impl, transaction_id)
);

-- every row sees the rows inserted before it, including earlier rows of
-- the same statement, for both triggers
CREATE FUNCTION pg_temp.insert_all() RETURNS void LANGUAGE sql AS $$
  INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency,
                              payment_method_id, created_at)
  SELECT md5('bench_check payment ' || i.seq)::uuid, pg_temp.u(i.payer), pg_temp.u(i.payee),
         i.amount, i.currency, pg_temp.m(i.method), pg_temp.at(i.day)
    FROM bench_check.input i
   ORDER BY i.day, i.seq;
$$;

SELECT bench.use_p2pay();
TRUNCATE p2pay.payments;
SELECT pg_temp.insert_all();
INSERT INTO bench_check.result
SELECT 'p2pay', transaction_id, reasons, risk_score, decision, is_approved FROM p2pay.payments;

SELECT bench.use_plpgsql();
TRUNCATE p2pay.payments;
SELECT pg_temp.insert_all();
INSERT INTO bench_check.result
SELECT 'plpgsql', transaction_id, reasons, risk_score, decision, is_approved FROM p2pay.payments;

SELECT bench.use_p2pay();
TRUNCATE p2pay.payments;

------------------------------------------------------------------------------
-- The comparison
------------------------------------------------------------------------------

CREATE VIEW bench_check.compared AS
SELECT i.seq, i.pattern, a.transaction_id,
       a.reasons AS p2pay_reasons, b.reasons AS plpgsql_reasons,
       a.risk_score AS p2pay_score, b.risk_score AS plpgsql_score,
       a.decision AS p2pay_decision, b.decision AS plpgsql_decision,
       a.is_approved AS p2pay_approved, b.is_approved AS plpgsql_approved
  FROM bench_check.input i
  JOIN bench_check.result a ON a.impl = 'p2pay' AND a.transaction_id = md5('bench_check payment ' || i.seq)::uuid
  JOIN bench_check.result b ON b.impl = 'plpgsql' AND b.transaction_id = a.transaction_id;

\o
\echo 'Payments scored by each trigger, and how many came out the same'
SELECT count(*) AS payments,
       count(*) FILTER (WHERE p2pay_reasons = plpgsql_reasons) AS same_reasons,
       count(*) FILTER (WHERE p2pay_score = plpgsql_score) AS same_score,
       count(*) FILTER (WHERE p2pay_decision = plpgsql_decision
                          AND p2pay_approved = plpgsql_approved) AS same_decision
  FROM bench_check.compared;

\echo 'Per rule, in catalogue order: payments flagged by each, and on how many they differ'
SELECT r.rule,
       count(*) FILTER (WHERE r.rule = ANY (c.p2pay_reasons)) AS p2pay,
       count(*) FILTER (WHERE r.rule = ANY (c.plpgsql_reasons)) AS plpgsql,
       count(*) FILTER (WHERE (r.rule = ANY (c.p2pay_reasons)) <> (r.rule = ANY (c.plpgsql_reasons))) AS differing
  FROM unnest(ARRAY['amount_limit', 'payer_velocity_count', 'payer_velocity_amount',
                    'payer_fan_out', 'payee_fan_in', 'structuring', 'new_payee_high_amount',
                    'new_account_high_amount', 'round_trip', 'unregistered_method',
                    'amount_deviation', 'dormant_reactivation', 'blocklist',
                    'pass_through', 'cycle']) WITH ORDINALITY AS r(rule, ord)
 CROSS JOIN bench_check.compared c
 GROUP BY r.rule, r.ord
 ORDER BY r.ord;

\echo 'Decisions by each trigger'
SELECT d.decision,
       (SELECT count(*) FROM bench_check.compared c WHERE c.p2pay_decision = d.decision) AS p2pay,
       (SELECT count(*) FROM bench_check.compared c WHERE c.plpgsql_decision = d.decision) AS plpgsql
  FROM unnest(enum_range(NULL::p2pay.decision)) AS d(decision);

\echo 'Payments whose reasons differ'
SELECT c.seq, c.pattern, c.p2pay_reasons, c.plpgsql_reasons
  FROM bench_check.compared c
 WHERE c.p2pay_reasons IS DISTINCT FROM c.plpgsql_reasons
 ORDER BY c.seq;
