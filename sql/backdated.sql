-- Payments that arrive out of created_at order (late, batch-imported) are
-- counted in the per-account state as if they had come in order: a
-- payment is its pair's first of its UTC day, a new payee for the payer's
-- day and a new payer for the payee's, when no other payment of the pair
-- is that day, whichever came first.  After any inserts and deletes the
-- state equals what the payments count, and so does what rebuild_state()
-- counts.  The pair's first and last times decide without reading the
-- payments, except for a day strictly between them, when the payer's
-- payments of that day are read.
CREATE EXTENSION p2pay;
SET TimeZone = 'UTC';

CREATE FUNCTION u(n int) RETURNS uuid LANGUAGE sql IMMUTABLE
  AS $$ SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid $$;
INSERT INTO p2pay.users (id, created_at) SELECT u(n), '2020-01-01' FROM generate_series(1, 20) n;
-- With every rule off, the trigger reads the payer's payments (through
-- payments_payer_time_idx) only to find whether its pair paid on a day.
UPDATE p2pay.rules SET mode = 'off';
\set T '''2026-03-20 12:00:00+00'''::timestamptz

\i test/payer_time_scans.sql
-- Insert a payment; return how many scans of the payer's payments it took.
CREATE FUNCTION pay(payer int, payee int, at timestamptz) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  before bigint := payer_time_scans();
BEGIN
  INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
  VALUES (u(payer), u(payee), 10, 'USD', '00000000-0000-4000-8000-000000000001', at);
  RETURN payer_time_scans() - before;
END $$;

-- The state counted from the payments in set-based SQL (test/recount.sql),
-- apart from the C that records each payment (the trigger, and
-- rebuild_state() through the same code): the state as kept, then as
-- rebuild_state() counts it, against it, one line per row that only one
-- side has (none when they agree).  The state kept is put back, so that
-- the trigger's own state is compared each time.
\i test/recount.sql
CREATE FUNCTION state_vs_recount() RETURNS TABLE (state text, side text, row_text text)
LANGUAGE plpgsql AS $$
BEGIN
  CREATE TEMP TABLE kept_account AS TABLE p2pay.account_stats;
  CREATE TEMP TABLE kept_pair AS TABLE p2pay.pair_stats;
  CREATE TEMP TABLE kept_daily AS TABLE p2pay.account_daily;
  PERFORM p2pay.rebuild_state();
  RETURN QUERY
    SELECT 'account_stats', 'kept', r::text FROM (TABLE kept_account EXCEPT TABLE recount_account_stats) r
    UNION ALL SELECT 'account_stats', 'recount, not kept', r::text FROM (TABLE recount_account_stats EXCEPT TABLE kept_account) r
    UNION ALL SELECT 'account_stats', 'rebuilt', r::text FROM (TABLE p2pay.account_stats EXCEPT TABLE recount_account_stats) r
    UNION ALL SELECT 'account_stats', 'recount, not rebuilt', r::text FROM (TABLE recount_account_stats EXCEPT TABLE p2pay.account_stats) r
    UNION ALL SELECT 'pair_stats', 'kept', r::text FROM (TABLE kept_pair EXCEPT TABLE recount_pair_stats) r
    UNION ALL SELECT 'pair_stats', 'recount, not kept', r::text FROM (TABLE recount_pair_stats EXCEPT TABLE kept_pair) r
    UNION ALL SELECT 'pair_stats', 'rebuilt', r::text FROM (TABLE p2pay.pair_stats EXCEPT TABLE recount_pair_stats) r
    UNION ALL SELECT 'pair_stats', 'recount, not rebuilt', r::text FROM (TABLE recount_pair_stats EXCEPT TABLE p2pay.pair_stats) r
    UNION ALL SELECT 'account_daily', 'kept', r::text FROM (TABLE kept_daily EXCEPT TABLE recount_account_daily) r
    UNION ALL SELECT 'account_daily', 'recount, not kept', r::text FROM (TABLE recount_account_daily EXCEPT TABLE kept_daily) r
    UNION ALL SELECT 'account_daily', 'rebuilt', r::text FROM (TABLE p2pay.account_daily EXCEPT TABLE recount_account_daily) r
    UNION ALL SELECT 'account_daily', 'recount, not rebuilt', r::text FROM (TABLE recount_account_daily EXCEPT TABLE p2pay.account_daily) r
    ORDER BY 1, 3, 2;
  TRUNCATE p2pay.account_stats, p2pay.pair_stats, p2pay.account_daily;
  INSERT INTO p2pay.account_stats SELECT * FROM kept_account;
  INSERT INTO p2pay.pair_stats SELECT * FROM kept_pair;
  INSERT INTO p2pay.account_daily SELECT * FROM kept_daily;
  DROP TABLE kept_account, kept_pair, kept_daily;
END $$;

-- An account's rows of account_daily, by user number.
CREATE VIEW days AS
SELECT right(user_id::text, 2)::int AS u, day, out_count, out_payees, in_payers
  FROM p2pay.account_daily;

-- 1 pays 2 yesterday, then three days ago: each day has a new payee for 1
-- and a new payer for 2.  The pair's first payment, after the day, tells
-- so without a read.
SELECT pay(1, 2, :T - interval '1 day') AS reads;
SELECT pay(1, 2, :T - interval '3 days') AS reads;
SELECT * FROM days WHERE u IN (1, 2) ORDER BY u, day;

-- A backdated payment into a day that already has one of the pair's: 3
-- pays 4 yesterday and three days ago, then again three days ago; the
-- pair's first payment, inside that day, says it is not new.
SELECT pay(3, 4, :T - interval '1 day') AS reads;
SELECT pay(3, 4, :T - interval '3 days') AS reads;
SELECT pay(3, 4, :T - interval '3 days' + interval '1 hour') AS reads;
SELECT * FROM days WHERE u IN (3, 4) ORDER BY u, day;

-- Between the pair's first and last payments: 5 pays 6 five days ago and
-- yesterday, and 7 three days ago.  A payment to 6 three days ago is new
-- that day (the read finds only the payment to 7); the next one to 6 that
-- day is not (the read finds the first).
SELECT pay(5, 6, :T - interval '5 days') AS reads;
SELECT pay(5, 6, :T - interval '1 day') AS reads;
SELECT pay(5, 7, :T - interval '3 days' + interval '1 hour') AS reads;
SELECT pay(5, 6, :T - interval '3 days' + interval '2 hours') AS reads;
SELECT pay(5, 6, :T - interval '3 days') AS reads;
SELECT * FROM days WHERE u IN (5, 6, 7) ORDER BY u, day;

-- The day's edges are UTC midnights: 8 pays 9 on the 14th and the 19th,
-- then at the last instant of the 15th, the first and last of the 16th,
-- and the first of the 17th: new, new, not new, new.
SELECT pay(8, 9, :T - interval '6 days') AS reads;
SELECT pay(8, 9, :T - interval '1 day') AS reads;
SELECT pay(8, 9, '2026-03-15 23:59:59.999999+00') AS reads;
SELECT pay(8, 9, '2026-03-16 00:00:00+00') AS reads;
SELECT pay(8, 9, '2026-03-16 23:59:59.999999+00') AS reads;
SELECT pay(8, 9, '2026-03-17 00:00:00+00') AS reads;
SELECT * FROM days WHERE u IN (8, 9) ORDER BY u, day;

-- Payments in time order read nothing more.
SELECT pay(12, 13, :T - interval '3 days') AS reads;
SELECT pay(12, 13, :T - interval '3 days' + interval '1 hour') AS reads;
SELECT pay(12, 13, :T - interval '2 days') AS reads;
SELECT pay(12, 13, :T) AS reads;

-- Rows of one statement out of order: each sees the rows before it.
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT u(10), u(p), 10, 'USD', '00000000-0000-4000-8000-000000000001', :T - d * interval '1 hour'
  FROM (VALUES (11, 24), (11, 72), (14, 70), (11, 48), (11, 71), (14, 47), (11, 46)) v (p, d);
SELECT * FROM days WHERE u IN (10, 11, 14) ORDER BY u, day;

SELECT * FROM state_vs_recount();

-- Deletes: the earlier of 5's two payments to 6 on one day; every payment
-- between 1 and 2; 8's first three payments to 9, in one statement.  An
-- account with no payment left has no row, and no day without one.
DELETE FROM p2pay.payments WHERE payer_id = u(5) AND payee_id = u(6)
   AND created_at = :T - interval '3 days';
DELETE FROM p2pay.payments WHERE payer_id = u(1);
DELETE FROM p2pay.payments WHERE payer_id = u(8) AND created_at < '2026-03-16 12:00+00';
SELECT * FROM days WHERE u IN (1, 2, 5, 6, 8, 9) ORDER BY u, day;
SELECT count(*) AS accounts_1_2 FROM p2pay.account_stats WHERE user_id IN (u(1), u(2));
-- After them, 8's pair starts on the 16th: the 15th is before it, the
-- 18th between its first and last.
SELECT pay(8, 9, '2026-03-15 10:00+00') AS reads;
SELECT pay(8, 9, '2026-03-18 10:00+00') AS reads;
SELECT * FROM days WHERE u IN (8, 9) ORDER BY u, day;

SELECT * FROM state_vs_recount();

-- Reversals take a payment out of the state row by row, as if it had
-- never been recorded.  16 pays 17 on three days, 18 three times on the
-- first of them and once on the second, and 19 twice at one instant.
\set D1 '''2026-03-25 00:00:00+00'''::timestamptz
SELECT count(pay(a, b, :D1 + at)) AS paid
  FROM (VALUES (16, 17, interval '9 hours'), (16, 17, '10 hours 30 minutes'),
               (16, 17, '1 day 12 hours'), (16, 17, '2 days 8 hours'),
               (16, 18, '8 hours'), (16, 18, '9 hours 15 minutes'), (16, 18, '15 hours'),
               (16, 18, '1 day 11 hours'), (16, 19, '10 hours'), (16, 19, '10 hours')) v (a, b, at);
-- The pairs' rows, by user number.
CREATE VIEW pairs AS
SELECT right(payer_id::text, 2)::int AS payer, right(payee_id::text, 2)::int AS payee,
       first_at, last_at, n, total
  FROM p2pay.pair_stats;
SELECT * FROM pairs WHERE payer = 16 ORDER BY payee;
SELECT * FROM days WHERE u BETWEEN 16 AND 19 ORDER BY u, day;
-- The pair's first payment, then its last: its first and last times are
-- read again from its payments that remain; the last one's day held only
-- it, so that day's rows go, hours and all, while the first one's hour
-- keeps the payment to 18 of that hour.
DELETE FROM p2pay.payments WHERE payer_id = u(16) AND payee_id = u(17) AND created_at = :D1 + interval '9 hours';
DELETE FROM p2pay.payments WHERE payer_id = u(16) AND payee_id = u(17) AND created_at = :D1 + interval '2 days 8 hours';
SELECT * FROM pairs WHERE payer = 16 AND payee = 17;
SELECT * FROM days WHERE u IN (16, 17) ORDER BY u, day;
SELECT day, out_hours, out_hour_sums FROM p2pay.account_daily
 WHERE user_id = u(16) AND day IN ((:D1)::date, (:D1 + interval '2 days')::date) ORDER BY day;
-- One of the pair's two payments at one instant: its first and last times
-- stay the other's.
DELETE FROM p2pay.payments WHERE id = (SELECT min(id) FROM p2pay.payments WHERE payee_id = u(19));
SELECT * FROM pairs WHERE payer = 16 AND payee = 19;
-- One statement reverses the three payments of a pair on one day: the
-- payer's day keeps one payee fewer, the payee's day goes, and the pair
-- starts on the next day.
DELETE FROM p2pay.payments WHERE payer_id = u(16) AND payee_id = u(18) AND created_at < :D1 + interval '1 day';
SELECT * FROM pairs WHERE payer = 16 AND payee = 18;
SELECT * FROM days WHERE u IN (16, 18) ORDER BY u, day;
SELECT * FROM state_vs_recount();
-- A reversal rolled back leaves the state as it was: the accounts' rows
-- are back, and the state is again what the payments count.
BEGIN;
DELETE FROM p2pay.payments WHERE payer_id = u(16);
SELECT count(*) AS accounts_16_to_19 FROM p2pay.account_stats WHERE user_id IN (u(16), u(17), u(18), u(19));
ROLLBACK;
SELECT count(*) AS accounts_16_to_19 FROM p2pay.account_stats WHERE user_id IN (u(16), u(17), u(18), u(19));
SELECT * FROM state_vs_recount();
-- Every payment of 16 reversed: its accounts' rows go with the last one.
DELETE FROM p2pay.payments WHERE payer_id = u(16);
SELECT count(*) AS accounts_16_to_19 FROM p2pay.account_stats WHERE user_id IN (u(16), u(17), u(18), u(19));
SELECT * FROM state_vs_recount();

-- What the rules see: a shop (15) whose history arrived latest day first
-- (a late import), 30 customers a day for ten days, has 30 new payers each
-- of those days, so 25 customers today are its normal, and payee_fan_in
-- stays quiet, at insert and in backtest() alike.
UPDATE p2pay.rules SET mode = 'active' WHERE name = 'payee_fan_in';
INSERT INTO p2pay.users (id, created_at) SELECT u(n), '2020-01-01' FROM generate_series(100, 129) n;
\set S '''2026-04-20 12:00:00+00'''::timestamptz
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT u(100 + c), u(15), 12, 'USD', '00000000-0000-4000-8000-000000000001',
       :S - (11 - day) * interval '1 day' + c * interval '10 minutes'
  FROM generate_series(1, 10) day, generate_series(0, 29) c
 ORDER BY day DESC, c;
SELECT count(*) AS days, sum(in_payers) AS new_payers FROM p2pay.account_daily WHERE user_id = u(15);
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT u(100 + n), u(15), 12, 'USD', '00000000-0000-4000-8000-000000000001', :S + n * interval '1 minute'
  FROM generate_series(0, 24) n;
SELECT count(*) FILTER (WHERE 'payee_fan_in' = ANY (reasons)) AS fan_in_at_insert
  FROM p2pay.payments WHERE created_at >= :S;
SELECT rule, payments, fired, fired_at_time
  FROM p2pay.backtest(:S, :S + interval '1 hour') WHERE rule = 'payee_fan_in';

-- A payer's amounts per hour live in its row of each UTC day
-- (account_daily.out_hours, out_hour_sums).  payer_velocity_amount (over
-- 100 in 24 hours) sums the hours of the payer's day rows from the hour
-- after its window's start on, later hours included, plus its payments
-- in the window's first, partial, hour.
UPDATE p2pay.rules SET mode = 'off' WHERE name = 'payee_fan_in';
UPDATE p2pay.rules SET mode = 'active', params = '{"max_amount": 100, "window": "24 hours"}'
 WHERE name = 'payer_velocity_amount';
INSERT INTO p2pay.users (id, created_at) VALUES (u(200), '2020-01-01'), (u(201), '2020-01-01');
CREATE FUNCTION pay_amount(amount numeric, at timestamptz) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
  fired boolean;
BEGIN
  INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
  VALUES (u(200), u(201), amount, 'USD', '00000000-0000-4000-8000-000000000001', at)
  RETURNING 'payer_velocity_amount' = ANY (reasons) INTO fired;
  RETURN fired;
END $$;
-- The window spans midnight: 40 at 22:30 and 30 at 01:10, then 40 at
-- 21:00 reads yesterday's hour 22 and today's hour 1 (110, fires); 20 at
-- 22:45 starts its window in yesterday's hour 22, whose payment at 22:30
-- is before it (90, quiet).
SELECT pay_amount(40, '2026-05-01 22:30+00') AS fired;
SELECT pay_amount(30, '2026-05-02 01:10+00') AS fired;
SELECT pay_amount(40, '2026-05-02 21:00+00') AS fired;
SELECT pay_amount(20, '2026-05-02 22:45+00') AS fired;
SELECT day, out_count, out_hours, out_hour_sums FROM p2pay.account_daily
 WHERE user_id = u(200) ORDER BY day;
-- The payee's day rows hold no hours.
SELECT day, in_payers, out_hours, out_hour_sums FROM p2pay.account_daily
 WHERE user_id = u(201) ORDER BY day;
-- A backdated payment into yesterday's hour 23: its window reads every
-- later hour (145, fires), and the earlier day's row gains the hour.
SELECT pay_amount(15, '2026-05-01 23:30+00') AS fired;
SELECT day, out_hours, out_hour_sums FROM p2pay.account_daily WHERE user_id = u(200) ORDER BY day;
-- Two payments in one hour, one reversed: the hour keeps the other's sum.
SELECT pay_amount(5, '2026-05-02 01:50+00') AS fired;
DELETE FROM p2pay.payments WHERE payer_id = u(200) AND created_at = '2026-05-02 01:10+00';
SELECT day, out_hours, out_hour_sums FROM p2pay.account_daily WHERE user_id = u(200) ORDER BY day;
-- Reversals that empty an hour: the hour goes from its day's arrays.
DELETE FROM p2pay.payments WHERE payer_id = u(200) AND created_at IN ('2026-05-01 23:30+00', '2026-05-02 01:50+00');
SELECT day, out_hours, out_hour_sums FROM p2pay.account_daily WHERE user_id = u(200) ORDER BY day;
SELECT * FROM state_vs_recount();
-- A row whose hours p2pay can't have written is refused (XX001), not read.
BEGIN;
UPDATE p2pay.account_daily SET out_hours = '{22,21}', out_hour_sums = '{40,40}'
 WHERE user_id = u(200) AND day = '2026-05-02';
SELECT pay_amount(1, '2026-05-02 23:00+00') AS fired;
ROLLBACK;
BEGIN;
UPDATE p2pay.account_daily SET out_hours = '{21}', out_hour_sums = '{40,20}'
 WHERE user_id = u(200) AND day = '2026-05-02';
SELECT pay_amount(1, '2026-05-02 23:00+00') AS fired;
ROLLBACK;
BEGIN;
UPDATE p2pay.account_daily SET out_hour_sums = '{40,NULL}'
 WHERE user_id = u(200) AND day = '2026-05-02';
SELECT pay_amount(1, '2026-05-02 23:00+00') AS fired;
ROLLBACK;
BEGIN;
UPDATE p2pay.account_daily SET out_hours = '{21,24}'
 WHERE user_id = u(200) AND day = '2026-05-02';
SELECT pay_amount(1, '2026-05-02 23:00+00') AS fired;
ROLLBACK;
BEGIN;
UPDATE p2pay.account_daily SET out_hour_sums = '{40,0}'
 WHERE user_id = u(200) AND day = '2026-05-02';
SELECT pay_amount(1, '2026-05-02 23:00+00') AS fired;
ROLLBACK;
BEGIN;
UPDATE p2pay.account_daily SET out_hours = '{{21,22}}', out_hour_sums = '{{40,20}}'
 WHERE user_id = u(200) AND day = '2026-05-02';
SELECT pay_amount(1, '2026-05-02 23:00+00') AS fired;
ROLLBACK;
SELECT pay_amount(1, '2026-05-02 23:00+00') AS fired;
DROP FUNCTION pay_amount(numeric, timestamptz);

-- The velocity count and amount read the payer's payments only for the
-- hours its day rows say it paid in, and the count only if its days since
-- the window began count as many payments as its limit: a payer with fewer,
-- or no hour in the count's window (the payments after its start), and
-- none in the amount's first, partial, hour reads none (read_payments
-- false).  The days that prune_state() may have deleted (61 days ago or
-- more) are not trusted: the payments are read.  Times are from midnight
-- three days ago (N); 3 payments in an hour fire the count (max_count 2),
-- over 100 in 24 hours the amount.
UPDATE p2pay.rules SET mode = 'active', params = params || '{"max_count": 2, "baseline_factor": 0}'
 WHERE name = 'payer_velocity_count';
INSERT INTO p2pay.users (id, created_at) SELECT u(n), '2020-01-01' FROM generate_series(300, 313) n;
CREATE FUNCTION pay_hour(payer int, amount numeric, at timestamptz)
  RETURNS TABLE (read_payments boolean, velocity_count boolean, velocity_amount boolean)
LANGUAGE plpgsql AS $$
DECLARE
  before bigint := payer_time_scans();
BEGIN
  INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
  VALUES (u(payer), u(payer + 1), amount, 'USD', '00000000-0000-4000-8000-000000000001', at)
  RETURNING 'payer_velocity_count' = ANY (reasons), 'payer_velocity_amount' = ANY (reasons)
    INTO velocity_count, velocity_amount;
  read_payments := payer_time_scans() > before;
  RETURN NEXT;
END $$;
\set N 'date_trunc(''day'', now() - interval ''3 days'')'
-- 300 pays at 10:00 (nothing to read), 10:20 (its day counts 1 payment,
-- under the limit: nothing to read) and 10:40 (2, and hour 10 is in the
-- window: read; it fires).
SELECT * FROM pay_hour(300, 10, :N + interval '10 hours');
SELECT * FROM pay_hour(300, 10, :N + interval '10 hours 20 minutes');
SELECT * FROM pay_hour(300, 10, :N + interval '10 hours 40 minutes');
-- Days that count the limit, hours that show nothing: 312 pays at 01:00
-- and 02:00, then at 10:00 (no hour since 09:00: nothing to read), 10:20
-- (hour 10: read, 2 in the window, quiet) and 10:40 (read, fires).
SELECT * FROM pay_hour(312, 10, :N + interval '1 hour');
SELECT * FROM pay_hour(312, 10, :N + interval '2 hours');
SELECT * FROM pay_hour(312, 10, :N + interval '10 hours');
SELECT * FROM pay_hour(312, 10, :N + interval '10 hours 20 minutes');
SELECT * FROM pay_hour(312, 10, :N + interval '10 hours 40 minutes');
-- The window across midnight: 302 pays at 23:50, then at 00:20 (its days
-- count 1 payment: nothing read) and 00:30 the next day, whose window
-- begins in the day before's hour 23 (read; it fires).
SELECT * FROM pay_hour(302, 10, :N + interval '23 hours 50 minutes');
SELECT * FROM pay_hour(302, 10, :N + interval '1 day 20 minutes');
SELECT * FROM pay_hour(302, 10, :N + interval '1 day 30 minutes');
-- Later payments count: 304 pays at 12:30, then at 11:10 (its day counts
-- 1: nothing read) and 11:20, whose window holds the later hour 12 (read;
-- it fires).
SELECT * FROM pay_hour(304, 10, :N + interval '12 hours 30 minutes');
SELECT * FROM pay_hour(304, 10, :N + interval '11 hours 10 minutes');
SELECT * FROM pay_hour(304, 10, :N + interval '11 hours 20 minutes');
-- The amount's first hour: 306 pays 60 at 10:40 and at 11:50, then 50 at
-- 10:20 the next day, whose window begins at 10:20 in the hour of the
-- first 60 (after it: 170, fires), and 30 at 11:00 (its first hour, 11,
-- holds the second 60: 140, fires).  308 pays 60 at 10:10, then 50 at
-- 10:20 the next day (the 60 is before its window: 50, quiet).
SELECT * FROM pay_hour(306, 60, :N + interval '10 hours 40 minutes');
SELECT * FROM pay_hour(306, 60, :N + interval '11 hours 50 minutes');
SELECT * FROM pay_hour(306, 50, :N + interval '1 day 10 hours 20 minutes');
SELECT * FROM pay_hour(306, 30, :N + interval '1 day 11 hours');
SELECT * FROM pay_hour(308, 60, :N + interval '10 hours 10 minutes');
SELECT * FROM pay_hour(308, 50, :N + interval '1 day 10 hours 20 minutes');
-- A day row whose hours p2pay can't have written is refused (XX001) by the
-- count's look at the hours too (the amount's rule off).
\set VERBOSITY terse
BEGIN;
UPDATE p2pay.rules SET mode = 'off' WHERE name = 'payer_velocity_amount';
UPDATE p2pay.account_daily SET out_hours = '{23,23}', out_hour_sums = '{10,10}'
 WHERE user_id = u(302) AND day = (:N)::date;
SELECT * FROM pay_hour(302, 10, :N + interval '23 hours 55 minutes');
ROLLBACK;
\set VERBOSITY default
-- A reversal that empties the hour: 300's payments of hour 10 deleted,
-- one at 10:50 reads nothing.
DELETE FROM p2pay.payments WHERE payer_id = u(300);
SELECT * FROM pay_hour(300, 10, :N + interval '10 hours 50 minutes');
SELECT * FROM state_vs_recount();
-- In the same way payer_fan_out and payee_fan_in (here 2 counterparties in
-- 24 hours fire them) read pair_stats by last payment (read_pairs) only if
-- the account's days since the window began count a counterparty other
-- than the payment's own pair, which counts once on the day of its last
-- payment.
UPDATE p2pay.rules SET mode = 'active', params = params || '{"max_payees": 1, "baseline_factor": 0}'
 WHERE name = 'payer_fan_out';
UPDATE p2pay.rules SET mode = 'active', params = params || '{"max_payers": 1, "baseline_factor": 0}'
 WHERE name = 'payee_fan_in';
INSERT INTO p2pay.users (id, created_at) SELECT u(n), '2020-01-01' FROM generate_series(320, 340) n;
CREATE FUNCTION pair_scans() RETURNS bigint LANGUAGE sql AS $$
  SELECT sum(pg_stat_get_xact_numscans(i))::bigint
    FROM unnest(ARRAY['p2pay.pair_stats_payer_last_idx'::regclass,
                      'p2pay.pair_stats_payee_last_idx'::regclass]) i
$$;
CREATE FUNCTION pay_pair(payer int, payee int, at timestamptz)
  RETURNS TABLE (read_pairs boolean, fan_out boolean, fan_in boolean)
LANGUAGE plpgsql AS $$
DECLARE
  before bigint := pair_scans();
BEGIN
  INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
  VALUES (u(payer), u(payee), 10, 'USD', '00000000-0000-4000-8000-000000000001', at)
  RETURNING 'payer_fan_out' = ANY (reasons), 'payee_fan_in' = ANY (reasons) INTO fan_out, fan_in;
  read_pairs := pair_scans() > before;
  RETURN NEXT;
END $$;
-- 320 pays 321 twice (its days count only that pair: nothing read), then
-- 322 (its day counts 321: read, and it fires).
SELECT * FROM pay_pair(320, 321, :N + interval '10 hours');
SELECT * FROM pay_pair(320, 321, :N + interval '11 hours');
SELECT * FROM pay_pair(320, 322, :N + interval '12 hours');
-- The window across days: 323 pays 324 at 20:00, then 325 at 10:00 the
-- next day, whose window holds the day before.
SELECT * FROM pay_pair(323, 324, :N + interval '20 hours');
SELECT * FROM pay_pair(323, 325, :N + interval '1 day 10 hours');
-- The payee's side: 326 and 327 pay 328.
SELECT * FROM pay_pair(326, 328, :N + interval '10 hours');
SELECT * FROM pay_pair(327, 328, :N + interval '11 hours');
-- A day counts pairs last paid before the window began: 329 pays 330 at
-- 01:00, then 331 at 05:00 the next day (read, and quiet).
SELECT * FROM pay_pair(329, 330, :N + interval '1 hour');
SELECT * FROM pay_pair(329, 331, :N + interval '1 day 5 hours');
-- 320's payment to 322 reversed: its day counts 321 alone again.
DELETE FROM p2pay.payments WHERE payer_id = u(320) AND payee_id = u(322);
SELECT * FROM pay_pair(320, 321, :N + interval '13 hours');
SELECT * FROM state_vs_recount();

-- Under a limit of 2 (max_payees and max_payers 2), the pairs are read
-- only where the days since the window began count 2 counterparties other
-- than the payment's own pair.  337 is paid by 338 (nothing to read), by
-- 339 (its day counts 338, under the limit: nothing read) and by 340 (2:
-- read, and it fires).  338 then pays 339 (its day counts 337: nothing
-- read) and 340 (2: read, and it fires).
UPDATE p2pay.rules SET params = params || '{"max_payees": 2}' WHERE name = 'payer_fan_out';
UPDATE p2pay.rules SET params = params || '{"max_payers": 2}' WHERE name = 'payee_fan_in';
SELECT * FROM pay_pair(338, 337, :N + interval '10 hours');
SELECT * FROM pay_pair(339, 337, :N + interval '11 hours');
SELECT * FROM pay_pair(340, 337, :N + interval '12 hours');
SELECT * FROM pay_pair(338, 339, :N + interval '13 hours');
SELECT * FROM pay_pair(338, 340, :N + interval '14 hours');
SELECT * FROM state_vs_recount();
UPDATE p2pay.rules SET params = params || '{"max_payees": 1}' WHERE name = 'payer_fan_out';
UPDATE p2pay.rules SET params = params || '{"max_payers": 1}' WHERE name = 'payee_fan_in';

-- Days prune_state() deleted: 310 and 332 pay first 150 days ago, then
-- in an hour 100 days ago, 310 twice, 332 to 333 and 334; then the days are
-- pruned (each first day stays).  The payments after it read what the
-- days no longer show, and fire: 310's and 336's third payment in the
-- hour, 332's payment to a third payee.
\set P 'date_trunc(''day'', now() - interval ''100 days'')'
SELECT * FROM pay_hour(310, 10, now() - interval '150 days');
SELECT * FROM pay_hour(310, 10, :P + interval '10 hours');
SELECT * FROM pay_hour(310, 10, :P + interval '10 hours 20 minutes');
SELECT * FROM pay_pair(332, 333, now() - interval '150 days');
SELECT * FROM pay_pair(332, 333, :P + interval '10 hours');
SELECT * FROM pay_pair(332, 334, :P + interval '11 hours');
-- and 336 pays twice in an hour 62 days ago, the latest day prune_state()
-- deletes with its least keep, 31 days (then the horizon's date is 31 days
-- back, and it deletes the days more than 30 before that).
\set Q 'date_trunc(''day'', now() - interval ''62 days'')'
SELECT * FROM pay_hour(336, 10, now() - interval '150 days');
SELECT * FROM pay_hour(336, 10, :Q + interval '10 hours');
SELECT * FROM pay_hour(336, 10, :Q + interval '10 hours 20 minutes');
SELECT days > 0 AS days_pruned FROM p2pay.prune_state();
SELECT right(user_id::text, 3)::int AS u, count(*) AS days FROM p2pay.account_daily
 WHERE user_id IN (u(310), u(332), u(336)) GROUP BY 1 ORDER BY 1;
SELECT * FROM pay_hour(310, 10, :P + interval '10 hours 40 minutes');
SELECT * FROM pay_pair(332, 335, :P + interval '12 hours');
SELECT * FROM pay_hour(336, 10, :Q + interval '10 hours 40 minutes');
DROP FUNCTION pay_hour(int, numeric, timestamptz), pay_pair(int, int, timestamptz), pair_scans();

DROP VIEW pairs;
DROP VIEW days;
DROP FUNCTION state_vs_recount();
DROP VIEW recount_account_stats, recount_pair_stats, recount_account_daily, recount_day_hours;
DROP FUNCTION pay(int, int, timestamptz);
DROP FUNCTION payer_time_scans();
DROP FUNCTION u(int);
DROP EXTENSION p2pay;
