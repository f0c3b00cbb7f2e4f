-- prune_state(): the daily rows (with the payer's hours in them) that no
-- recent payment reads go, every account's first day stays, and a payment
-- scored after the pruning gets what it would have got before.
CREATE EXTENSION p2pay;
SET TimeZone = 'UTC';

CREATE FUNCTION u(n int) RETURNS uuid LANGUAGE sql IMMUTABLE
  AS $$ SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid $$;
INSERT INTO p2pay.users (id, created_at) SELECT u(n), '2020-01-01' FROM generate_series(1, 10) n;
INSERT INTO p2pay.user_payment_methods
  SELECT u(n), '00000000-0000-4000-8000-000000000001' FROM generate_series(1, 10) n;

-- 1,200 payments over the last 90 days, the newest a day ago; users 9
-- and 10 stop paying and being paid 60 days ago.
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT u(p), u(1 + p % (CASE WHEN i < 400 THEN 10 ELSE 8 END)), 20 + i % 300, 'USD',
       '00000000-0000-4000-8000-000000000001',
       now() - interval '90 days' + i * (interval '89 days' / 1200)
  FROM (SELECT i, 1 + i % (CASE WHEN i < 400 THEN 10 ELSE 8 END) AS p
          FROM generate_series(0, 1199) i) g
 ORDER BY i;

-- The payers' hours in their daily rows, one row each.
CREATE VIEW day_hours AS
  SELECT d.user_id, d.day + h.hour * interval '1 hour' AS hour, h.total
    FROM p2pay.account_daily d, unnest(d.out_hours, d.out_hour_sums) h (hour, total);
-- What the rules read for a payment now: the payers' hours of the last
-- day, each account's first day, and its daily rows of the last 30 days.
CREATE TABLE read_hourly AS
  SELECT * FROM day_hours WHERE hour >= date_trunc('hour', now() - interval '25 hours');
CREATE TABLE read_first AS
  SELECT user_id, min(day) AS first FROM p2pay.account_daily GROUP BY user_id;
CREATE TABLE read_daily AS
  SELECT * FROM p2pay.account_daily WHERE day >= current_date - 31;
-- and the verdicts of payments now, small, large and in the structuring band
CREATE TABLE verdicts AS
  SELECT n, amount, s.*
    FROM generate_series(1, 10) n, (VALUES (50), (9500), (15000)) a(amount),
         LATERAL p2pay.score(u(n), u(1 + n % 10), amount, 'USD',
                             '00000000-0000-4000-8000-000000000001', now()) s;
SELECT count(*) AS verdicts, count(*) FILTER (WHERE decision <> 'approve') AS flagged FROM verdicts;

-- A payer_velocity_amount window longer than 30 days keeps the days its
-- hours are in: with 45 days, the days back to keep + 45 days stay.
BEGIN;
UPDATE p2pay.rules SET params = params || '{"window": "45 days"}' WHERE name = 'payer_velocity_amount';
SELECT days > 0 AS days_pruned FROM p2pay.prune_state();
SELECT count(*) FILTER (WHERE d.day < (now() - interval '76 days')::date
                          AND d.day > (SELECT min(f.day) FROM p2pay.account_daily f
                                        WHERE f.user_id = d.user_id)) AS older_days_left,
       count(*) FILTER (WHERE d.day >= (now() - interval '76 days')::date
                          AND d.day < current_date - 61) > 0 AS window_days_kept
  FROM p2pay.account_daily d;
ROLLBACK;

CREATE TABLE before AS
  SELECT (SELECT count(*) FROM day_hours) AS hours, (SELECT count(*) FROM p2pay.account_daily) AS days;
CREATE TABLE pruned AS SELECT * FROM p2pay.prune_state();
-- what it says it deleted is what went
SELECT p.hours > 0 AS hours_pruned, p.days > 0 AS days_pruned,
       p.hours = b.hours - (SELECT count(*) FROM day_hours) AS hours_counted,
       p.days = b.days - (SELECT count(*) FROM p2pay.account_daily) AS days_counted
  FROM pruned p, before b;

-- nothing read is gone
SELECT count(*) AS hourly_lost FROM (SELECT * FROM read_hourly EXCEPT SELECT * FROM day_hours) x;
SELECT count(*) AS first_days_changed FROM
  (SELECT * FROM read_first EXCEPT SELECT user_id, min(day) FROM p2pay.account_daily GROUP BY user_id) x;
SELECT count(*) AS daily_lost FROM (SELECT * FROM read_daily EXCEPT SELECT * FROM p2pay.account_daily) x;
-- what is left: the days of the 30 before the last 31, and one first day
-- per account, each with its hours
SELECT count(*) AS old_hours_left FROM day_hours h
 WHERE h.hour < current_date - 61
   AND h.hour::date > (SELECT min(f.day) FROM p2pay.account_daily f WHERE f.user_id = h.user_id);
SELECT count(*) AS old_days_left, count(DISTINCT user_id) AS accounts
  FROM p2pay.account_daily WHERE day < current_date - 61;
SELECT count(*) AS verdicts_changed FROM
  (SELECT * FROM verdicts
   EXCEPT
   SELECT n, amount, s.*
     FROM generate_series(1, 10) n, (VALUES (50), (9500), (15000)) a(amount),
          LATERAL p2pay.score(u(n), u(1 + n % 10), amount, 'USD',
                              '00000000-0000-4000-8000-000000000001', now()) s) x;

-- payments go on as before, and a second pruning finds nothing more
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
VALUES (u(9), u(10), 50, 'USD', '00000000-0000-4000-8000-000000000001')
RETURNING decision;
SELECT * FROM p2pay.prune_state();

-- less than the 30 days of a normal is refused, and more than ten years
\set VERBOSITY sqlstate
SELECT * FROM p2pay.prune_state('30 days');
SELECT * FROM p2pay.prune_state(NULL);
SELECT * FROM p2pay.prune_state('300000 years');
\set VERBOSITY default
SELECT * FROM p2pay.prune_state('30 days');

-- only the owner may prune
CREATE ROLE p2pay_prune_nobody;
SET ROLE p2pay_prune_nobody;
\set VERBOSITY sqlstate
SELECT * FROM p2pay.prune_state();
\set VERBOSITY default
RESET ROLE;
DROP ROLE p2pay_prune_nobody;

DROP TABLE read_hourly, read_first, read_daily, verdicts, before, pruned;
DROP VIEW day_hours;
DROP FUNCTION u(int);
DROP EXTENSION p2pay;
