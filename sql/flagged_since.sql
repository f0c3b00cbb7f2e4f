-- p2pay.flagged_since(): the catch-up a consumer runs on a new primary.
-- Its lines are the stream's flagged events with xid and lsn null, and the
-- payments it returns are those whose transactions committed after since,
-- whatever their created_at and whenever they were inserted.
CREATE EXTENSION p2pay;
SET TimeZone = 'Pacific/Auckland';
SET DateStyle = 'SQL, DMY';
SET extra_float_digits = -3;
UPDATE p2pay.rules SET weight = 0.3 WHERE name = 'unregistered_method';
UPDATE p2pay.rules SET params = params || '{"min_known_days": 0}' WHERE name = 'new_payee_high_amount';
SHOW track_commit_timestamp;

SELECT 'created' FROM pg_create_logical_replication_slot('p2pay_catch_up', 'p2pay');

INSERT INTO p2pay.users (id, created_at) VALUES
  ('00000000-0000-4000-8000-00000000000a', '2020-01-01'),
  ('00000000-0000-4000-8000-00000000000b', '2020-01-01'),
  ('00000000-0000-4000-8000-00000000000c', '2020-01-01');
INSERT INTO p2pay.user_payment_methods VALUES
  ('00000000-0000-4000-8000-00000000000a', '00000000-0000-4000-8000-000000000001'),
  ('00000000-0000-4000-8000-00000000000b', '00000000-0000-4000-8000-000000000001');

-- pay(n, ...): payment n, with a created_at chosen by the client.
CREATE FUNCTION pay(tid int, payer char, payee char, amount numeric, cur char(3) DEFAULT 'USD',
                    at timestamptz DEFAULT '2026-03-01 10:00:00.123456+00')
RETURNS p2pay.decision LANGUAGE sql AS $$
  INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency,
                              payment_method_id, created_at)
  VALUES (('aaaaaaaa-0000-4000-8000-' || lpad(tid::text, 12, '0'))::uuid,
          ('00000000-0000-4000-8000-00000000000' || payer)::uuid,
          ('00000000-0000-4000-8000-00000000000' || payee)::uuid,
          amount, cur, '00000000-0000-4000-8000-000000000001', at)
  RETURNING decision
$$;
-- caught(since, ...): the payments flagged_since() returns, by number, with
-- the decision each line carries.
CREATE FUNCTION caught(since timestamptz, min_decision p2pay.decision DEFAULT 'review',
                       age interval DEFAULT '1 day')
RETURNS TABLE (n int, decision text) LANGUAGE sql AS $$
  SELECT right(l::json ->> 'transaction_id', 12)::int, l::json ->> 'decision'
    FROM p2pay.flagged_since(since, min_decision, age) l
$$;

SELECT clock_timestamp() AS before_all \gset
SELECT pay(1, 'a', 'b', 25.5);
SELECT pay(2, 'a', 'b', 10500.25);
SELECT pay(3, 'c', 'b', 5);
SELECT pay(4, 'b', 'c', 50000, 'EUR');
SELECT pay(5, 'a', 'b', 12.00);

-- Every flagged payment committed after since, oldest commit first; the
-- approved ones (1 and 5) are no events.
SELECT * FROM caught(:'before_all');
SELECT * FROM caught(:'before_all', 'decline');
-- since is exclusive: the payment committed at since itself was processed.
SELECT pg_xact_commit_timestamp(xmin) AS after_3 FROM p2pay.payments
 WHERE transaction_id = 'aaaaaaaa-0000-4000-8000-000000000003' \gset
SELECT * FROM caught(:'after_3');

-- Each line is the stream's own flagged event, xid and lsn aside: the same
-- keys in the same order, the same values, commit_time included.
SELECT s.line = c.line AS same_as_stream, c.line IS NOT NULL AS caught
  FROM (SELECT regexp_replace(data, '"xid":[0-9]+,"lsn":"[0-9A-F]+/[0-9A-F]+"', '"xid":null,"lsn":null') AS line
          FROM pg_logical_slot_get_changes('p2pay_catch_up', NULL, NULL)) s
  FULL JOIN p2pay.flagged_since(:'before_all') c (line) USING (line);

-- created_at is the client's: a backdated payment committed after since is
-- returned, and a payment dated after since but committed before it is not.
SELECT clock_timestamp() AS before_backdated \gset
SELECT pay(6, 'c', 'a', 7, 'USD', '2019-06-01');
SELECT * FROM caught(:'before_backdated');
SELECT pay(7, 'c', 'a', 8, 'USD', clock_timestamp() + interval '4 minutes');
SELECT pg_xact_commit_timestamp(xmin) AS after_7 FROM p2pay.payments
 WHERE transaction_id = 'aaaaaaaa-0000-4000-8000-000000000007' \gset
SELECT * FROM caught(:'after_7');

-- A payment inserted before since by a transaction that committed after it
-- is returned: the consumer had not seen it (the stream sends it at its
-- commit).  Before the commit, no session sees it, and neither does its own
-- transaction's flagged_since(), since it is not committed.
BEGIN;
SELECT pay(8, 'c', 'a', 9);
SELECT clock_timestamp() AS mid_8 \gset
SELECT * FROM caught(:'before_backdated');
COMMIT;
SELECT * FROM caught(:'mid_8');

-- A resolved review: its row was last written by resolve(), after since;
-- the line carries the decision the flagged event had, review.
SELECT clock_timestamp() AS before_9 \gset
SELECT pay(9, 'a', 'b', 20000);
SELECT p2pay.resolve('aaaaaaaa-0000-4000-8000-000000000009', 'approve', 'known customer');
SELECT decision FROM p2pay.payments WHERE transaction_id = 'aaaaaaaa-0000-4000-8000-000000000009';
SELECT * FROM caught(:'before_9');
SELECT * FROM caught(:'before_9', 'decline');
-- and a review resolved after since whose insert was seen before it comes
-- again, which the consumer drops as a repeat (transaction_id and event)
SELECT pay(10, 'a', 'b', 30000);
SELECT pg_xact_commit_timestamp(xmin) AS after_10 FROM p2pay.payments
 WHERE transaction_id = 'aaaaaaaa-0000-4000-8000-000000000010' \gset
SELECT p2pay.resolve('aaaaaaaa-0000-4000-8000-000000000010', 'decline');
SELECT * FROM caught(:'after_10');

-- max_transaction_age bounds the scan: it stops at the newest row committed
-- at or before since - max_transaction_age, inserted after every row below
-- it, whose transactions are taken to have committed by since.  Payment 8
-- was inserted after the last commit before mid_8, so even 0 finds it; with
-- no such row, the whole table is read.
SELECT * FROM caught(:'mid_8', 'review', '0');
SELECT count(*) FROM caught('2000-01-01', 'review', '0');

-- Bad arguments.
\set SHOW_CONTEXT never
SELECT * FROM p2pay.flagged_since(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM p2pay.flagged_since(now(), NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM p2pay.flagged_since(now(), 'review', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM p2pay.flagged_since(now(), 'approve');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM p2pay.flagged_since('infinity');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM p2pay.flagged_since('-infinity');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM p2pay.flagged_since(now(), 'review', '-1 second');
\echo :LAST_ERROR_SQLSTATE
\set SHOW_CONTEXT errors

-- Who may call it: not PUBLIC; a role it is granted to, which also needs
-- to read payments and decision_log (SECURITY INVOKER).
CREATE ROLE p2pay_regress_reader;
GRANT USAGE ON SCHEMA p2pay TO p2pay_regress_reader;
SET ROLE p2pay_regress_reader;
SELECT * FROM p2pay.flagged_since(now());
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT EXECUTE ON FUNCTION p2pay.flagged_since(timestamptz, p2pay.decision, interval) TO p2pay_regress_reader;
SET ROLE p2pay_regress_reader;
SELECT * FROM p2pay.flagged_since(now());
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT SELECT ON p2pay.payments, p2pay.decision_log TO p2pay_regress_reader;
SET ROLE p2pay_regress_reader;
SELECT count(*) FROM p2pay.flagged_since(:'before_all');
RESET ROLE;
-- A hostile search_path changes nothing.
CREATE SCHEMA evil;
CREATE FUNCTION evil.pg_xact_commit_timestamp(xid) RETURNS timestamptz
  LANGUAGE sql AS $$ SELECT 'infinity'::timestamptz $$;
CREATE FUNCTION evil.to_json(text) RETURNS json LANGUAGE sql AS $$ SELECT '"evil"'::json $$;
SET search_path = evil, public;
SELECT count(*) FROM p2pay.flagged_since(:'before_all');
RESET search_path;
DROP SCHEMA evil CASCADE;
REVOKE ALL ON p2pay.payments, p2pay.decision_log FROM p2pay_regress_reader;
REVOKE ALL ON SCHEMA p2pay FROM p2pay_regress_reader;
DROP OWNED BY p2pay_regress_reader;
DROP ROLE p2pay_regress_reader;

SELECT pg_drop_replication_slot('p2pay_catch_up');
DROP FUNCTION pay(int, char, char, numeric, char, timestamptz);
DROP FUNCTION caught(timestamptz, p2pay.decision, interval);
DROP EXTENSION p2pay;
