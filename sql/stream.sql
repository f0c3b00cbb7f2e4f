-- The flagged-payment stream (output plugin p2pay) through the SQL
-- interface, with xids, LSNs and commit times off so that the output is
-- exact: which changes become events, in what form, under each option.
CREATE EXTENSION p2pay;
SET TimeZone = 'Pacific/Auckland';
SET DateStyle = 'SQL, DMY';
SET extra_float_digits = -3;
-- An unregistered method alone is flagged here (0.3 reaches review), which
-- gives small flagged payments to stream; and a first large payment to a
-- payee is a new payee's though p2pay has just met the payer, which gives
-- a decline.
UPDATE p2pay.rules SET weight = 0.3 WHERE name = 'unregistered_method';
UPDATE p2pay.rules SET params = params || '{"min_known_days": 0}' WHERE name = 'new_payee_high_amount';

SELECT 'created' FROM pg_create_logical_replication_slot('p2pay_regress', 'p2pay');

CREATE FUNCTION stream(VARIADIC opts text[] DEFAULT '{}') RETURNS SETOF text
LANGUAGE sql AS $$
  SELECT data FROM pg_logical_slot_get_changes('p2pay_regress', NULL, NULL,
    VARIADIC ARRAY['include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0'] || opts)
$$;
CREATE FUNCTION peek(VARIADIC opts text[] DEFAULT '{}') RETURNS SETOF text
LANGUAGE sql AS $$
  SELECT data FROM pg_logical_slot_peek_changes('p2pay_regress', NULL, NULL,
    VARIADIC ARRAY['include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0'] || opts)
$$;

INSERT INTO p2pay.users (id, created_at) VALUES
  ('00000000-0000-4000-8000-00000000000a', '2020-01-01'),
  ('00000000-0000-4000-8000-00000000000b', '2020-01-01'),
  ('00000000-0000-4000-8000-00000000000c', '2020-01-01');
INSERT INTO p2pay.user_payment_methods VALUES
  ('00000000-0000-4000-8000-00000000000a', '00000000-0000-4000-8000-000000000001'),
  ('00000000-0000-4000-8000-00000000000b', '00000000-0000-4000-8000-000000000001');
-- rows of other tables emit nothing
SELECT * FROM stream();

-- A single insert of each decision: only the flagged ones are events.
CREATE FUNCTION pay(tid int, payer char, payee char, amount numeric, cur char(3) DEFAULT 'USD')
RETURNS p2pay.decision LANGUAGE sql AS $$
  INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency,
                              payment_method_id, created_at)
  VALUES (('aaaaaaaa-0000-4000-8000-' || lpad(tid::text, 12, '0'))::uuid,
          ('00000000-0000-4000-8000-00000000000' || payer)::uuid,
          ('00000000-0000-4000-8000-00000000000' || payee)::uuid,
          amount, cur, '00000000-0000-4000-8000-000000000001',
          '2026-03-01 10:00:00.123456+00'::timestamptz + tid * interval '1 minute')
  RETURNING decision
$$;
SELECT pay(1, 'a', 'b', 25.5);
SELECT pay(2, 'a', 'b', 10500.25);
SELECT pay(3, 'c', 'b', 5);
SELECT pay(4, 'b', 'c', 50000, 'EUR');
SELECT * FROM stream();

-- Options: only declines; approved ones too.
SELECT pay(5, 'a', 'b', 12.00);
SELECT pay(6, 'c', 'a', 7);
SELECT pay(7, 'b', 'a', 99999, 'ILS');
SELECT * FROM peek('min-decision', 'decline');
SELECT * FROM peek('include-approved', 'true');
SELECT * FROM peek('min-decision', 'decline', 'include-approved', 'on');
SELECT * FROM stream('min-decision', 'review', 'format-version', '1');

-- A multi-row insert, and a transaction that mixes tables: one event per
-- flagged payment, in order.
BEGIN;
INSERT INTO p2pay.users (id) VALUES ('00000000-0000-4000-8000-00000000000d');
INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency,
                            payment_method_id, created_at)
SELECT ('aaaaaaaa-0000-4000-8000-' || lpad((10 + i)::text, 12, '0'))::uuid,
       '00000000-0000-4000-8000-00000000000a', '00000000-0000-4000-8000-00000000000d',
       11000 * i, 'USD', '00000000-0000-4000-8000-000000000001',
       '2026-03-02 09:00:00+00'::timestamptz + i * interval '1 second'
  FROM generate_series(1, 3) i;
SELECT pay(20, 'c', 'a', 3);
COMMIT;
SELECT * FROM stream();

-- A rolled-back transaction with flagged payments emits nothing.
BEGIN;
SELECT pay(30, 'a', 'c', 20000);
ROLLBACK;
SELECT * FROM stream();

-- An analyst's change of decision is an event with the old decision; an
-- update that leaves the decision alone is not.
UPDATE p2pay.payments SET decision = 'approve'
 WHERE transaction_id = 'aaaaaaaa-0000-4000-8000-000000000002';
UPDATE p2pay.payments SET reasons = reasons || '{noted}'::text[]
 WHERE transaction_id = 'aaaaaaaa-0000-4000-8000-000000000004';
UPDATE p2pay.payments SET decision = 'decline'
 WHERE transaction_id = 'aaaaaaaa-0000-4000-8000-000000000001';
SELECT * FROM peek('min-decision', 'decline');
SELECT * FROM stream();

-- Deletes, of any payment, and truncates are events of their own.
DELETE FROM p2pay.payments WHERE transaction_id IN
  ('aaaaaaaa-0000-4000-8000-000000000003', 'aaaaaaaa-0000-4000-8000-000000000004');
TRUNCATE p2pay.payments;
SELECT * FROM stream('min-decision', 'decline');

-- Bad options are refused when the stream starts.
SELECT * FROM stream('min-decision', 'high');
SELECT * FROM stream('min-decision', '');
SELECT * FROM stream('include-approved', 'maybe');
SELECT * FROM stream('include-lsn', '1', 'include-lsn', '0');
SELECT * FROM stream('format-version', '2');
SELECT * FROM stream('pretty', 'true');
-- a message quotes at most 64 bytes of what the client sent
SELECT * FROM stream('min-decision', repeat('x', 100000));
SELECT * FROM stream('include-approved', repeat('y', 100000));
SELECT * FROM stream('format-version', repeat('9', 100000));
SELECT * FROM stream(repeat('o', 100000), 'true');

-- With positions on, each event carries its xid, the LSN of its change and
-- the commit time, in the same format whatever the session's settings.
SELECT pay(40, 'a', 'b', 15000);
SELECT data ~ '"xid":[0-9]+,"lsn":"[0-9A-F]+/[0-9A-F]+","commit_time":"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z"}$' AS positioned
  FROM pg_logical_slot_get_changes('p2pay_regress', NULL, NULL);

-- The option key: every line starts with the named column's text as "key"
-- (null where the event has none: a truncate), at a fixed place, and goes
-- on as the line without the option does, byte for byte.
SELECT pay(50, 'a', 'b', 15000);
SELECT pay(51, 'c', 'a', 16000);
SELECT pay(52, 'b', 'c', 3);
UPDATE p2pay.payments SET decision = 'decline'
 WHERE transaction_id = 'aaaaaaaa-0000-4000-8000-000000000050';
DELETE FROM p2pay.payments WHERE transaction_id = 'aaaaaaaa-0000-4000-8000-000000000051';
TRUNCATE p2pay.payments;
SELECT * FROM peek('key', 'payer_id');
SELECT left(p, 72) FROM peek('key', 'payee_id', 'min-decision', 'decline') p;
SELECT left(p, 72) FROM peek('key', 'transaction_id', 'include-approved', 'true') p;
-- every keyed line, with its key cut off, is the line without the option;
-- the key is the named field's value, 36 bytes from byte 9, or null
WITH plain AS (SELECT data, n FROM peek('include-approved', 'true') WITH ORDINALITY AS p(data, n)),
     keyed AS (SELECT data, n FROM peek('include-approved', 'true', 'key', 'payee_id') WITH ORDINALITY AS k(data, n))
SELECT count(*) AS lines,
       count(*) FILTER (WHERE regexp_replace(keyed.data, '^\{"key":("[^"\\]*"|null),', '{') = plain.data) AS same_rest,
       count(*) FILTER (WHERE substr(keyed.data, 1, 8) = '{"key":"' AND substr(keyed.data, 45, 2) = '",'
                          AND substr(keyed.data, 9, 36) = keyed.data::json->>'payee_id') AS keyed_by_payee,
       count(*) FILTER (WHERE keyed.data LIKE '{"key":null,"event":"truncated",%') AS truncates_null
  FROM plain FULL JOIN keyed USING (n);
SELECT count(*) FROM stream();
-- Bad values of key are refused like the other options'.
SELECT * FROM stream('key', 'payer');
SELECT * FROM stream('key', '');
SELECT * FROM stream('key', 'payer_id', 'key', 'payee_id');

SELECT pg_drop_replication_slot('p2pay_regress');
DROP FUNCTION stream(text[]), peek(text[]), pay(int, char, char, numeric, char);
DROP EXTENSION p2pay;
