-- Bad input is rejected with a specific SQLSTATE and a message naming the
-- field; nothing is stored, and the transaction's earlier work survives
-- (each attempt runs in a subtransaction, as a savepoint would).
CREATE EXTENSION p2pay;

CREATE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE sql;
  RETURN 'accepted';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

INSERT INTO p2pay.users (id) VALUES
  ('00000000-0000-4000-8000-00000000000a'), ('00000000-0000-4000-8000-00000000000b');

-- INSERT a payment from a to b with one column overridden.
CREATE FUNCTION attempt(col text, val text) RETURNS text LANGUAGE sql AS $$
  SELECT try(format(
    'INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at) '
    'SELECT payer_id, payee_id, amount, currency, payment_method_id, created_at FROM (SELECT '
    '%s AS payer_id, %s AS payee_id, %s AS amount, %s AS currency, %s AS payment_method_id, %s AS created_at) v',
    CASE col WHEN 'payer_id' THEN val ELSE '''00000000-0000-4000-8000-00000000000a''::uuid' END,
    CASE col WHEN 'payee_id' THEN val ELSE '''00000000-0000-4000-8000-00000000000b''::uuid' END,
    CASE col WHEN 'amount' THEN val ELSE '10::numeric' END,
    CASE col WHEN 'currency' THEN val ELSE '''USD''::bpchar' END,
    CASE col WHEN 'payment_method_id' THEN val ELSE '''00000000-0000-4000-8000-000000000001''::uuid' END,
    CASE col WHEN 'created_at' THEN val ELSE 'now()' END))
$$;

BEGIN;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
  VALUES ('00000000-0000-4000-8000-00000000000a', '00000000-0000-4000-8000-00000000000b',
          25, 'USD', '00000000-0000-4000-8000-000000000001');

SELECT col, val, attempt(col, val) FROM (VALUES
  ('amount', 'NULL::numeric'),
  ('amount', '0::numeric'),
  ('amount', '-5::numeric'),
  ('amount', '''NaN''::numeric'),
  ('amount', '''Infinity''::numeric'),
  ('amount', '''-Infinity''::numeric'),
  ('amount', '1000000000000000.0001::numeric'),
  ('amount', '1.00001::numeric'),
  ('currency', 'NULL::bpchar'),
  ('currency', '''XYZ''::bpchar'),
  ('currency', '''usd''::bpchar'),
  ('payer_id', 'NULL::uuid'),
  ('payer_id', '''00000000-0000-4000-8000-0000000000ff''::uuid'),
  ('payee_id', 'NULL::uuid'),
  ('payee_id', '''00000000-0000-4000-8000-0000000000ff''::uuid'),
  ('payee_id', '''00000000-0000-4000-8000-00000000000a''::uuid'),
  ('payment_method_id', 'NULL::uuid'),
  ('payment_method_id', '''00000000-0000-4000-8000-0000000000ff''::uuid'),
  ('payer_id', '''not-a-uuid''::uuid'),
  ('created_at', 'NULL::timestamptz'),
  ('created_at', 'now() + interval ''10 minutes'''),
  ('created_at', '''infinity''::timestamptz'),
  ('created_at', '''-infinity''::timestamptz')
) AS t(col, val);

-- Limits that are accepted: the largest amount, four decimals, trailing
-- zeros, a time just ahead of the clock, a time long past.
SELECT col, val, attempt(col, val) FROM (VALUES
  ('amount', '1000000000000000::numeric'),
  ('amount', '0.0001::numeric'),
  ('amount', '1.50000::numeric'),
  ('created_at', 'now() + interval ''1 minute'''),
  ('created_at', '''1999-12-31 23:30:00+00''::timestamptz')
) AS t(col, val);

-- The first payment and the five accepted ones are all that was stored,
-- and the account state counts exactly those.
SELECT count(*) AS payments FROM p2pay.payments;
SELECT out_count, in_count FROM p2pay.account_stats ORDER BY user_id;
SELECT sum(n) AS pair_payments FROM p2pay.pair_stats;
-- the payment before 2000 (where timestamps turn negative) is in its own
-- hour of its own day
SELECT day, out_hours, out_count FROM p2pay.account_daily WHERE out_hours <> '{}' ORDER BY day LIMIT 1;
COMMIT;

-- The tolerance for clock skew is a setting.
SET p2pay.future_tolerance = '15min';
SELECT attempt('created_at', 'now() + interval ''10 minutes''');
RESET p2pay.future_tolerance;

DROP FUNCTION try(text), attempt(text, text);
DROP EXTENSION p2pay;
