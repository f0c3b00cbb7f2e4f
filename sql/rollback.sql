-- A payment that is rolled back, whole or to a savepoint, leaves no trace
-- in the per-account state: the rules never count it.
CREATE EXTENSION p2pay;

INSERT INTO p2pay.users (id, created_at)
  SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid, '2020-01-01'
    FROM generate_series(1, 2) n;
INSERT INTO p2pay.user_payment_methods
  SELECT id, '00000000-0000-4000-8000-000000000001' FROM p2pay.users;
UPDATE p2pay.rules SET params = params || '{"max_count": 1}' WHERE name = 'payer_velocity_count';

CREATE FUNCTION pay(amount numeric) RETURNS text LANGUAGE sql AS $$
  INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
  VALUES ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000002',
          amount, 'USD', '00000000-0000-4000-8000-000000000001')
  RETURNING decision || ' ' || reasons::text
$$;

BEGIN;
SELECT pay(100);
SELECT pay(200);
ROLLBACK;

BEGIN;
SAVEPOINT s;
SELECT pay(300);
ROLLBACK TO SAVEPOINT s;
COMMIT;

-- Nothing was stored, and the state holds nothing.
SELECT count(*) AS payments FROM p2pay.payments;
SELECT count(*) AS accounts FROM p2pay.account_stats;
SELECT count(*) AS pairs FROM p2pay.pair_stats;
SELECT count(*) AS days FROM p2pay.account_daily;

-- So the first committed payment is the first in its window, the second
-- is over the limit of one.
SELECT pay(400);
SELECT pay(500);
SELECT out_count, out_sum FROM p2pay.account_stats
 WHERE user_id = '00000000-0000-4000-8000-000000000001';

DROP FUNCTION pay(numeric);
DROP EXTENSION p2pay;
