-- test/browser/setup.sql: the data the browser tests start from (users,
-- registered methods, a history, a payment under review), loaded by run.sh
-- as a superuser after test/browser/roles.sql and scripts/roles.sql.

-- Alice and Bob have paid each other for a month with a registered bank
-- transfer; Carol opened her account two days ago (her name is markup, which
-- the pages must show as text).
INSERT INTO p2pay.users (id, first_name, last_name, email_address, created_at) VALUES
  ('a0000000-0000-4000-8000-000000000001', 'Alice', 'Payer', 'alice@example.com', now() - interval '400 days'),
  ('a0000000-0000-4000-8000-000000000002', 'Bob', 'Payee', 'bob@example.com', now() - interval '400 days'),
  ('a0000000-0000-4000-8000-000000000003', 'Carol', '<img src=x data-testid=injected>', 'carol@example.com', now() - interval '2 days');
INSERT INTO p2pay.user_payment_methods (user_id, payment_method_id) VALUES
  ('a0000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000001'),
  ('a0000000-0000-4000-8000-000000000002', '00000000-0000-4000-8000-000000000001');
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT 'a0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000002',
       20 + i, 'USD', '00000000-0000-4000-8000-000000000001', now() - i * interval '1 day'
  FROM generate_series(30, 1, -1) i;

-- Under review: a large cash payment to Carol's young account.
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
VALUES ('a0000000-0000-4000-8000-000000000002', 'a0000000-0000-4000-8000-000000000003',
        9000, 'USD', '00000000-0000-4000-8000-000000000004', now() - interval '3 hours');
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM p2pay.payments WHERE decision = 'review') THEN
    RAISE EXCEPTION 'the browser tests'' data has no payment under review';
  END IF;
END $$;
