-- Every insert path scores row by row, each row seeing the rows before it
-- in the same statement; whatever the client writes into the verdict
-- columns is overwritten.
CREATE EXTENSION p2pay;
SET TimeZone = 'UTC';

INSERT INTO p2pay.users (id, created_at)
  SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid, '2020-01-01'
    FROM generate_series(1, 3) n;
INSERT INTO p2pay.user_payment_methods
  SELECT id, '00000000-0000-4000-8000-000000000001' FROM p2pay.users;
-- A limit of 2 payments per hour makes the third row of a statement fire.
UPDATE p2pay.rules SET params = params || '{"max_count": 2}' WHERE name = 'payer_velocity_count';

-- Multi-row VALUES.
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
VALUES
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000002', 10, 'USD',
   '00000000-0000-4000-8000-000000000001', '2026-03-01 10:00+00'),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000002', 20, 'USD',
   '00000000-0000-4000-8000-000000000001', '2026-03-01 10:01+00'),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000002', 30, 'USD',
   '00000000-0000-4000-8000-000000000001', '2026-03-01 10:02+00')
RETURNING amount, decision, reasons;

-- INSERT ... SELECT.
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT '00000000-0000-4000-8000-000000000002', '00000000-0000-4000-8000-000000000003', 10 * i, 'USD',
       '00000000-0000-4000-8000-000000000001', '2026-03-01 11:00+00'::timestamptz + i * interval '1 minute'
  FROM generate_series(1, 3) i
RETURNING amount, decision, reasons;

-- COPY.
COPY p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at) FROM stdin;
00000000-0000-4000-8000-000000000003	00000000-0000-4000-8000-000000000001	10	USD	00000000-0000-4000-8000-000000000001	2026-03-01 12:00:00+00
00000000-0000-4000-8000-000000000003	00000000-0000-4000-8000-000000000001	20	USD	00000000-0000-4000-8000-000000000001	2026-03-01 12:01:00+00
00000000-0000-4000-8000-000000000003	00000000-0000-4000-8000-000000000001	30	USD	00000000-0000-4000-8000-000000000001	2026-03-01 12:02:00+00
\.
SELECT amount, decision, reasons FROM p2pay.payments
 WHERE payer_id = '00000000-0000-4000-8000-000000000003' ORDER BY created_at;

-- COPY rejects a bad row like INSERT does, naming the line.
COPY p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at) FROM stdin;
00000000-0000-4000-8000-000000000003	00000000-0000-4000-8000-000000000001	-1	USD	00000000-0000-4000-8000-000000000001	2026-03-01 13:00:00+00
\.

-- A client can't approve its own payment: the verdict columns it writes
-- are replaced by the trigger's.
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at,
                            risk_score, decision, is_approved, reasons)
VALUES ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000003', 50000, 'USD',
        '00000000-0000-4000-8000-000000000001', '2026-03-01 14:00+00',
        0, 'approve', true, '{}')
RETURNING round(risk_score::numeric, 4) AS risk_score, decision, is_approved, reasons, amount_base;

-- A row that arrives with amount_base is a scored row from a dump: scoring
-- it again would change its verdict and count it twice, so it is refused
-- (a dump is restored with session_replication_role = replica).
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at,
                            risk_score, decision, is_approved, reasons, amount_base)
VALUES ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000003', 50, 'USD',
        '00000000-0000-4000-8000-000000000001', '2026-03-01 14:00+00',
        0, 'approve', true, '{}', 50);

-- A BEFORE INSERT trigger of the table's own that fires after the scoring
-- trigger (BEFORE triggers fire in name order) could skip or change a
-- payment already counted in the state: no payment is scored while one
-- would fire.  One that fires before it, or an AFTER one, is no obstacle.
CREATE FUNCTION skip_small() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.amount < 5 THEN RETURN NULL; END IF;
  NEW.amount := NEW.amount * 2;
  RETURN NEW;
END $$;
CREATE TABLE counted AS SELECT out_count, out_sum FROM p2pay.account_stats
 WHERE user_id = '00000000-0000-4000-8000-000000000002';
CREATE TRIGGER zz_skip BEFORE INSERT ON p2pay.payments FOR EACH ROW EXECUTE FUNCTION skip_small();
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
VALUES ('00000000-0000-4000-8000-000000000002', '00000000-0000-4000-8000-000000000003', 1, 'USD',
        '00000000-0000-4000-8000-000000000001', '2026-03-01 15:00+00');
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE p2pay.payments DISABLE TRIGGER zz_skip;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
VALUES ('00000000-0000-4000-8000-000000000002', '00000000-0000-4000-8000-000000000003', 1, 'USD',
        '00000000-0000-4000-8000-000000000001', '2026-03-01 15:00+00') RETURNING amount;
ALTER TABLE p2pay.payments ENABLE REPLICA TRIGGER zz_skip;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
VALUES ('00000000-0000-4000-8000-000000000002', '00000000-0000-4000-8000-000000000003', 2, 'USD',
        '00000000-0000-4000-8000-000000000001', '2026-03-01 15:01+00') RETURNING amount;
DROP TRIGGER zz_skip ON p2pay.payments;
CREATE TRIGGER aa_skip BEFORE INSERT ON p2pay.payments FOR EACH ROW EXECUTE FUNCTION skip_small();
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
VALUES ('00000000-0000-4000-8000-000000000002', '00000000-0000-4000-8000-000000000003', 1, 'USD',
        '00000000-0000-4000-8000-000000000001', '2026-03-01 15:02+00'),
       ('00000000-0000-4000-8000-000000000002', '00000000-0000-4000-8000-000000000003', 10, 'USD',
        '00000000-0000-4000-8000-000000000001', '2026-03-01 15:03+00') RETURNING amount, amount_base;
-- What was stored is what was counted: the two payments of 1 and 2, and
-- the one of 10 stored as 20.
SELECT a.out_count - c.out_count AS counted, a.out_sum - c.out_sum AS sum_counted
  FROM p2pay.account_stats a, counted c WHERE a.user_id = '00000000-0000-4000-8000-000000000002';
DROP TRIGGER aa_skip ON p2pay.payments;
DROP FUNCTION skip_small();
DROP TABLE counted;

DROP EXTENSION p2pay;
