-- Velocity, fan-out and fan-in against each account's normal: a shop that
-- takes payments from many customers every day is not flagged for doing so
-- again, while a personal account that suddenly receives from many is.  An
-- account with less than baseline_days of history is compared with the days
-- it has, with more room the fewer they are; payee_fan_in then looks only at
-- payments of at least short_history_min_amount, so that a new shop's
-- customers are not flagged while a new mule's payers are.
CREATE EXTENSION p2pay;
SET TimeZone = 'UTC';

CREATE FUNCTION u(n int) RETURNS uuid LANGUAGE sql IMMUTABLE
  AS $$ SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid $$;
INSERT INTO p2pay.users (id, created_at) SELECT u(n), '2020-01-01' FROM generate_series(1, 400) n;
INSERT INTO p2pay.user_payment_methods
  SELECT u(n), '00000000-0000-4000-8000-000000000001' FROM generate_series(1, 400) n;
UPDATE p2pay.rules SET mode = 'off'
 WHERE name NOT IN ('payee_fan_in', 'payer_fan_out', 'payer_velocity_count');
\set T '''2026-03-20 12:00:00+00'''::timestamptz

-- The shop (1) has taken payments from 30 customers (100..129) a day for
-- the ten days before; the personal account (2) from one friend a day.
-- In its first seven days the shop has no full normal, and its customers
-- pay 12, under short_history_min_amount (100): none is flagged, on its
-- first day either.
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT u(100 + c), u(1), 12, 'USD', '00000000-0000-4000-8000-000000000001',
       :T - (11 - day) * interval '1 day' + c * interval '10 minutes'
  FROM generate_series(1, 10) day, generate_series(0, 29) c
 ORDER BY 6;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT u(300 + day), u(2), 20, 'USD', '00000000-0000-4000-8000-000000000001',
       :T - (11 - day) * interval '1 day'
  FROM generate_series(1, 10) day;
SELECT created_at >= :T - interval '3 days' AS with_normal,
       count(*) FILTER (WHERE 'payee_fan_in' = ANY (reasons)) AS fan_in
  FROM p2pay.payments WHERE payee_id = u(1) GROUP BY 1 ORDER BY 1;
SELECT user_id = u(1) AS shop, count(*) AS days, sum(in_payers) AS new_payers
  FROM p2pay.account_daily WHERE user_id IN (u(1), u(2)) GROUP BY user_id ORDER BY 1 DESC;

-- Today 25 customers pay the shop, and 25 strangers (200..224) pay the
-- personal account: only the personal account's 21st payer fires.
CREATE TABLE today (n int, shop boolean, reasons text[]);
WITH ins AS (
  INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
  SELECT u(100 + n), u(1), 12, 'USD', '00000000-0000-4000-8000-000000000001', :T + n * interval '1 minute'
    FROM generate_series(0, 24) n
  RETURNING created_at, reasons)
INSERT INTO today SELECT extract(minute FROM created_at - :T)::int, true, reasons FROM ins;
WITH ins AS (
  INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
  SELECT u(200 + n), u(2), 12, 'USD', '00000000-0000-4000-8000-000000000001', :T + n * interval '1 minute'
    FROM generate_series(0, 24) n
  RETURNING created_at, reasons)
INSERT INTO today SELECT extract(minute FROM created_at - :T)::int, false, reasons FROM ins;
SELECT shop, count(*) AS payments,
       count(*) FILTER (WHERE 'payee_fan_in' = ANY (reasons)) AS fan_in,
       min(n) FILTER (WHERE 'payee_fan_in' = ANY (reasons)) AS first_flagged
  FROM today GROUP BY shop ORDER BY shop DESC;

-- With less than baseline_days of history and payments of at least
-- short_history_min_amount: on its first day an account has no normal, and
-- the absolute limit decides (10, a new account paid 250 by 25 strangers:
-- a mule's first day, flagged from the 21st payer).  An account with days
-- of history is compared with them, with baseline_days / days times the
-- room: 11, paid by one friend a day for the three days before, has a
-- normal of 1 a day and a limit of 3 x 7/3 x 1 = 7, so the absolute limit
-- of 20 decides again; 12, a new shop paid by 30 a day for two days, has a
-- limit of 3 x 7/2 x 30 = 315, and its 25 customers paying 250 today are
-- not flagged.
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT u(300 + day), u(11), 20, 'USD', '00000000-0000-4000-8000-000000000001',
       :T - (4 - day) * interval '1 day'
  FROM generate_series(1, 3) day;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT u(100 + c), u(12), 12, 'USD', '00000000-0000-4000-8000-000000000001',
       :T - (3 - day) * interval '1 day' + c * interval '10 minutes'
  FROM generate_series(1, 2) day, generate_series(0, 29) c
 ORDER BY 6;
CREATE TABLE short (n int, payee int, reasons text[]);
WITH ins AS (
  INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
  SELECT u(200 + n), u(a), 250, 'USD', '00000000-0000-4000-8000-000000000001',
         :T + n * interval '1 minute'
    FROM generate_series(0, 24) n, (VALUES (10), (11), (12)) a(a)
   ORDER BY n, a
  RETURNING created_at, payee_id, reasons)
INSERT INTO short
SELECT extract(minute FROM created_at - :T)::int, right(payee_id::text, 2)::int, reasons FROM ins;
SELECT payee, count(*) AS payments,
       count(*) FILTER (WHERE 'payee_fan_in' = ANY (reasons)) AS fan_in,
       min(n) FILTER (WHERE 'payee_fan_in' = ANY (reasons)) + 1 AS first_flagged_payer
  FROM short GROUP BY payee ORDER BY payee;

-- short_history_min_amount 0: every payment counts, and the new shop 3,
-- paid 12 by 30 a day for five days, is flagged past the 20th payer on its
-- first day only; from its second, it is compared with the days it has.
UPDATE p2pay.rules SET params = params || '{"short_history_min_amount": 0}' WHERE name = 'payee_fan_in';
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT u(100 + c), u(3), 12, 'USD', '00000000-0000-4000-8000-000000000001',
       :T - (6 - day) * interval '1 day' + c * interval '10 minutes'
  FROM generate_series(1, 5) day, generate_series(0, 29) c
 ORDER BY 6;
SELECT created_at::date AS day, count(*) FILTER (WHERE 'payee_fan_in' = ANY (reasons)) AS fan_in
  FROM p2pay.payments WHERE payee_id = u(3) GROUP BY 1 ORDER BY 1;
-- Left out of params, the key is 0 too.
UPDATE p2pay.rules SET params = params - 'short_history_min_amount' WHERE name = 'payee_fan_in';
SELECT params FROM p2pay.rules WHERE name = 'payee_fan_in';
UPDATE p2pay.rules SET params = params || '{"short_history_min_amount": 100}' WHERE name = 'payee_fan_in';

-- With baseline_factor 0 the shop is held to the absolute limit again.
UPDATE p2pay.rules SET params = params || '{"baseline_factor": 0}' WHERE name = 'payee_fan_in';
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
VALUES (u(399), u(1), 12, 'USD', '00000000-0000-4000-8000-000000000001', :T + interval '1 hour')
RETURNING reasons;

-- The same on the payer side: a payroll account (4) pays the same 12
-- people every day.  payer_fan_out asks no amount of a new account
-- (short_history_min_amount 0): on its first day the absolute limit of 10
-- flags the 11th and 12th payees; from its second, it is compared with the
-- days it has, and is not flagged again.
UPDATE p2pay.rules SET params = params || '{"baseline_factor": 3}' WHERE name = 'payee_fan_in';
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT u(4), u(130 + c), 12, 'USD', '00000000-0000-4000-8000-000000000001',
       :T - (11 - day) * interval '1 day' + c * interval '7 minutes'
  FROM generate_series(1, 10) day, generate_series(0, 11) c
 ORDER BY 6;
SELECT created_at >= :T - interval '3 days' AS with_normal,
       count(*) FILTER (WHERE 'payer_fan_out' = ANY (reasons)) AS fan_out
  FROM p2pay.payments WHERE payer_id = u(4) GROUP BY 1 ORDER BY 1;

-- Above the normal, past the absolute limit: a shop (9) paid by the same
-- 10 customers a day for 10 days gets 36 strangers in one day.  Its normal
-- is 100 payers over the 11 days since its first (9.09 a day), so the rule
-- fires from the 28th payer (more than 20, and more than 3 x 9.09 = 27.3),
-- however far above the absolute limit that is.
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT u(140 + c), u(9), 12, 'USD', '00000000-0000-4000-8000-000000000001',
       :T - (12 - day) * interval '1 day' + c * interval '10 minutes'
  FROM generate_series(1, 10) day, generate_series(0, 9) c
 ORDER BY 6;
WITH ins AS (
  INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
  SELECT u(240 + n), u(9), 12, 'USD', '00000000-0000-4000-8000-000000000001', :T + n * interval '1 minute'
    FROM generate_series(0, 35) n
  RETURNING created_at, reasons)
SELECT count(*) FILTER (WHERE 'payee_fan_in' = ANY (reasons)) AS fan_in,
       min(extract(minute FROM created_at - :T)::int + 1) FILTER (WHERE 'payee_fan_in' = ANY (reasons)) AS first_flagged_payer
  FROM ins;

-- Past the limit, a count goes on only while the normal can still be
-- exceeded.  A payee (20) known since yesterday, paid by 100 payers then
-- and 100 others today, has a limit of 3 x 7/1 x 100 = 2100 payers: its
-- days since the window began count 200 at most, so a payment to it reads
-- the first 20 of its window's payers, not all 200.  A payment under
-- short_history_min_amount, which the normal of a payee with less than
-- baseline_days of history can't flag, stops there too.
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT u(100 + n), u(20), 250, 'USD', '00000000-0000-4000-8000-000000000001',
       :T - interval '20 hours' + n * interval '10 seconds'
  FROM generate_series(0, 99) n;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT u(200 + n), u(20), 250, 'USD', '00000000-0000-4000-8000-000000000001',
       :T + n * interval '10 seconds'
  FROM generate_series(0, 99) n;
-- pay20: a payment to 20, its reasons and the pair_stats index entries read.
CREATE FUNCTION pay20(payer int, amount numeric, OUT reasons text[], OUT pairs_read bigint)
LANGUAGE plpgsql AS $$
DECLARE
  before bigint := pg_stat_get_xact_tuples_returned('p2pay.pair_stats_payee_last_idx'::regclass);
BEGIN
  INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
  VALUES (u(payer), u(20), amount, 'USD', '00000000-0000-4000-8000-000000000001',
          '2026-03-20 13:00:00+00')
  RETURNING p2pay.payments.reasons INTO reasons;
  pairs_read := pg_stat_get_xact_tuples_returned('p2pay.pair_stats_payee_last_idx'::regclass) - before;
END
$$;
SELECT v.payer, v.amount, p.reasons, p.pairs_read <= 21 AS window_not_read
  FROM (VALUES (300, 250), (350, 12)) v(payer, amount), pay20(v.payer, v.amount) p;
-- The same payee with the bound lifted (baseline_factor 0.05: a limit of
-- 0.05 x 7 x 100 = 35): the count goes on past 20 and the payment is
-- flagged, as the 202 payers before it exceed the normal.
UPDATE p2pay.rules SET params = params || '{"baseline_factor": 0.05}' WHERE name = 'payee_fan_in';
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
VALUES (u(351), u(20), 250, 'USD', '00000000-0000-4000-8000-000000000001', :T + interval '1 hour')
RETURNING reasons;
UPDATE p2pay.rules SET params = params || '{"baseline_factor": 3}' WHERE name = 'payee_fan_in';

-- A DELETE takes payments out of the daily counts too, so that deleted
-- payments don't raise an account's normal.  Account 5 pays 6 twice and 7
-- once on one day; deleting both payments to 6 in one statement leaves one
-- payment and one payee that day for 5, and no payer that day for 6.
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
VALUES (u(5), u(6), 12, 'USD', '00000000-0000-4000-8000-000000000001', :T - interval '40 days'),
       (u(5), u(6), 13, 'USD', '00000000-0000-4000-8000-000000000001', :T - interval '40 days' + interval '1 hour'),
       (u(5), u(7), 14, 'USD', '00000000-0000-4000-8000-000000000001', :T - interval '40 days' + interval '2 hours'),
       (u(8), u(6), 15, 'USD', '00000000-0000-4000-8000-000000000001', :T - interval '40 days' + interval '3 hours');
SELECT user_id = u(5) AS payer, out_count, out_payees, in_payers
  FROM p2pay.account_daily WHERE user_id IN (u(5), u(6)) ORDER BY 1 DESC;
DELETE FROM p2pay.payments WHERE payer_id = u(5) AND payee_id = u(6);
SELECT user_id = u(5) AS payer, out_count, out_payees, in_payers
  FROM p2pay.account_daily WHERE user_id IN (u(5), u(6)) ORDER BY 1 DESC;

-- The velocity amount of a payer whose normal was read first (its
-- velocity count past max_count) is summed from the day rows that reading
-- took in: the day before, across midnight, and a later day's (a payment
-- inserted after later ones counts them too).  It fires as it does when
-- the normal is not read (380 and 382 against 383 and 385): 8,000 twice
-- before midnight, then 3,000 (19,000) and 2,000 (21,000 > 20,000); and
-- 6,000 the day before a 15,000 already stored.
UPDATE p2pay.rules SET mode = 'active' WHERE name = 'payer_velocity_amount';
CREATE FUNCTION pay_hours(payer int, counted boolean) RETURNS TABLE (at timestamptz, velocity_amount boolean)
LANGUAGE plpgsql AS $$
DECLARE
  p record;
BEGIN
  UPDATE p2pay.rules SET mode = CASE WHEN counted THEN 'active' ELSE 'off' END::p2pay.rule_mode,
         params = params || '{"max_count": 1}'
   WHERE name = 'payer_velocity_count';
  FOR p IN SELECT * FROM (VALUES
      (380, '2026-04-01 22:00+00'::timestamptz, 8000), (380, '2026-04-01 23:30+00', 8000),
      (380, '2026-04-02 00:30+00', 3000), (380, '2026-04-02 01:00+00', 2000),
      (382, '2026-04-03 10:00+00', 15000), (382, '2026-04-02 10:00+00', 1000),
      (382, '2026-04-02 12:00+00', 6000)) v(who, at, amount)
     WHERE who = payer
  LOOP
    INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
    VALUES (u(payer + CASE WHEN counted THEN 0 ELSE 3 END), u(381), p.amount, 'USD',
            '00000000-0000-4000-8000-000000000001', p.at)
    RETURNING created_at, 'payer_velocity_amount' = ANY (reasons) INTO at, velocity_amount;
    RETURN NEXT;
  END LOOP;
  UPDATE p2pay.rules SET mode = 'active', params = params || '{"max_count": 10}'
   WHERE name = 'payer_velocity_count';
END $$;
SELECT a.at, a.velocity_amount AS normal_read, b.velocity_amount AS normal_not_read
  FROM pay_hours(380, true) a JOIN pay_hours(380, false) b USING (at) ORDER BY a.at;
SELECT a.at, a.velocity_amount AS normal_read, b.velocity_amount AS normal_not_read
  FROM pay_hours(382, true) a JOIN pay_hours(382, false) b USING (at) ORDER BY a.at;
SELECT user_id, day, out_hours, out_hour_sums FROM p2pay.account_daily
 WHERE user_id IN (u(380), u(382), u(383), u(385)) ORDER BY 1, 2;
UPDATE p2pay.rules SET mode = 'off' WHERE name = 'payer_velocity_amount';

DROP TABLE today, short;
DROP FUNCTION pay20(int, numeric), pay_hours(int, boolean);
DROP FUNCTION u(int);
DROP EXTENSION p2pay;
