-- A statement that inserts payments keeps the account state they change in
-- memory from its second payment on, and writes it when it ends: each
-- state row once per statement, not once per payment.  Each payment is
-- still scored against everything before it, the statement's own earlier
-- payments included; a statement rolled back, in whole or to a savepoint,
-- leaves no trace in the state.
CREATE EXTENSION p2pay;
SET TimeZone = 'UTC';

CREATE FUNCTION u(n int) RETURNS uuid LANGUAGE sql IMMUTABLE
  AS $$ SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid $$;
INSERT INTO p2pay.users (id, created_at) SELECT u(n), '2020-01-01' FROM generate_series(1, 30) n;
\i test/state_vs_recount.sql
-- Row versions written in each state table since mark_writes(), in the
-- same transaction (the counts not yet reported include earlier ones').
CREATE FUNCTION write_counts() RETURNS TABLE (tbl text, inserted bigint, updated bigint)
LANGUAGE sql AS $$
  SELECT c.relname::text, pg_stat_get_xact_tuples_inserted(c.oid), pg_stat_get_xact_tuples_updated(c.oid)
    FROM pg_class c
   WHERE c.relnamespace = 'p2pay'::regnamespace
     AND c.relname IN ('account_stats', 'account_daily', 'pair_stats')
$$;
CREATE TABLE writes_mark AS SELECT * FROM write_counts();
CREATE FUNCTION mark_writes() RETURNS void LANGUAGE sql AS $$
  DELETE FROM writes_mark; INSERT INTO writes_mark SELECT * FROM write_counts();
$$;
CREATE FUNCTION writes() RETURNS TABLE (tbl text, inserted bigint, updated bigint)
LANGUAGE sql AS $$
  SELECT w.tbl, w.inserted - m.inserted, w.updated - m.updated
    FROM write_counts() w JOIN writes_mark m USING (tbl) ORDER BY 1
$$;

-- 1. One INSERT of 100 payments from user 1 to user 2, within an hour.
-- Each account's row is written by the first payment, then once at the
-- statement's end (the payee's row of the day is not: the pair was new
-- that day only once); the pair's row, written through, once per payment.
BEGIN;
SELECT mark_writes();
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT u(1), u(2), 9000, 'USD', '00000000-0000-4000-8000-000000000001',
       '2026-03-01 10:00+00'::timestamptz + i * interval '10 seconds'
  FROM generate_series(1, 100) i;
SELECT * FROM writes();
COMMIT;
-- The payer's total in the window, kept in memory, reached the rule from
-- the third payment on (27,000 > 20,000).
SELECT id, decision, 'payer_velocity_amount' = ANY (reasons) AS velocity_amount
  FROM p2pay.payments ORDER BY id LIMIT 4;
SELECT * FROM state_vs_recount();

-- 2. The same verdicts, one statement or one statement per payment: 120
-- payments among 12 accounts over five days, out of time order, with
-- fan-out and fan-in low enough to read each account's normal.
UPDATE p2pay.rules SET params = params || '{"max_payees": 2, "baseline_days": 3, "baseline_factor": 1}'
 WHERE name = 'payer_fan_out';
UPDATE p2pay.rules SET params = params || '{"max_payers": 2, "baseline_days": 3, "baseline_factor": 1}'
 WHERE name = 'payee_fan_in';
CREATE TABLE plan AS
SELECT i, ('00000000-0000-4000-9000-' || lpad(i::text, 12, '0'))::uuid AS tx,
       u(3 + i % 12) AS payer, u(3 + (i * 7 + 1 + i / 12) % 12) AS payee,
       50 + (i * 37) % 1500 AS amount,
       '2026-03-10 00:00+00'::timestamptz + ((i * 53) % 120) * interval '1 hour' AS at
  FROM generate_series(1, 120) i;
DELETE FROM plan WHERE payer = payee;
INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT tx, payer, payee, amount, 'USD', '00000000-0000-4000-8000-000000000001', at FROM plan ORDER BY i;
CREATE TABLE verdicts_one AS
SELECT transaction_id, risk_score, decision, reasons FROM p2pay.payments WHERE transaction_id IN (SELECT tx FROM plan);
SELECT count(*) AS payments, count(*) FILTER (WHERE reasons && '{payer_fan_out,payee_fan_in}') AS fan_flagged
  FROM verdicts_one;
SELECT * FROM state_vs_recount();
-- reversed, they leave the state as it was before them
DELETE FROM p2pay.payments WHERE transaction_id IN (SELECT tx FROM plan);
SELECT * FROM state_vs_recount();
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT * FROM plan ORDER BY i LOOP
    INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency, payment_method_id, created_at)
    VALUES (r.tx, r.payer, r.payee, r.amount, 'USD', '00000000-0000-4000-8000-000000000001', r.at);
  END LOOP;
END $$;
SELECT count(*) AS compared FROM verdicts_one v JOIN p2pay.payments p USING (transaction_id);
SELECT v.transaction_id, v.decision, v.reasons, p.decision, p.reasons
  FROM verdicts_one v JOIN p2pay.payments p USING (transaction_id)
 WHERE (v.risk_score, v.decision, v.reasons) IS DISTINCT FROM (p.risk_score, p.decision, p.reasons);
SELECT * FROM state_vs_recount();
-- 600 payments over 600 hours in one statement, with the rows kept
-- outgrowing work_mem many times (written, and read back from the tables),
-- get the verdicts they get when written once at the end.
CREATE TABLE plan2 AS
SELECT i, ('00000000-0000-4000-a000-' || lpad(i::text, 12, '0'))::uuid AS tx,
       u(3 + i % 12) AS payer, u(3 + (i * 5 + 1 + i / 12) % 12) AS payee,
       50 + (i * 37) % 1500 AS amount,
       '2026-03-20 00:00+00'::timestamptz + ((i * 53) % 600) * interval '1 hour' AS at
  FROM generate_series(1, 600) i;
DELETE FROM plan2 WHERE payer = payee;
BEGIN;
SELECT mark_writes();
INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT tx, payer, payee, amount, 'USD', '00000000-0000-4000-8000-000000000001', at FROM plan2 ORDER BY i;
SELECT tbl, updated FROM writes() WHERE tbl = 'account_stats';
COMMIT;
CREATE TABLE verdicts_two AS
SELECT transaction_id, risk_score, decision, reasons FROM p2pay.payments WHERE transaction_id IN (SELECT tx FROM plan2);
DELETE FROM p2pay.payments WHERE transaction_id IN (SELECT tx FROM plan2);
SET work_mem = '64kB';
BEGIN;
SELECT mark_writes();
INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT tx, payer, payee, amount, 'USD', '00000000-0000-4000-8000-000000000001', at FROM plan2 ORDER BY i;
SELECT updated > 24 AS flushed_often FROM writes() WHERE tbl = 'account_stats';
COMMIT;
RESET work_mem;
SELECT count(*) AS compared FROM verdicts_two v JOIN p2pay.payments p USING (transaction_id);
SELECT v.transaction_id, v.decision, v.reasons, p.decision, p.reasons
  FROM verdicts_two v JOIN p2pay.payments p USING (transaction_id)
 WHERE (v.risk_score, v.decision, v.reasons) IS DISTINCT FROM (p.risk_score, p.decision, p.reasons);
SELECT * FROM state_vs_recount();

-- 3. A statement that fails part way, and one rolled back to a savepoint,
-- leave the state as it was.
BEGIN;
SAVEPOINT s;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT u(5), u(6), 10, CASE WHEN i = 30 THEN 'XXX' ELSE 'USD' END,
       '00000000-0000-4000-8000-000000000001', '2026-03-02 10:00+00'::timestamptz + i * interval '1 minute'
  FROM generate_series(1, 50) i;
ROLLBACK TO s;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT u(7), u(8), 10, 'USD', '00000000-0000-4000-8000-000000000001',
       '2026-03-02 10:00+00'::timestamptz + i * interval '1 minute'
  FROM generate_series(1, 50) i;
ROLLBACK TO s;
COMMIT;
SELECT count(*) FROM p2pay.account_stats WHERE user_id IN (u(5), u(6), u(7), u(8));
SELECT * FROM state_vs_recount();

-- 4. COPY: its payments keep the state as an INSERT's do.
COPY p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at) FROM stdin;
00000000-0000-4000-8000-000000000009	00000000-0000-4000-8000-000000000010	100	USD	00000000-0000-4000-8000-000000000001	2026-03-03 10:00:00+00
00000000-0000-4000-8000-000000000009	00000000-0000-4000-8000-000000000010	200	USD	00000000-0000-4000-8000-000000000001	2026-03-03 10:01:00+00
00000000-0000-4000-8000-000000000010	00000000-0000-4000-8000-000000000009	300	USD	00000000-0000-4000-8000-000000000001	2026-03-04 10:00:00+00
00000000-0000-4000-8000-000000000009	00000000-0000-4000-8000-000000000011	400	EUR	00000000-0000-4000-8000-000000000001	2026-03-02 23:59:59+00
\.
SELECT user_id, out_count, out_sum, in_count, in_sum FROM p2pay.account_stats
 WHERE user_id IN (u(9), u(10), u(11)) ORDER BY 1;
SELECT * FROM state_vs_recount();

-- 5. A payment inserted in a subtransaction begun inside such a statement
-- (an exception block of a function it calls), while the statement keeps
-- rows, is refused: the rows kept are not its subtransaction's.
CREATE FUNCTION pay_inside(i int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  BEGIN
    INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
    VALUES (u(20), u(21), 10, 'USD', '00000000-0000-4000-8000-000000000001', '2026-03-05 10:00+00');
  EXCEPTION WHEN unique_violation THEN
    RETURN false;
  END;
  RETURN true;
END $$;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT u(22), u(23), 10, 'USD', '00000000-0000-4000-8000-000000000001', '2026-03-05 10:00+00'
  FROM generate_series(1, 5) i WHERE pay_inside(i);
SELECT count(*) FROM p2pay.payments WHERE payer_id IN (u(20), u(22));
-- Without an exception block, the function's payments are a statement of
-- their own in the same subtransaction: their rows are written first.
CREATE FUNCTION pay_plain(i int) RETURNS boolean LANGUAGE sql AS $$
  INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
  VALUES (u(20), u(21), 10, 'USD', '00000000-0000-4000-8000-000000000001', '2026-03-05 10:00+00')
  RETURNING true
$$;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT u(22), u(23), 10, 'USD', '00000000-0000-4000-8000-000000000001', '2026-03-05 10:00+00'
  FROM generate_series(1, 5) i WHERE pay_plain(i);
SELECT payer_id = u(20) AS inside, count(*) FROM p2pay.payments WHERE payer_id IN (u(20), u(22)) GROUP BY 1 ORDER BY 1;
SELECT * FROM state_vs_recount();

-- 6. Either statement trigger disabled alone, no rows are kept: each
-- payment writes its rows through.
ALTER TABLE p2pay.payments DISABLE TRIGGER payments_batch_end;
BEGIN;
SELECT mark_writes();
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT u(24), u(25), 10, 'USD', '00000000-0000-4000-8000-000000000001',
       '2026-03-06 10:00+00'::timestamptz + i * interval '1 minute'
  FROM generate_series(1, 10) i;
SELECT * FROM writes() WHERE tbl = 'account_stats';
COMMIT;
ALTER TABLE p2pay.payments ENABLE TRIGGER payments_batch_end;
SELECT * FROM state_vs_recount();

-- 7. A row the statement keeps whose stored version something else
-- changes meanwhile (here a function the statement calls) is not written
-- over: the statement fails with 40001 and leaves the state as it was.
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
VALUES (u(26), u(27), 10, 'USD', '00000000-0000-4000-8000-000000000001', '2026-03-07 10:00+00');
-- touch_state() runs cmd as the statement reaches its third row.
CREATE FUNCTION touch_state(i int, cmd text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  IF i = 3 THEN
    EXECUTE cmd;
  END IF;
  RETURN true;
END $$;
CREATE FUNCTION pay_touching(cmd text) RETURNS void LANGUAGE sql AS $$
  INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
  SELECT u(26), u(27), 10, 'USD', '00000000-0000-4000-8000-000000000001',
         '2026-03-07 10:00+00'::timestamptz + i * interval '1 minute'
    FROM generate_series(1, 4) i WHERE touch_state(i, cmd)
$$;
SELECT pay_touching('UPDATE p2pay.account_stats SET out_count = out_count WHERE user_id = u(26)');
\echo :LAST_ERROR_SQLSTATE
-- The same when a table of the state is emptied meanwhile.
SELECT pay_touching('TRUNCATE p2pay.account_daily');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM p2pay.payments WHERE payer_id = u(26);
SELECT user_id, out_count, in_count FROM p2pay.account_stats WHERE user_id IN (u(26), u(27)) ORDER BY 1;
SELECT * FROM state_vs_recount();

-- 8. A statement whose rows are kept but never written (its BEFORE
-- statement trigger fired, its AFTER one did not: here a function it
-- calls turns session_replication_role to replica part way) can't commit.
CREATE FUNCTION replica_from(i int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  IF i = 3 THEN
    PERFORM set_config('session_replication_role', 'replica', true);
  END IF;
  RETURN true;
END $$;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT u(28), u(29), 10, 'USD', '00000000-0000-4000-8000-000000000001',
       '2026-03-07 11:00+00'::timestamptz + i * interval '1 minute'
  FROM generate_series(1, 4) i WHERE replica_from(i);
\echo :LAST_ERROR_SQLSTATE
SHOW session_replication_role;
SELECT count(*) FROM p2pay.payments WHERE payer_id = u(28);
SELECT * FROM state_vs_recount();

-- 9. A statement across midnight: the payer's day row of the evening,
-- kept in memory, takes the place of its stored version when the
-- velocity amount of the night's payments reads its hours (8,000 twice in
-- the evening, then 24,000 > 20,000 from the first payment after
-- midnight on).
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT u(30), u(1), 8000, 'USD', '00000000-0000-4000-8000-000000000001', at
  FROM unnest(ARRAY['2026-03-09 23:00+00', '2026-03-09 23:30+00',
                    '2026-03-10 00:30+00', '2026-03-10 01:00+00']::timestamptz[]) at;
SELECT created_at, 'payer_velocity_amount' = ANY (reasons) AS velocity_amount
  FROM p2pay.payments WHERE payer_id = u(30) ORDER BY created_at;
SELECT day, out_count, out_hours, out_hour_sums FROM p2pay.account_daily
 WHERE user_id = u(30) ORDER BY day;
SELECT * FROM state_vs_recount();

-- 10. A state row the transaction changes between two such statements (a
-- manual UPDATE) is read as it was changed: the next statement's payments
-- add to it, whatever the previous statement wrote where.
BEGIN;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT u(26), u(27), 10, 'USD', '00000000-0000-4000-8000-000000000001',
       '2026-03-07 10:00+00'::timestamptz + i * interval '1 minute'
  FROM generate_series(1, 5) i;
UPDATE p2pay.account_stats SET out_count = out_count + 1000 WHERE user_id = u(26);
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT u(26), u(27), 10, 'USD', '00000000-0000-4000-8000-000000000001',
       '2026-03-07 11:00+00'::timestamptz + i * interval '1 minute'
  FROM generate_series(1, 5) i;
SELECT user_id, out_count, out_sum, in_count, in_sum FROM p2pay.account_stats
 WHERE user_id IN (u(26), u(27)) ORDER BY 1;
-- Emptied between them, the next statement's payments start the rows again.
TRUNCATE p2pay.account_stats;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT u(26), u(27), 10, 'USD', '00000000-0000-4000-8000-000000000001',
       '2026-03-07 12:00+00'::timestamptz + i * interval '1 minute'
  FROM generate_series(1, 5) i;
SELECT user_id, out_count, out_sum, in_count, in_sum FROM p2pay.account_stats
 WHERE user_id IN (u(26), u(27)) ORDER BY 1;
ROLLBACK;
SELECT * FROM state_vs_recount();

-- 7. A payment whose pair has paid earlier that day doesn't write the
-- payee's row of the day, whose count of new payers it doesn't change:
-- the second of two payments from 28 to 29 updates the payer's row alone.
BEGIN;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
VALUES (u(28), u(29), 10, 'USD', '00000000-0000-4000-8000-000000000001', '2026-03-09 10:00+00');
SELECT mark_writes();
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
VALUES (u(28), u(29), 10, 'USD', '00000000-0000-4000-8000-000000000001', '2026-03-09 11:00+00');
SELECT * FROM writes();
COMMIT;
SELECT user_id = u(28) AS payer, out_count, out_payees, in_payers FROM p2pay.account_daily
 WHERE user_id IN (u(28), u(29)) AND day = '2026-03-09' ORDER BY 1;
SELECT * FROM state_vs_recount();

DROP TABLE plan, plan2, verdicts_one, verdicts_two, writes_mark;
DROP FUNCTION state_vs_recount(), writes(), mark_writes(), write_counts(), pay_inside(int), pay_plain(int),
  touch_state(int, text), pay_touching(text), replica_from(int);
DROP VIEW recount_account_stats, recount_pair_stats, recount_account_daily, recount_day_hours;
DROP FUNCTION u(int);
DROP EXTENSION p2pay;
