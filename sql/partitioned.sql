-- A partitioned p2pay.payments scores exactly as a plain one.  The same
-- seeded stream of payments (3,000, one in ten backdated by up to 40 days,
-- some deleted) goes through a plain payments and through one a DBA
-- partitioned by month by hand (with a default partition for the rest);
-- every verdict and every row of the per-account state must be the same.
-- Then what partitions bring: inserts straight into a partition,
-- partitions attached with another column layout, detached and dropped
-- (the state keeps what it knew), and a partition p2pay can't read.
\set VERBOSITY terse
SELECT setseed(0.42);
CREATE TABLE plan AS
  SELECT g AS k, 1 + (random() * 29)::int AS pr, 1 + (random() * 29)::int AS pe,
         random() AS size, random() AS r_amount, random() AS r_late, random() AS r_days
    FROM generate_series(1, 3000) g;
ALTER TABLE plan ADD COLUMN amount numeric, ADD COLUMN at timestamptz;
UPDATE plan SET
  amount = round((CASE WHEN size < 0.2 THEN 9000 + r_amount * 1500
                       WHEN size < 0.3 THEN 1000 + r_amount * 4000
                       ELSE 5 + r_amount * 300 END)::numeric, 2),
  at = timestamptz '2026-09-15 00:00+00' + k * interval '25 minutes'
       - CASE WHEN r_late < 0.1 THEN r_days * interval '40 days' ELSE interval '0' END;

CREATE FUNCTION uid(n int) RETURNS uuid LANGUAGE sql IMMUTABLE
  AS $$ SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid $$;

-- Users, the plan's payments in order (self-payments skipped), some deleted.
CREATE FUNCTION run_plan() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  r record;
BEGIN
  INSERT INTO p2pay.users (id, created_at) SELECT uid(n), '2026-06-01' FROM generate_series(1, 30) n;
  INSERT INTO p2pay.user_payment_methods (user_id, payment_method_id)
    SELECT id, '00000000-0000-4000-8000-000000000001' FROM p2pay.users;
  FOR r IN SELECT * FROM plan WHERE pr <> pe ORDER BY k LOOP
    INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency,
                                payment_method_id, created_at)
    VALUES (uid(100000 + r.k), uid(r.pr), uid(r.pe), r.amount, 'USD',
            '00000000-0000-4000-8000-000000000001', r.at);
  END LOOP;
  DELETE FROM p2pay.payments WHERE transaction_id IN (SELECT uid(100000 + k) FROM plan WHERE k % 97 = 0);
END $$;

-- What was decided and kept: saved under a label.
CREATE TABLE outcome (label text, what text, row jsonb);
CREATE FUNCTION keep(label text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO outcome
    SELECT label, 'payment', jsonb_build_object('t', transaction_id, 'decision', decision,
             'reasons', reasons, 'shadow', shadow_reasons, 'score', risk_score, 'base', amount_base)
      FROM p2pay.payments
    UNION ALL SELECT label, 'account_stats', to_jsonb(a) FROM p2pay.account_stats a
    UNION ALL SELECT label, 'pair_stats', to_jsonb(p) FROM p2pay.pair_stats p
    UNION ALL SELECT label, 'account_daily', to_jsonb(d) FROM p2pay.account_daily d;
END $$;

-- 1. A plain payments.
CREATE EXTENSION p2pay;
SELECT run_plan();
SELECT keep('plain');
DROP EXTENSION p2pay;

-- 2. Partitioned by month by hand, as a DBA takes a table over from an
-- extension, with a default partition for what falls outside.
CREATE EXTENSION p2pay;
ALTER EXTENSION p2pay DROP VIEW p2pay.review_queue;
DROP VIEW p2pay.review_queue;
ALTER EXTENSION p2pay DROP TABLE p2pay.payments;
ALTER EXTENSION p2pay DROP SEQUENCE p2pay.payments_id_seq;
ALTER TABLE p2pay.payments RENAME TO payments_old;
ALTER INDEX p2pay.payments_payer_time_idx RENAME TO payments_old_payer_time_idx;
CREATE TABLE p2pay.payments (LIKE p2pay.payments_old INCLUDING DEFAULTS INCLUDING IDENTITY
                             INCLUDING CONSTRAINTS) PARTITION BY RANGE (created_at);
ALTER TABLE p2pay.payments ADD PRIMARY KEY (id, created_at);
CREATE INDEX payments_payer_time_idx ON p2pay.payments (payer_id, created_at) INCLUDE (payee_id, amount_base);
ALTER TABLE p2pay.payments ADD FOREIGN KEY (payer_id) REFERENCES p2pay.users,
                           ADD FOREIGN KEY (payee_id) REFERENCES p2pay.users;
CREATE TRIGGER payments_score BEFORE INSERT ON p2pay.payments
  FOR EACH ROW EXECUTE FUNCTION p2pay.score_payment();
CREATE TRIGGER payments_guard BEFORE UPDATE ON p2pay.payments
  FOR EACH ROW EXECUTE FUNCTION p2pay.guard_payment();
CREATE TRIGGER payments_forget AFTER DELETE ON p2pay.payments
  FOR EACH ROW EXECUTE FUNCTION p2pay.forget_payment();
CREATE TRIGGER payments_batch_begin BEFORE INSERT ON p2pay.payments
  FOR EACH STATEMENT EXECUTE FUNCTION p2pay.batch_payments();
CREATE TRIGGER payments_batch_end AFTER INSERT ON p2pay.payments
  FOR EACH STATEMENT EXECUTE FUNCTION p2pay.batch_payments();
ALTER TABLE p2pay.payments REPLICA IDENTITY FULL;
CREATE TABLE p2pay.payments_2026_09 PARTITION OF p2pay.payments FOR VALUES FROM ('2026-09-01') TO ('2026-10-01');
CREATE TABLE p2pay.payments_2026_10 PARTITION OF p2pay.payments FOR VALUES FROM ('2026-10-01') TO ('2026-11-01');
CREATE TABLE p2pay.payments_2026_11 PARTITION OF p2pay.payments FOR VALUES FROM ('2026-11-01') TO ('2026-12-01');
CREATE TABLE p2pay.payments_rest PARTITION OF p2pay.payments DEFAULT;
ALTER TABLE p2pay.payments_2026_09 REPLICA IDENTITY FULL;
ALTER TABLE p2pay.payments_2026_10 REPLICA IDENTITY FULL;
ALTER TABLE p2pay.payments_2026_11 REPLICA IDENTITY FULL;
ALTER TABLE p2pay.payments_rest REPLICA IDENTITY FULL;
DROP TABLE p2pay.payments_old;
SELECT run_plan();
SELECT keep('partitioned');
SELECT tableoid::regclass AS partition, count(*) FROM p2pay.payments GROUP BY 1 ORDER BY 1;

-- The same verdicts and the same state, row for row.
SELECT what, count(*) FILTER (WHERE label = 'plain') AS plain,
       count(*) FILTER (WHERE label = 'partitioned') AS partitioned
  FROM outcome GROUP BY what ORDER BY what;
SELECT what, row FROM outcome WHERE label = 'plain'
EXCEPT SELECT what, row FROM outcome WHERE label = 'partitioned';
SELECT what, row FROM outcome WHERE label = 'partitioned'
EXCEPT SELECT what, row FROM outcome WHERE label = 'plain';

-- An insert straight into a partition is scored too, and takes its id from
-- p2pay.payments' identity (a partition has none of its own).
INSERT INTO p2pay.payments_2026_11 (payer_id, payee_id, amount, currency, payment_method_id, created_at)
VALUES (uid(1), uid(2), 15000, 'USD', '00000000-0000-4000-8000-000000000001', '2026-11-20 12:00+00')
RETURNING id = currval(pg_get_serial_sequence('p2pay.payments', 'id')) AS id_from_sequence, decision, reasons;
-- nor can a client choose the id there, even with OVERRIDING SYSTEM VALUE
-- (without it, 17 refuses the id itself: a partition shares the identity of
-- p2pay.payments there, where 15's partition has none and p2pay refuses it)
INSERT INTO p2pay.payments_2026_11 (id, payer_id, payee_id, amount, currency, payment_method_id, created_at)
OVERRIDING SYSTEM VALUE
VALUES (10000000, uid(1), uid(2), 15, 'USD', '00000000-0000-4000-8000-000000000001', '2026-11-20 12:00+00');

-- Its errors name p2pay.payments, the table the application writes.
DO $$
DECLARE
  s text; t text; c text;
BEGIN
  INSERT INTO p2pay.payments_2026_11 (payer_id, payee_id, amount, currency, payment_method_id, created_at)
  VALUES (uid(1), uid(2), 0, 'USD', '00000000-0000-4000-8000-000000000001', '2026-11-20 12:00+00');
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS s = SCHEMA_NAME, t = TABLE_NAME, c = COLUMN_NAME;
  RAISE NOTICE '% %: %.%.%', SQLSTATE, SQLERRM, s, t, c;
END $$;

-- A table with its columns in another order, attached as a partition.
CREATE TABLE p2pay.payments_2026_12 (LIKE p2pay.payments);
ALTER TABLE p2pay.payments_2026_12 DROP COLUMN payee_id;
ALTER TABLE p2pay.payments_2026_12 ADD COLUMN payee_id uuid NOT NULL;
ALTER TABLE p2pay.payments_2026_12 REPLICA IDENTITY FULL;
ALTER TABLE p2pay.payments ATTACH PARTITION p2pay.payments_2026_12
  FOR VALUES FROM ('2026-12-01') TO ('2027-01-01');
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at) VALUES
  (uid(3), uid(4), 9500, 'USD', '00000000-0000-4000-8000-000000000001', '2026-12-02 08:00+00'),
  (uid(4), uid(3), 9500, 'USD', '00000000-0000-4000-8000-000000000001', '2026-12-02 09:00+00')
RETURNING decision, reasons;

-- Archiving a month: detached and dropped, it leaves the state as it was,
-- and an account whose payments are all gone is still known.
CREATE TABLE state_before AS
  SELECT 'pair_stats' AS what, to_jsonb(p) AS row FROM p2pay.pair_stats p
  UNION ALL SELECT 'account_stats', to_jsonb(a) FROM p2pay.account_stats a;
INSERT INTO p2pay.users (id, created_at) VALUES (uid(40), '2026-01-01'), (uid(41), '2026-01-01');
INSERT INTO p2pay.user_payment_methods VALUES (uid(40), '00000000-0000-4000-8000-000000000001');
CREATE TABLE p2pay.payments_2026_05 PARTITION OF p2pay.payments FOR VALUES FROM ('2026-05-01') TO ('2026-06-01');
ALTER TABLE p2pay.payments_2026_05 REPLICA IDENTITY FULL;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
VALUES (uid(40), uid(41), 20, 'USD', '00000000-0000-4000-8000-000000000001', '2026-05-10 10:00+00');
ALTER TABLE p2pay.payments DETACH PARTITION p2pay.payments_2026_09;
DROP TABLE p2pay.payments_2026_09;
ALTER TABLE p2pay.payments DETACH PARTITION p2pay.payments_2026_05;
DROP TABLE p2pay.payments_2026_05;
SELECT count(*) AS state_rows_lost FROM (
  SELECT what, row FROM state_before
  EXCEPT SELECT 'pair_stats', to_jsonb(p) FROM p2pay.pair_stats p
  EXCEPT SELECT 'account_stats', to_jsonb(a) FROM p2pay.account_stats a) lost;
-- uid(40) paid uid(41) before: not a new payee; idle since May: dormant
SELECT reasons FROM p2pay.score(uid(40), uid(41), 5000, 'USD', '00000000-0000-4000-8000-000000000001',
                                '2026-11-30 12:00+00');

-- Without an index on (payer_id, created_at) p2pay can't read the
-- partitions: refused at the next payment; scored again once it is back.
DROP INDEX p2pay.payments_payer_time_idx;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
VALUES (uid(1), uid(2), 5, 'USD', '00000000-0000-4000-8000-000000000001');
CREATE INDEX payments_payer_time_idx ON p2pay.payments (payer_id, created_at) INCLUDE (payee_id, amount_base);
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
VALUES (uid(1), uid(2), 5, 'USD', '00000000-0000-4000-8000-000000000001', '2026-12-03 10:00+00')
RETURNING decision;

-- the hand-made table is not the extension's: it goes first
DROP TABLE p2pay.payments;
DROP EXTENSION p2pay;
DROP TABLE plan, outcome, state_before;
DROP FUNCTION uid(int), run_plan(), keep(text);
