-- Each rule of the catalogue at its defaults: the payment that just stays
-- inside the limit, and the one that crosses it.  All times are explicit
-- (the rules measure windows back from each payment's created_at), and each
-- scenario uses its own users so that scenarios don't interact.
CREATE EXTENSION p2pay;
SET TimeZone = 'UTC';

CREATE FUNCTION u(n int) RETURNS uuid LANGUAGE sql IMMUTABLE
  AS $$ SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid $$;
CREATE FUNCTION method(n int) RETURNS uuid LANGUAGE sql IMMUTABLE
  AS $$ SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid $$;

-- 100 users opened long ago, each with Bank transfer registered.
INSERT INTO p2pay.users (id, first_name, created_at)
  SELECT u(n), 'user' || n, '2020-01-01' FROM generate_series(1, 100) n;
INSERT INTO p2pay.user_payment_methods (user_id, payment_method_id)
  SELECT u(n), method(1) FROM generate_series(1, 100) n;

-- Insert one payment by bank transfer and show its verdict.
CREATE FUNCTION pay(payer int, payee int, amount numeric, at timestamptz,
                    cur char(3) DEFAULT 'USD', meth int DEFAULT 1)
RETURNS TABLE (score numeric, decision p2pay.decision, reasons text[])
LANGUAGE sql AS $$
  INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
  VALUES (u(payer), u(payee), amount, cur, method(meth), at)
  RETURNING round(risk_score::numeric, 4), decision, reasons
$$;

\set T '''2026-03-02 10:30:00+00'''::timestamptz

-- amount_limit: above 10000, not at it.
SELECT * FROM pay(1, 2, 10, :T - interval '3 days');
SELECT * FROM pay(1, 2, 10000, :T - interval '2 days');
SELECT * FROM pay(1, 2, 10000.01, :T);
-- in the base currency: 9300 EUR is 10044 USD
SELECT * FROM pay(1, 2, 9300, :T + interval '1 minute', 'EUR');
SELECT amount, currency, amount_base FROM p2pay.payments
 WHERE payer_id = u(1) ORDER BY created_at DESC LIMIT 1;

-- payer_velocity_count: more than 10 payments in 1 hour; the 11th fires,
-- and once the window has moved on the older ones stop counting.
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
  SELECT u(3), u(4), 10, 'USD', method(1), :T + i * interval '1 minute'
    FROM generate_series(0, 10) i;
SELECT extract(minute FROM created_at) AS minute, reasons FROM p2pay.payments
 WHERE payer_id = u(3) ORDER BY created_at;
-- at 11:29:30 all 11 are inside (10:29:30, ...]: 12 fire; at 11:35:30 only
-- 10:36 to 10:40 and 11:29:30 are: 7 do not
SELECT * FROM pay(3, 4, 10, :T + interval '59 minutes 30 seconds');
SELECT * FROM pay(3, 4, 10, :T + interval '65 minutes 30 seconds');

-- payer_velocity_amount: total over 24 hours above 20000.  The window's
-- edge falls inside an hour bucket: the 10:20 payment of the day before is
-- outside it, the 10:45 one inside.
SELECT * FROM pay(5, 6, 5000, :T - interval '24 hours 10 minutes');
SELECT * FROM pay(5, 6, 9000, :T - interval '23 hours 45 minutes');
SELECT * FROM pay(5, 6, 9000, :T - interval '1 hour');
SELECT * FROM pay(5, 6, 2000, :T);
SELECT * FROM pay(5, 6, 0.01, :T + interval '1 minute');

-- payer_fan_out: more than 10 distinct payees in 24 hours.  Payer 7 has
-- no history: on its first day the absolute limit decides (on a later day
-- it would be compared with the days it has; sql/baselines.sql).
SELECT p.n AS payee, v.reasons
  FROM generate_series(8, 18) p(n),
       LATERAL pay(7, p.n, 10, :T - interval '10 hours' + (p.n - 8) * interval '50 minutes') v;
-- paying a payee already counted adds no new one
SELECT * FROM pay(7, 8, 10, :T + interval '1 minute');

-- payee_fan_in: more than 20 distinct payers into one payee in 24 hours.
-- Payee 41 has no history, so only payments of at least
-- short_history_min_amount (100) count: a mule's first day, not a shop's.
SELECT p.n AS payer, v.reasons
  FROM generate_series(20, 40) p(n),
       LATERAL pay(p.n, 41, 100, :T - (40 - p.n) * interval '1 minute') v;
SELECT * FROM pay(19, 41, 99.99, :T + interval '1 minute');

-- structuring: in [9000, 10000) with 3 such payments in 24 hours.
SELECT * FROM pay(42, 43, 9500, :T - interval '3 hours');
SELECT * FROM pay(42, 43, 8999.99, :T - interval '2 hours 30 minutes');
SELECT * FROM pay(42, 43, 9500, :T - interval '2 hours');
SELECT * FROM pay(42, 43, 9999.99, :T - interval '1 hour');
SELECT * FROM pay(42, 43, 10000, :T);

-- new_payee_high_amount: first payment to this payee, above 1000, by a
-- payer p2pay has known for 30 days (min_known_days): 44 paid 48 thirty
-- days before.  99, first seen 29 days before, is too new to p2pay for a
-- pair it has not seen to be a new payee (a monthly payment might not have
-- come round yet).
SELECT * FROM pay(44, 48, 10, :T - interval '30 days');
SELECT * FROM pay(44, 45, 1000, :T);
SELECT * FROM pay(44, 46, 1000.01, :T);
SELECT * FROM pay(44, 46, 1000.01, :T + interval '1 minute');
SELECT * FROM pay(99, 48, 10, :T - interval '29 days');
SELECT * FROM pay(99, 46, 1000.01, :T);

-- new_account_high_amount: payer opened less than 7 days before, above 1000.
INSERT INTO p2pay.users (id, created_at) VALUES
  (u(101), :T - interval '6 days'), (u(102), :T - interval '8 days');
INSERT INTO p2pay.user_payment_methods VALUES (u(101), method(1)), (u(102), method(1));
SELECT * FROM pay(101, 47, 10, :T - interval '1 hour');
SELECT * FROM pay(101, 47, 1500, :T);
SELECT * FROM pay(102, 47, 10, :T - interval '1 hour');
SELECT * FROM pay(102, 47, 1500, :T);

-- round_trip: the payee paid the payer at least 1000 in the last 24 hours,
-- and this payment is at least 1000.
SELECT * FROM pay(49, 50, 1000, :T - interval '2 hours');
SELECT * FROM pay(50, 49, 1000, :T);
SELECT * FROM pay(51, 52, 999, :T - interval '2 hours');
SELECT * FROM pay(52, 51, 5000, :T);
SELECT * FROM pay(53, 54, 1000, :T - interval '25 hours');
SELECT * FROM pay(54, 53, 1000, :T);
SELECT * FROM pay(55, 56, 5000, :T - interval '2 hours');
SELECT * FROM pay(56, 55, 999, :T);

-- unregistered_method: paying by Cash, which user 57 has not registered.
SELECT * FROM pay(57, 58, 10, :T, 'USD', 4);

-- amount_deviation: 5 earlier payments averaging 100, then more than 500.
SELECT count(*) FROM generate_series(1, 5) i,
  LATERAL pay(59, 60, 100, :T - i * interval '1 day') v WHERE v.reasons = '{}';
SELECT * FROM pay(59, 60, 500, :T);
SELECT count(*) FROM generate_series(1, 5) i,
  LATERAL pay(71, 72, 100, :T - i * interval '1 day') v WHERE v.reasons = '{}';
SELECT * FROM pay(71, 72, 500.01, :T);
-- with only 4 earlier payments it does not fire
SELECT count(*) FROM generate_series(1, 4) i,
  LATERAL pay(61, 62, 100, :T - i * interval '1 day') v WHERE v.reasons = '{}';
SELECT * FROM pay(61, 62, 600, :T);

-- dormant_reactivation: previous payment more than 90 days before, above 1000.
SELECT * FROM pay(63, 64, 10, :T - interval '91 days');
SELECT * FROM pay(63, 64, 1500, :T);
SELECT * FROM pay(65, 66, 10, :T - interval '89 days');
SELECT * FROM pay(65, 66, 1500, :T);

-- blocklist: payer or payee listed, until the entry expires: decline
-- whatever the score.
INSERT INTO p2pay.blocklist (user_id, reason) VALUES (u(68), 'confirmed mule');
INSERT INTO p2pay.blocklist (user_id, reason, expires_at)
  VALUES (u(70), 'under investigation', :T - interval '1 day');
SELECT * FROM pay(67, 68, 10, :T);
SELECT * FROM pay(68, 67, 10, :T + interval '1 minute');
SELECT * FROM pay(69, 70, 10, :T);
SELECT * FROM pay(69, 70, 10, :T - interval '2 days');

DROP FUNCTION pay(int, int, numeric, timestamptz, char, int), u(int), method(int);
DROP EXTENSION p2pay;
