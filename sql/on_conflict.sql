-- INSERT ... ON CONFLICT DO NOTHING, the idempotent insert: a payment it
-- passes over (its transaction_id, or id, is stored already, or earlier in
-- the same statement) is neither scored nor counted, so the state counts
-- the payments stored, and each payment stored is scored as if the ones
-- passed over had not been sent.
CREATE EXTENSION p2pay;
SET TimeZone = 'UTC';

CREATE FUNCTION u(n int) RETURNS uuid LANGUAGE sql IMMUTABLE
  AS $$ SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid $$;
INSERT INTO p2pay.users (id, created_at) SELECT u(n), '2020-01-01' FROM generate_series(1, 6) n;
INSERT INTO p2pay.user_payment_methods SELECT id, '00000000-0000-4000-8000-000000000001' FROM p2pay.users;
\i test/state_vs_recount.sql
-- A payment after four of its payer's in the hour fires
-- payer_velocity_count; one after three does not.
UPDATE p2pay.rules SET params = params || '{"max_count": 4}' WHERE name = 'payer_velocity_count';

-- The batch as the client sends it: payments k = 1..n from user 1 to user 2.
CREATE FUNCTION batch(n int) RETURNS TABLE (transaction_id uuid, payer_id uuid, payee_id uuid,
  amount numeric, currency text, payment_method_id uuid, created_at timestamptz)
LANGUAGE sql AS $$
  SELECT u(100 + k), u(1), u(2), 10.0 * k, 'USD'::text, '00000000-0000-4000-8000-000000000001'::uuid,
         '2026-03-01 10:00+00'::timestamptz + k * interval '1 minute'
    FROM generate_series(1, n) k
$$;

-- 1. Three payments, then the batch sent again with a fourth: the three
-- are passed over, and the fourth is scored after three payments of the
-- hour, not six (which would fire payer_velocity_count).
INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT * FROM batch(3);
INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT * FROM batch(4)
ON CONFLICT DO NOTHING
RETURNING amount, decision, reasons;
-- The same fourth payment inserted alone gets the same verdict.
BEGIN;
DELETE FROM p2pay.payments WHERE transaction_id = u(104);
INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT * FROM batch(4) b WHERE b.transaction_id = u(104)
RETURNING amount, decision, reasons;
ROLLBACK;
SELECT count(*) AS stored FROM p2pay.payments;
SELECT user_id, out_count, out_sum, in_count, in_sum FROM p2pay.account_stats ORDER BY 1;
SELECT * FROM state_vs_recount();

-- 2. A payment sent twice in one statement: the second is passed over.
INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency, payment_method_id, created_at)
VALUES (u(200), u(3), u(4), 10, 'USD', '00000000-0000-4000-8000-000000000001', '2026-03-02 10:00+00'),
       (u(200), u(3), u(4), 10, 'USD', '00000000-0000-4000-8000-000000000001', '2026-03-02 10:00+00'),
       (u(201), u(3), u(4), 20, 'USD', '00000000-0000-4000-8000-000000000001', '2026-03-02 10:01+00')
ON CONFLICT DO NOTHING
RETURNING amount;
SELECT user_id, out_count, out_sum, in_count, in_sum FROM p2pay.account_stats
 WHERE user_id IN (u(3), u(4)) ORDER BY 1;

-- 3. Without the statement triggers, which check at the statement's end
-- that what was counted is what was stored, ON CONFLICT is refused.  A
-- plain INSERT of a stored payment fails on its key, as always.
ALTER TABLE p2pay.payments DISABLE TRIGGER payments_batch_end;
INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency, payment_method_id, created_at)
VALUES (u(202), u(5), u(6), 10, 'USD', '00000000-0000-4000-8000-000000000001', '2026-03-02 11:00+00')
ON CONFLICT DO NOTHING;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE p2pay.payments ENABLE TRIGGER payments_batch_end;
DO $$
BEGIN
  INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency, payment_method_id, created_at)
  VALUES (u(201), u(3), u(4), 20, 'USD', '00000000-0000-4000-8000-000000000001', '2026-03-02 10:01+00');
EXCEPTION WHEN unique_violation THEN
  RAISE NOTICE 'refused: %', SQLSTATE;
END $$;
SELECT * FROM state_vs_recount();

DROP FUNCTION state_vs_recount(), batch(int);
DROP VIEW recount_account_stats, recount_pair_stats, recount_account_daily, recount_day_hours;
DROP FUNCTION u(int);
DROP EXTENSION p2pay;
