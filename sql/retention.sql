-- Retention that keeps the memory: p2pay.delete_mode = archive deletes old
-- payments without taking them out of the per-account state or putting
-- them on the stream; a reversal (the default mode) subtracts exactly its
-- payment, whatever was archived; a transaction deletes in one mode.
CREATE EXTENSION p2pay;
SET TimeZone = 'UTC';

SELECT 'created' FROM pg_create_logical_replication_slot('p2pay_retention', 'p2pay');
CREATE FUNCTION stream() RETURNS SETOF text LANGUAGE sql AS $$
  SELECT data FROM pg_logical_slot_get_changes('p2pay_retention', NULL, NULL,
    'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0', 'include-approved', '1')
$$;

CREATE FUNCTION u(n int) RETURNS uuid LANGUAGE sql IMMUTABLE
  AS $$ SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid $$;
-- 1: the tenant, 2: the landlord, 3: a friend the tenant pays now and then
INSERT INTO p2pay.users (id, created_at) SELECT u(n), '2020-01-01' FROM generate_series(1, 3) n;
INSERT INTO p2pay.user_payment_methods VALUES (u(1), '00000000-0000-4000-8000-000000000001');

-- Two years of rent, on the 5th of every month, and a meal with the friend
-- each quarter; each payment with a transaction_id that names it.
CREATE FUNCTION tid(payee int, at timestamptz) RETURNS uuid LANGUAGE sql IMMUTABLE
  AS $$ SELECT ('aaaaaaaa-0000-4000-8000-' || lpad(payee::text, 2, '0')
                 || to_char(at AT TIME ZONE 'UTC', 'YYMMDDHH24MI'))::uuid $$;
CREATE FUNCTION pay(payee int, amount numeric, at timestamptz) RETURNS text
LANGUAGE sql AS $$
  INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency,
                              payment_method_id, created_at)
  VALUES (tid(payee, at), u(1), u(payee), amount, 'USD', '00000000-0000-4000-8000-000000000001', at)
  RETURNING decision::text
$$;
SELECT count(*) FROM (
  SELECT pay(2, 1500, '2024-01-05 10:00+00'::timestamptz + i * interval '1 month')
    FROM generate_series(0, 23) i
  UNION ALL
  SELECT pay(3, 40, '2024-02-10 20:00+00'::timestamptz + i * interval '3 months')
    FROM generate_series(0, 7) i) t;
SELECT count(*) AS skipped FROM stream();

-- What a payment of the rent would get at the start of 2026.
CREATE FUNCTION rent_verdict() RETURNS TABLE (decision text, reasons text[])
LANGUAGE sql AS $$
  SELECT s.decision::text, s.reasons
    FROM p2pay.score(u(1), u(2), 1500, 'USD', '00000000-0000-4000-8000-000000000001',
                     '2026-01-04 10:00+00')
      AS s
$$;
SELECT * FROM rent_verdict();

-- The per-account state, to compare it before and after.
CREATE FUNCTION state() RETURNS SETOF text LANGUAGE sql AS $$
  SELECT 'account ' || a::text FROM p2pay.account_stats a
  UNION ALL SELECT 'pair ' || p::text FROM p2pay.pair_stats p
  UNION ALL SELECT 'day ' || d::text FROM p2pay.account_daily d
$$;
CREATE TABLE state_before AS SELECT * FROM state() s;

------------------------------------------------------------------------------
-- Archiving: the retention job deletes what is older than mid-2025.
------------------------------------------------------------------------------
BEGIN;
SET LOCAL p2pay.delete_mode = archive;
DELETE FROM p2pay.payments WHERE created_at < '2025-07-01';
COMMIT;
SELECT count(*) AS present FROM p2pay.payments;
-- The state is as it was (nothing differs), the landlord is no new payee,
-- and the stream has nothing for the archived payments.
(SELECT * FROM state() EXCEPT SELECT * FROM state_before)
UNION ALL (SELECT * FROM state_before EXCEPT SELECT * FROM state());
SELECT * FROM rent_verdict();
SELECT * FROM stream();
-- backtest() replays from the payments, which no longer hold the archived
-- ones: from July 2025 on, the landlord is a new payee again.  The tenant's
-- first day comes from account_daily, which keeps it: the tenant has the
-- 30 days of history that min_known_days asks for.
SELECT b.created_at, 'new_payee_high_amount' = ANY (b.reasons) AS new_payee,
       'new_payee_high_amount' = ANY (b.reasons_at_time) AS new_payee_at_time
  FROM p2pay.backtest_payments('2025-07-01', '2025-07-06',
         '[{"name": "new_payee_high_amount", "params": {"min_known_days": 30}}]') b;

-- A delete in the default mode, by an analyst or the application, in
-- another transaction, is a reversal: a deleted event, and the payment
-- leaves the state.  The pair stays (18 archived payments still count in
-- it), and its last time is now the last payment that remains.
SHOW p2pay.delete_mode;
DELETE FROM p2pay.payments WHERE transaction_id = tid(2, '2025-12-05 10:00+00');
SELECT * FROM stream();
SELECT first_at, last_at, n, total FROM p2pay.pair_stats WHERE payee_id = u(2);
SELECT * FROM rent_verdict();

-- Reversing every payment to the landlord that remains, in one statement:
-- the pair still has its archived payments, whose times are not known any
-- more, so its last time moves back to its first; the landlord is still
-- no new payee.
DELETE FROM p2pay.payments WHERE payee_id = u(2);
SELECT count(*) AS deleted_events FROM stream() e WHERE e LIKE '{"event":"deleted"%';
SELECT first_at, last_at, n, total FROM p2pay.pair_stats WHERE payee_id = u(2);
SELECT 'new_payee_high_amount' = ANY (reasons) AS new_payee FROM rent_verdict();
SELECT out_count, out_sum FROM p2pay.account_stats WHERE user_id = u(1);

------------------------------------------------------------------------------
-- The day of a reversed payment, with archived payments that day.
------------------------------------------------------------------------------
CREATE FUNCTION day(d date) RETURNS TABLE (who text, out_count bigint, out_payees bigint,
                                           in_payers bigint)
LANGUAGE sql AS $$
  SELECT CASE a.user_id WHEN u(1) THEN 'tenant' WHEN u(2) THEN 'landlord' ELSE 'friend' END,
         a.out_count, a.out_payees, a.in_payers
    FROM p2pay.account_daily a WHERE a.day = d ORDER BY 1
$$;
SELECT pay(2, 200, '2026-02-01 08:00+00'), pay(3, 50, '2026-02-01 09:00+00'),
       pay(2, 300, '2026-02-01 20:00+00');
SELECT * FROM day('2026-02-01');
-- The meal archived, then the morning's rent reversed: the tenant still
-- paid two payees that day (one payment archived), the landlord was still
-- paid by the tenant.
BEGIN;
SET LOCAL p2pay.delete_mode = archive;
DELETE FROM p2pay.payments WHERE transaction_id = tid(3, '2026-02-01 09:00+00');
COMMIT;
DELETE FROM p2pay.payments WHERE transaction_id = tid(2, '2026-02-01 08:00+00');
SELECT * FROM day('2026-02-01');
-- The evening's rent reversed too: the landlord's day is gone; the
-- tenant's day keeps its archived meal.
DELETE FROM p2pay.payments WHERE transaction_id = tid(2, '2026-02-01 20:00+00');
SELECT * FROM day('2026-02-01');
SELECT count(*) AS deleted_events FROM stream() e WHERE e LIKE '{"event":"deleted"%';
-- What archiving can't keep exact: of a pair's two payments on a day, one
-- archived and the other reversed, the day no longer counts the pair.
SELECT pay(2, 210, '2026-02-02 08:00+00'), pay(2, 310, '2026-02-02 20:00+00');
BEGIN;
SET LOCAL p2pay.delete_mode = archive;
DELETE FROM p2pay.payments WHERE transaction_id = tid(2, '2026-02-02 08:00+00');
COMMIT;
DELETE FROM p2pay.payments WHERE transaction_id = tid(2, '2026-02-02 20:00+00');
SELECT * FROM day('2026-02-02');
SELECT n, total FROM p2pay.pair_stats WHERE payee_id = u(2);
SELECT count(*) AS skipped FROM stream();

------------------------------------------------------------------------------
-- One mode per transaction.
------------------------------------------------------------------------------
SELECT count(*) FROM (
  SELECT pay(3, 10 + i, '2026-03-01 09:00+00'::timestamptz + i * interval '1 hour')
    FROM generate_series(1, 6) i) t;
SELECT count(*) AS skipped FROM stream();
CREATE FUNCTION meal(i int) RETURNS uuid LANGUAGE sql IMMUTABLE
  AS $$ SELECT tid(3, '2026-03-01 09:00+00'::timestamptz + i * interval '1 hour') $$;
CREATE TABLE state_before_modes AS SELECT * FROM state() s;

-- After an archive, a reversal in the same transaction is refused, whether
-- the setting is changed (refused too) or reset.
BEGIN;
SET LOCAL p2pay.delete_mode = archive;
DELETE FROM p2pay.payments WHERE transaction_id = meal(1);
SET LOCAL p2pay.delete_mode = reverse;
ROLLBACK;
BEGIN;
SET LOCAL p2pay.delete_mode = archive;
DELETE FROM p2pay.payments WHERE transaction_id = meal(1);
RESET p2pay.delete_mode;
DELETE FROM p2pay.payments WHERE transaction_id = meal(2);
ROLLBACK;
-- After a reversal, archiving is refused the same way.
BEGIN;
DELETE FROM p2pay.payments WHERE transaction_id = meal(1);
SET LOCAL p2pay.delete_mode = archive;
ROLLBACK;
-- A function's own setting is put back when it returns, unchecked: the
-- delete after it is refused.
CREATE FUNCTION archive_meal(i int) RETURNS void LANGUAGE sql
  SET p2pay.delete_mode = archive
  AS $$ DELETE FROM p2pay.payments WHERE transaction_id = meal(i) $$;
BEGIN;
SELECT archive_meal(1);
DELETE FROM p2pay.payments WHERE transaction_id = meal(2);
ROLLBACK;
\set VERBOSITY sqlstate
BEGIN;
SET LOCAL p2pay.delete_mode = archive;
DELETE FROM p2pay.payments WHERE transaction_id = meal(1);
SET LOCAL p2pay.delete_mode = reverse;
ROLLBACK;
BEGIN;
SELECT archive_meal(1);
DELETE FROM p2pay.payments WHERE transaction_id = meal(2);
ROLLBACK;
\set VERBOSITY default
-- Nothing of the refused transactions is in the state or on the stream.
(SELECT * FROM state() EXCEPT SELECT * FROM state_before_modes)
UNION ALL (SELECT * FROM state_before_modes EXCEPT SELECT * FROM state());
SELECT * FROM stream();

-- Savepoints: an archive rolled back to a savepoint is undone with its
-- mark, and the transaction may then reverse; the reversal is an event.
BEGIN;
SET LOCAL p2pay.delete_mode = archive;
SAVEPOINT s;
DELETE FROM p2pay.payments WHERE transaction_id = meal(1);
ROLLBACK TO SAVEPOINT s;
SET LOCAL p2pay.delete_mode = reverse;
DELETE FROM p2pay.payments WHERE transaction_id = meal(2);
COMMIT;
SELECT count(*) FROM p2pay.payments WHERE transaction_id = meal(1);
SELECT e::json->>'event' AS event, e::json->>'amount' AS amount FROM stream() e;
-- An archive in a released savepoint fixes the transaction's mode.
BEGIN;
SAVEPOINT s;
SET LOCAL p2pay.delete_mode = archive;
DELETE FROM p2pay.payments WHERE transaction_id = meal(1);
RELEASE SAVEPOINT s;
SHOW p2pay.delete_mode;
DELETE FROM p2pay.payments WHERE transaction_id = meal(3);
ROLLBACK;
-- Archived in a released savepoint and after it: the one mark, written in
-- the savepoint, covers both deletes.
BEGIN;
SET LOCAL p2pay.delete_mode = archive;
SAVEPOINT s;
DELETE FROM p2pay.payments WHERE transaction_id = meal(1);
RELEASE SAVEPOINT s;
DELETE FROM p2pay.payments WHERE transaction_id = meal(3);
COMMIT;
SELECT * FROM stream();
-- Archived in a savepoint rolled back, then again: the mark went with the
-- savepoint, and the archive after it writes another.
BEGIN;
SET LOCAL p2pay.delete_mode = archive;
SAVEPOINT s;
DELETE FROM p2pay.payments WHERE transaction_id = meal(4);
ROLLBACK TO SAVEPOINT s;
DELETE FROM p2pay.payments WHERE transaction_id = meal(5);
COMMIT;
SELECT * FROM stream();
SELECT amount FROM p2pay.payments WHERE payee_id = u(3) AND created_at >= '2026-03-01'
 ORDER BY amount;
-- The archived meals still count: the pair's count is its payments ever
-- made, less the one reversed.
SELECT n, total FROM p2pay.pair_stats WHERE payee_id = u(3);
-- A reversal rolled back to a savepoint leaves the transaction free to
-- archive.
BEGIN;
SAVEPOINT s;
DELETE FROM p2pay.payments WHERE transaction_id = meal(4);
ROLLBACK TO SAVEPOINT s;
SET LOCAL p2pay.delete_mode = archive;
DELETE FROM p2pay.payments WHERE transaction_id = meal(4);
COMMIT;
SELECT * FROM stream();

------------------------------------------------------------------------------
-- Who archives: the owner of p2pay.payments (and its members).  A role
-- allowed to delete payments reverses them, and can't make a delete
-- vanish from the stream, neither with the setting nor with a mark of its
-- own.
------------------------------------------------------------------------------
SELECT pay(3, 77, '2026-04-01 12:00+00'), pay(3, 78, '2026-04-02 12:00+00');
SELECT count(*) AS skipped FROM stream();
CREATE ROLE p2pay_retention_clerk;
GRANT USAGE ON SCHEMA p2pay TO p2pay_retention_clerk;
GRANT SELECT, DELETE ON p2pay.payments TO p2pay_retention_clerk;
SET ROLE p2pay_retention_clerk;
BEGIN;
SET LOCAL p2pay.delete_mode = archive;
DELETE FROM p2pay.payments WHERE amount = 77;
ROLLBACK;
\set VERBOSITY sqlstate
BEGIN;
SET LOCAL p2pay.delete_mode = archive;
DELETE FROM p2pay.payments WHERE amount = 77;
ROLLBACK;
\set VERBOSITY default
BEGIN;
SELECT 'marked' FROM pg_logical_emit_message(true, 'p2pay', 'archive');
DELETE FROM p2pay.payments WHERE amount = 77;
COMMIT;
RESET ROLE;
SELECT e::json->>'event' AS event, e::json->>'amount' AS amount FROM stream() e;
-- As a member of the owner's role, it archives.
CREATE ROLE p2pay_retention_owner;
ALTER TABLE p2pay.payments OWNER TO p2pay_retention_owner;
GRANT p2pay_retention_owner TO p2pay_retention_clerk;
SET ROLE p2pay_retention_clerk;
BEGIN;
SET LOCAL p2pay.delete_mode = archive;
DELETE FROM p2pay.payments WHERE amount = 78;
COMMIT;
RESET ROLE;
ALTER TABLE p2pay.payments OWNER TO CURRENT_USER;
SELECT * FROM stream();
SELECT count(*) FROM p2pay.payments WHERE amount IN (77, 78);

-- A misspelt mode is refused.
SET p2pay.delete_mode = archived;
-- The new trigger function is p2pay's own, like the others: on any other
-- table it refuses to run.
CREATE TABLE not_payments (id int);
INSERT INTO not_payments VALUES (1);
CREATE TRIGGER mark BEFORE DELETE ON not_payments FOR EACH ROW EXECUTE FUNCTION p2pay.mark_delete();
DELETE FROM not_payments;
DROP TABLE not_payments;
SELECT has_function_privilege('public', 'p2pay.mark_delete()', 'execute') AS public_may_run;

------------------------------------------------------------------------------
-- A 1.0 installation with this library: no trigger writes the mark, so
-- archiving is refused rather than streamed as reversals; deletes and
-- TRUNCATE are streamed as before.  After the update it archives.
------------------------------------------------------------------------------
SELECT pg_drop_replication_slot('p2pay_retention');
DROP EXTENSION p2pay;
CREATE EXTENSION p2pay VERSION '1.0';
SELECT 'created' FROM pg_create_logical_replication_slot('p2pay_retention', 'p2pay');
INSERT INTO p2pay.users (id, created_at) SELECT u(n), '2020-01-01' FROM generate_series(1, 3) n;
SELECT pay(2, 1500, '2026-01-05 10:00+00'), pay(2, 1600, '2026-02-05 10:00+00'),
       pay(3, 20, '2026-02-06 10:00+00');
SELECT count(*) AS skipped FROM stream();
BEGIN;
SET LOCAL p2pay.delete_mode = archive;
DELETE FROM p2pay.payments WHERE amount = 1500;
ROLLBACK;
\set VERBOSITY sqlstate
BEGIN;
SET LOCAL p2pay.delete_mode = archive;
DELETE FROM p2pay.payments WHERE amount = 1500;
ROLLBACK;
\set VERBOSITY default
DELETE FROM p2pay.payments WHERE amount = 1600;
SELECT e::json->>'event' AS event, e::json->>'amount' AS amount FROM stream() e;
ALTER EXTENSION p2pay UPDATE;
BEGIN;
SET LOCAL p2pay.delete_mode = archive;
DELETE FROM p2pay.payments WHERE amount = 1500;
COMMIT;
SELECT * FROM stream();
SELECT n, total FROM p2pay.pair_stats WHERE payee_id = u(2);
-- With the trigger disabled, archiving is refused again.
ALTER TABLE p2pay.payments DISABLE TRIGGER payments_mark_delete;
BEGIN;
SET LOCAL p2pay.delete_mode = archive;
DELETE FROM p2pay.payments WHERE amount = 20;
ROLLBACK;
ALTER TABLE p2pay.payments ENABLE TRIGGER payments_mark_delete;
TRUNCATE p2pay.payments;
SELECT * FROM stream();

SELECT pg_drop_replication_slot('p2pay_retention');
DROP EXTENSION p2pay;
DROP OWNED BY p2pay_retention_clerk, p2pay_retention_owner;
DROP ROLE p2pay_retention_clerk, p2pay_retention_owner;
DROP TABLE state_before, state_before_modes;
DROP FUNCTION stream(), u(int), tid(int, timestamptz), pay(int, numeric, timestamptz),
  rent_verdict(), state(), day(date), meal(int), archive_meal(int);
