-- Bulk loading history: payments loaded with the trigger off are not in the
-- per-account state until p2pay.rebuild_state() counts it from the
-- payments; what it counts is what the trigger would have kept.
CREATE EXTENSION p2pay;
SET TimeZone = 'UTC';

CREATE FUNCTION u(n int) RETURNS uuid LANGUAGE sql IMMUTABLE
  AS $$ SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid $$;
INSERT INTO p2pay.users (id, created_at) SELECT u(n), '2020-01-01' FROM generate_series(1, 20) n;
INSERT INTO p2pay.user_payment_methods
  SELECT u(n), '00000000-0000-4000-8000-000000000001' FROM generate_series(1, 20) n;

-- 300 payments through the trigger, in time order over three days: each
-- user pays the next three, each of them about five times, in USD and EUR.
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT u(1 + i % 20), u(1 + (i % 20 + 1 + (i / 20) % 3) % 20),
       10 + i % 37, CASE WHEN i % 5 = 0 THEN 'EUR' ELSE 'USD' END,
       '00000000-0000-4000-8000-000000000001',
       '2026-03-01 00:00+00'::timestamptz + i * interval '14 minutes'
  FROM generate_series(0, 299) i
 ORDER BY i;

-- The state as the trigger kept it.
CREATE TABLE kept_account AS SELECT * FROM p2pay.account_stats;
CREATE TABLE kept_pair AS SELECT * FROM p2pay.pair_stats;
CREATE TABLE kept_daily AS SELECT * FROM p2pay.account_daily;
SELECT (SELECT count(*) FROM kept_account) AS accounts, (SELECT count(*) FROM kept_pair) AS pairs,
       (SELECT sum(cardinality(out_hours)) FROM kept_daily) AS hours, (SELECT count(*) FROM kept_daily) AS days;

-- Counted again from the payments, it is the same, row for row.
SELECT p2pay.rebuild_state();
SELECT 'account_stats' AS differs, count(*) FROM
  ((TABLE kept_account EXCEPT TABLE p2pay.account_stats) UNION ALL (TABLE p2pay.account_stats EXCEPT TABLE kept_account)) d
UNION ALL
SELECT 'pair_stats', count(*) FROM
  ((TABLE kept_pair EXCEPT TABLE p2pay.pair_stats) UNION ALL (TABLE p2pay.pair_stats EXCEPT TABLE kept_pair)) d
UNION ALL
SELECT 'account_daily', count(*) FROM
  ((TABLE kept_daily EXCEPT TABLE p2pay.account_daily) UNION ALL (TABLE p2pay.account_daily EXCEPT TABLE kept_daily)) d;

-- A history loaded pre-scored with the trigger off: 30 earlier payments
-- from 1 to 10 are not counted until the state is rebuilt.  Then the pair
-- is known, and so is payer 1, since January (min_known_days 30): a large
-- payment from 1 to 10 is not to a new payee, one from 1 to 11 is.
SET session_replication_role = replica;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at,
                            risk_score, decision, is_approved, reasons, amount_base)
SELECT u(1), u(10), 50, 'USD', '00000000-0000-4000-8000-000000000001',
       '2026-01-01 00:00+00'::timestamptz + n * interval '1 day', 0, 'approve', true, '{}', 50
  FROM generate_series(1, 30) n;
RESET session_replication_role;
SELECT count(*) FROM p2pay.pair_stats WHERE payer_id = u(1) AND payee_id = u(10);
SELECT payee, reasons
  FROM (VALUES (10), (11)) v (payee),
       p2pay.score(u(1), u(payee), 2000, 'USD', '00000000-0000-4000-8000-000000000001',
                   '2026-03-05 00:00+00');
SELECT p2pay.rebuild_state();
SELECT n, total, first_at FROM p2pay.pair_stats WHERE payer_id = u(1) AND payee_id = u(10);
SELECT payee, reasons
  FROM (VALUES (10), (11)) v (payee),
       p2pay.score(u(1), u(payee), 2000, 'USD', '00000000-0000-4000-8000-000000000001',
                   '2026-03-05 00:00+00');

-- A payment without amount_base can't be counted: an error, and the state
-- is left as it was.
SET session_replication_role = replica;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
VALUES (u(3), u(4), 10, 'USD', '00000000-0000-4000-8000-000000000001', '2026-02-01 00:00+00');
RESET session_replication_role;
\set VERBOSITY sqlstate
SELECT p2pay.rebuild_state();
\set VERBOSITY default
SELECT count(*) FROM p2pay.account_stats;

-- Only the owner may rebuild.
CREATE ROLE p2pay_bulk_nobody;
SET ROLE p2pay_bulk_nobody;
\set VERBOSITY sqlstate
SELECT p2pay.rebuild_state();
\set VERBOSITY default
RESET ROLE;
DROP ROLE p2pay_bulk_nobody;

-- rebuild_state() keeps the state rows it writes in memory, up to
-- maintenance_work_mem, then writes them to their tables and reads them
-- back from there as later payments change them.  20,000 payments an hour
-- apart, at the smallest setting, which writes them out many times, count
-- what they count with room to spare.
SET session_replication_role = replica;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at,
                            risk_score, decision, is_approved, reasons, amount_base)
SELECT u(1 + i % 20), u(1 + (i % 20 + 1 + i % 7) % 20), 10 + i % 37, 'USD',
       '00000000-0000-4000-8000-000000000001',
       '2024-06-01 00:00+00'::timestamptz + i * interval '1 hour' + (i % 13) * interval '1 minute',
       0, 'approve', true, '{}', 10 + i % 37
  FROM generate_series(1, 20000) i;
DELETE FROM p2pay.payments WHERE amount_base IS NULL;
RESET session_replication_role;
SELECT p2pay.rebuild_state();
TRUNCATE kept_account, kept_pair, kept_daily;
INSERT INTO kept_account SELECT * FROM p2pay.account_stats;
INSERT INTO kept_pair SELECT * FROM p2pay.pair_stats;
INSERT INTO kept_daily SELECT * FROM p2pay.account_daily;
SELECT (SELECT count(*) FROM kept_account) AS accounts, (SELECT count(*) FROM kept_pair) AS pairs,
       (SELECT sum(cardinality(out_hours)) FROM kept_daily) AS hours, (SELECT count(*) FROM kept_daily) AS days;
SET maintenance_work_mem = '1MB';
SELECT p2pay.rebuild_state();
RESET maintenance_work_mem;
SELECT 'account_stats' AS differs, count(*) FROM
  ((TABLE kept_account EXCEPT ALL TABLE p2pay.account_stats) UNION ALL (TABLE p2pay.account_stats EXCEPT ALL TABLE kept_account)) d
UNION ALL
SELECT 'pair_stats', count(*) FROM
  ((TABLE kept_pair EXCEPT ALL TABLE p2pay.pair_stats) UNION ALL (TABLE p2pay.pair_stats EXCEPT ALL TABLE kept_pair)) d
UNION ALL
SELECT 'account_daily', count(*) FROM
  ((TABLE kept_daily EXCEPT ALL TABLE p2pay.account_daily) UNION ALL (TABLE p2pay.account_daily EXCEPT ALL TABLE kept_daily)) d;
-- and what the payments count, in SQL: each account's totals
SELECT count(*) AS accounts_that_differ
  FROM p2pay.account_stats a
  FULL JOIN (SELECT user_id, sum(o) AS out_count, sum(os) AS out_sum, sum(i) AS in_count, sum(s) AS in_sum
               FROM (SELECT payer_id AS user_id, 1 AS o, amount_base AS os, 0 AS i, 0 AS s FROM p2pay.payments
                     UNION ALL
                     SELECT payee_id, 0, 0, 1, amount_base FROM p2pay.payments) p
              GROUP BY user_id) t USING (user_id)
 WHERE (a.out_count, a.out_sum, a.in_count, a.in_sum)
       IS DISTINCT FROM (t.out_count, t.out_sum, t.in_count, t.in_sum);

-- Payments the trigger refuses, loaded with it off, can't be counted
-- either: a payer paying itself, a time that is not finite, an amount that
-- is not finite.  An error, and the state is left as it was.
SET session_replication_role = replica;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at,
                            risk_score, decision, is_approved, reasons, amount_base)
VALUES (u(5), u(5), 10, 'USD', '00000000-0000-4000-8000-000000000001', '2026-02-01 00:00+00',
        0, 'approve', true, '{}', 10);
RESET session_replication_role;
SELECT p2pay.rebuild_state();
\echo :LAST_ERROR_SQLSTATE
SET session_replication_role = replica;
UPDATE p2pay.payments SET payee_id = u(6), created_at = 'infinity' WHERE payer_id = payee_id;
RESET session_replication_role;
SELECT p2pay.rebuild_state();
\echo :LAST_ERROR_SQLSTATE
SET session_replication_role = replica;
UPDATE p2pay.payments SET created_at = '2026-02-01 00:00+00', amount = 'NaN', amount_base = 'NaN'
 WHERE created_at = 'infinity';
RESET session_replication_role;
SELECT p2pay.rebuild_state();
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS accounts, sum(out_count) AS payments FROM p2pay.account_stats;

DROP TABLE kept_account, kept_pair, kept_daily;
DROP FUNCTION u(int);
DROP EXTENSION p2pay;
