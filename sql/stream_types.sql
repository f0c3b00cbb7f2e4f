-- The stream when a DBA changes the types of payments' columns: every
-- column p2pay reads directly (uuid, numeric, a string type for currency,
-- timestamptz, double precision, an enum with p2pay's decisions, text[]) is
-- checked when the table is first seen; a column of any other type is
-- written as its type's output text, a JSON string.  Decoding never
-- misreads a value, whatever ALTER TABLE did before the change.
CREATE EXTENSION p2pay;
SET DateStyle = 'ISO, YMD';
SET TimeZone = 'UTC';
SELECT 'created' FROM pg_create_logical_replication_slot('p2pay_types', 'p2pay');
CREATE FUNCTION stream(VARIADIC opts text[] DEFAULT '{}') RETURNS SETOF text
LANGUAGE sql AS $$
  SELECT data FROM pg_logical_slot_get_changes('p2pay_types', NULL, NULL,
    VARIADIC ARRAY['include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0'] || opts)
$$;
CREATE FUNCTION peek(VARIADIC opts text[] DEFAULT '{}') RETURNS SETOF text
LANGUAGE sql AS $$
  SELECT data FROM pg_logical_slot_peek_changes('p2pay_types', NULL, NULL,
    VARIADIC ARRAY['include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0'] || opts)
$$;

-- What must go before these columns can change type: the view over them,
-- the foreign keys, the index on decision.  p2pay's triggers are not for
-- such a table: the rows below are written with them off, verdicts set by
-- hand.
ALTER EXTENSION p2pay DROP VIEW p2pay.review_queue;
DROP VIEW p2pay.review_queue;
DROP INDEX p2pay.payments_review_idx;
ALTER TABLE p2pay.payments DROP CONSTRAINT payments_payer_id_fkey,
  DROP CONSTRAINT payments_payee_id_fkey, DROP CONSTRAINT payments_currency_fkey,
  DROP CONSTRAINT payments_payment_method_id_fkey;
ALTER TABLE p2pay.payments DISABLE TRIGGER USER;

-- Payment n, every column given as text for its type's input function.
CREATE FUNCTION put(n int, decision text DEFAULT 'review',
                    reasons text DEFAULT '{amount_limit,"new \"payee\""}') RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency,
                    payment_method_id, created_at, risk_score, decision, reasons)
                  VALUES (%L, %L, %L, %L, %L, %L, %L, %L, %L, %L)',
                 'cccccccc-0000-4000-8000-' || lpad(n::text, 12, '0'),
                 '00000000-0000-4000-8000-00000000000a', '00000000-0000-4000-8000-00000000000b',
                 (1000 + n) || '.50', 'EUR', '00000000-0000-4000-8000-000000000001',
                 '2026-03-01 10:00:00.25+00', '0.625', decision, reasons);
END $$;

-- As created.
SELECT put(1);
SELECT * FROM stream();

-- One column at a time, each change kept: a row written after each change
-- decodes with that column in its new type.
ALTER TABLE p2pay.payments ALTER COLUMN transaction_id TYPE text;
SELECT put(2);
SELECT * FROM stream();
ALTER TABLE p2pay.payments ALTER COLUMN payer_id TYPE text;
SELECT put(3);
SELECT * FROM stream();
-- a domain over uuid is still a uuid
CREATE DOMAIN account_id AS uuid;
ALTER TABLE p2pay.payments ALTER COLUMN payee_id TYPE account_id;
SELECT put(4);
SELECT * FROM stream();
ALTER TABLE p2pay.payments ALTER COLUMN amount TYPE float8;
SELECT put(5);
SELECT * FROM stream();
ALTER TABLE p2pay.payments ALTER COLUMN currency TYPE text;
SELECT put(6);
SELECT * FROM stream();
-- (the new row's method id is its text, as bytes)
ALTER TABLE p2pay.payments ALTER COLUMN payment_method_id TYPE bytea
  USING uuid_send(payment_method_id);
SELECT put(7);
SELECT * FROM stream();
-- (partitioned, created_at is the partition key and keeps its type: the
-- error is shown by its SQLSTATE, as 18 adds the statement's position)
\set VERBOSITY sqlstate
ALTER TABLE p2pay.payments ALTER COLUMN created_at TYPE timestamp;
\set VERBOSITY default
SELECT put(8);
-- one decoding session across a change: each row read with its own types
ALTER TABLE p2pay.payments ALTER COLUMN risk_score TYPE numeric;
SELECT put(9);
SELECT * FROM stream();
ALTER TABLE p2pay.payments ALTER COLUMN reasons TYPE text;
SELECT put(10);
SELECT * FROM stream();

-- decision of another enum: p2pay's labels are read as p2pay's decisions;
-- a label that is none of them can't be ranked, and is streamed as flagged
-- whatever min-decision, so that a consumer sees it rather than miss it.
CREATE TYPE verdict AS ENUM ('hold', 'decline', 'review', 'approve');
ALTER TABLE p2pay.payments ALTER COLUMN decision TYPE verdict USING decision::text::verdict;
SELECT put(11, 'decline'), put(12, 'approve'), put(13, 'hold');
SELECT * FROM stream('min-decision', 'decline');
-- a label renamed while a session decodes: rows after the rename are read
-- with the new labels
SELECT put(18, 'review');
ALTER TYPE verdict RENAME VALUE 'review' TO 'pending';
SELECT put(19, 'pending');
SELECT data::jsonb->>'transaction_id' AS transaction_id, data::jsonb->>'decision' AS decision
  FROM pg_logical_slot_get_changes('p2pay_types', NULL, NULL);
-- decision of text: the same, by the text
ALTER TABLE p2pay.payments ALTER COLUMN decision TYPE text;
SELECT put(14, 'review'), put(15, 'approve'), put(16, 'manual hold');
SELECT * FROM peek('min-decision', 'decline');
SELECT * FROM stream('include-approved', 'on');
-- changes of decision: between p2pay's labels; to and between others; an
-- update that leaves the text alone is no event
UPDATE p2pay.payments SET decision = 'approve' WHERE transaction_id LIKE '%014';
UPDATE p2pay.payments SET decision = 'on hold' WHERE transaction_id LIKE '%016';
UPDATE p2pay.payments SET risk_score = 0.5 WHERE transaction_id LIKE '%016';
UPDATE p2pay.payments SET decision = 'hold' WHERE transaction_id LIKE '%015';
SELECT * FROM stream();

-- A value of another type left unchanged in TOAST by an update comes from
-- the old row too.
UPDATE p2pay.payments SET reasons = (SELECT string_agg(md5(i::text), ',') FROM generate_series(1, 1000) i)
 WHERE transaction_id LIKE '%010';
SELECT pg_relation_size(reltoastrelid) > 0 AS out_of_line
  FROM pg_class WHERE oid = 'p2pay.payments'::regclass;
UPDATE p2pay.payments SET decision = 'decline' WHERE transaction_id LIKE '%010';
SELECT data::jsonb->>'event' AS event, data::jsonb->>'decision' AS decision,
       data::jsonb->>'reasons' = (SELECT reasons FROM p2pay.payments WHERE transaction_id LIKE '%010')
         AS whole_reasons
  FROM pg_logical_slot_get_changes('p2pay_types', NULL, NULL);

-- Deletes, with every column of another type.
DELETE FROM p2pay.payments WHERE transaction_id IN
  ('cccccccc-0000-4000-8000-000000000011', 'cccccccc-0000-4000-8000-000000000016');
SELECT * FROM stream();

-- A dropped column is written as null.
ALTER TABLE p2pay.payments DROP COLUMN payment_method_id;
INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency, created_at,
                            risk_score, decision, reasons)
VALUES ('cccccccc-0000-4000-8000-000000000017', '00000000-0000-4000-8000-00000000000a',
        '00000000-0000-4000-8000-00000000000b', 1017.5, 'EUR', '2026-03-01 10:00:00.25',
        0.625, 'decline', 'amount_limit');
SELECT * FROM stream();

-- The option key on columns of other types: a domain over uuid is a uuid;
-- a text is its text when that needs no escape in JSON, null otherwise, so
-- that a key always ends at the first quote after it.
INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency, created_at,
                            risk_score, decision, reasons)
SELECT 'cccccccc-0000-4000-8000-0000000000' || n, payer, '00000000-0000-4000-8000-00000000000b',
       1000.5 + n, 'EUR', '2026-03-01 10:00:00.25', 0.625, 'decline', 'amount_limit'
  FROM (VALUES (31, 'account 31'), (32, 'account "32"'), (33, 'account\33'), (34, E'account\n34'))
       AS v(n, payer);
SELECT left(p, 60) FROM peek('key', 'payee_id') p;
SELECT left(p, 40) AS line, p::json->>'payer_id' AS payer_id FROM stream('key', 'payer_id') p;

SELECT pg_drop_replication_slot('p2pay_types');
DROP FUNCTION stream(text[]), peek(text[]), put(int, text, text);
DROP EXTENSION p2pay;
DROP TYPE verdict;
DROP DOMAIN account_id;
