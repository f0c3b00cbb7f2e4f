-- Following the money through an account: pass_through (in from many, out
-- in a lump) and cycle (the payment closes a loop of 3 or 4 accounts), at
-- the edges of their parameters.
CREATE EXTENSION p2pay;
SET TimeZone = 'UTC';

CREATE FUNCTION u(n int) RETURNS uuid LANGUAGE sql IMMUTABLE
  AS $$ SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid $$;
INSERT INTO p2pay.users (id, created_at) SELECT u(n), '2020-01-01' FROM generate_series(1, 60) n;
INSERT INTO p2pay.user_payment_methods
  SELECT u(n), '00000000-0000-4000-8000-000000000001' FROM generate_series(1, 60) n;
-- Only the rules under test decide, so that each line shows one of them.
UPDATE p2pay.rules SET mode = 'off' WHERE name NOT IN ('pass_through', 'cycle');

CREATE FUNCTION pay(payer int, payee int, amount numeric, at timestamptz)
RETURNS TABLE (decision p2pay.decision, reasons text[]) LANGUAGE sql AS $$
  INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
  VALUES (u(payer), u(payee), amount, 'USD', '00000000-0000-4000-8000-000000000001', at)
  RETURNING decision, reasons
$$;
\set T '''2026-03-02 12:00:00+00'''::timestamptz
SELECT params FROM p2pay.rules WHERE name IN ('pass_through', 'cycle') ORDER BY name;

-- pass_through: five payers (2..6) pay 400 each into 1 within the day;
-- then 1 moves 1000 (half of 2000) out: it fires.
SELECT count(*) FROM generate_series(2, 6) n, LATERAL pay(n, 1, 400, :T - interval '5 hours' + n * interval '10 minutes') p
 WHERE p.reasons = '{}';
SELECT * FROM pay(1, 50, 999.99, :T);
SELECT * FROM pay(1, 51, 1000, :T + interval '1 minute');
-- four payers are not enough
SELECT count(*) FROM generate_series(12, 15) n, LATERAL pay(n, 11, 500, :T - interval '2 hours') p
 WHERE p.reasons = '{}';
SELECT * FROM pay(11, 50, 2000, :T);
-- money older than the window doesn't count: 21 received from five payers
-- 25 hours ago, and from one an hour ago
SELECT count(*) FROM generate_series(22, 26) n, LATERAL pay(n, 21, 400, :T - interval '25 hours') p
 WHERE p.reasons = '{}';
SELECT * FROM pay(27, 21, 400, :T - interval '1 hour');
SELECT * FROM pay(21, 50, 1000, :T);
-- a lump smaller than share of what came in does not fire
SELECT count(*) FROM generate_series(32, 36) n, LATERAL pay(n, 31, 1000, :T - interval '3 hours') p
 WHERE p.reasons = '{}';
SELECT * FROM pay(31, 50, 2499.99, :T);
SELECT * FROM pay(31, 50, 2500, :T + interval '1 minute');

-- cycle: 40 -> 41 -> 42, then 42 pays 40 back: a loop of three.
SELECT * FROM pay(40, 41, 5000, :T - interval '2 hours');
SELECT * FROM pay(41, 42, 4800, :T - interval '1 hour');
SELECT * FROM pay(42, 40, 4600, :T);
-- a loop of four: 43 -> 44 -> 45 -> 46 -> 43
SELECT * FROM pay(43, 44, 3000, :T - interval '3 hours');
SELECT * FROM pay(44, 45, 2900, :T - interval '2 hours');
SELECT * FROM pay(45, 46, 2800, :T - interval '1 hour');
SELECT * FROM pay(46, 43, 2700, :T);
-- with max_length 3 the loop of four is not followed
UPDATE p2pay.rules SET params = params || '{"max_length": 3}' WHERE name = 'cycle';
SELECT * FROM pay(46, 43, 2600, :T + interval '1 minute');
UPDATE p2pay.rules SET params = params || '{"max_length": 4}' WHERE name = 'cycle';
-- a leg below min_amount breaks the loop; so does a leg outside the window
SELECT * FROM pay(47, 48, 5000, :T - interval '2 hours');
SELECT * FROM pay(48, 49, 999, :T - interval '1 hour');
SELECT * FROM pay(49, 47, 5000, :T);
SELECT * FROM pay(52, 53, 5000, :T - interval '25 hours');
SELECT * FROM pay(53, 54, 5000, :T - interval '1 hour');
SELECT * FROM pay(54, 52, 5000, :T);
-- parameters are checked when written
CREATE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN EXECUTE sql; RETURN 'accepted';
EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE || ': ' || SQLERRM; END $$;
SELECT try($$UPDATE p2pay.rules SET params = params || '{"max_length": 5}' WHERE name = 'cycle'$$);
SELECT try($$UPDATE p2pay.rules SET params = params || '{"share": 1.5}' WHERE name = 'pass_through'$$);

-- A loop closes only through an account that paid the payer in the
-- window, and pair_stats keeps every pair's last payment: an account whose
-- pair with the payer has none there is not followed into its payments.
-- 81 paid 61 and 66, so loops are looked for when they pay.  61 pays 62,
-- which paid 63..65, which paid two accounts each; 66 pays 67, which paid
-- 68..70, which paid ten accounts each.  None of those paid 61 or 66:
-- both payments read the same number of payments (scans of the
-- (payer_id, created_at) index), however many accounts the legs reach.
INSERT INTO p2pay.users (id, created_at) SELECT u(n), '2020-01-01' FROM generate_series(61, 81) n;
INSERT INTO p2pay.user_payment_methods
  SELECT u(n), '00000000-0000-4000-8000-000000000001' FROM generate_series(61, 81) n;
\i test/payer_time_scans.sql
CREATE FUNCTION pay_reads(payer int, payee int, amount numeric, at timestamptz)
RETURNS TABLE (reasons text[], reads bigint) LANGUAGE plpgsql AS $$
DECLARE
  before bigint := payer_time_scans();
BEGIN
  SELECT p.reasons INTO reasons FROM pay(payer, payee, amount, at) p;
  reads := payer_time_scans() - before;
  RETURN NEXT;
END $$;
SELECT count(*) FROM (VALUES (62, 63), (62, 64), (62, 65), (67, 68), (67, 69), (67, 70)) l(y, c),
       LATERAL pay(y, c, 5000, :T - interval '3 hours') p;
SELECT count(*) FROM generate_series(63, 65) c, generate_series(71, 72) d,
       LATERAL pay(c, d, 5000, :T - interval '2 hours') p;
SELECT count(*) FROM generate_series(68, 70) c, generate_series(71, 80) d,
       LATERAL pay(c, d, 5000, :T - interval '2 hours') p;
SELECT count(*) FROM generate_series(61, 66, 5) x, LATERAL pay(81, x, 5000, :T - interval '2 hours') p;
CREATE TEMP TABLE reads AS
  SELECT 2 AS accounts, * FROM pay_reads(61, 62, 5000, :T)
  UNION ALL SELECT 10, * FROM pay_reads(66, 67, 5000, :T);
SELECT accounts, reasons, reads = (SELECT reads FROM reads WHERE accounts = 2) AS "reads as many"
  FROM reads ORDER BY accounts;
-- 75 paying 66 closes 75 -> 66 -> 67 -> 68 -> 75; then 66's next payment to
-- 67 closes it too, through the pair 75 -> 66
SELECT * FROM pay(75, 66, 5000, :T - interval '1 hour');
SELECT * FROM pay(66, 67, 5000, :T + interval '1 minute');

-- The last leg of a loop comes from an account other than the payee: 82,
-- paid by 83 alone, pays 83, which paid 84, which paid 85.  No loop is
-- looked for: the payment reads as many payments as with cycle off, and
-- so it does under REPEATABLE READ, whose check for a loop closed after
-- the snapshot asks the same first.  The payment outside a transaction
-- stays: 85 paying 82 then closes 85 -> 82 -> 83 -> 84 -> 85, and 82's
-- next payment to 83 closes 82 -> 83 -> 84 -> 85 -> 82.
INSERT INTO p2pay.users (id, created_at) SELECT u(n), '2020-01-01' FROM generate_series(82, 85) n;
INSERT INTO p2pay.user_payment_methods
  SELECT u(n), '00000000-0000-4000-8000-000000000001' FROM generate_series(82, 85) n;
SELECT count(*) FROM (VALUES (83, 82), (83, 84), (84, 85)) l(a, b),
       LATERAL pay(a, b, 5000, :T - interval '2 hours') p;
BEGIN;
UPDATE p2pay.rules SET mode = 'off' WHERE name = 'cycle';
SELECT reads AS off_reads FROM pay_reads(82, 83, 5000, :T) \gset
ROLLBACK;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT reasons, reads = :off_reads AS "reads as with cycle off" FROM pay_reads(82, 83, 5000, :T);
ROLLBACK;
SELECT reasons, reads = :off_reads AS "reads as with cycle off" FROM pay_reads(82, 83, 5000, :T);
SELECT * FROM pay(85, 82, 5000, :T - interval '1 hour');
SELECT * FROM pay(82, 83, 5000, :T + interval '1 minute');

-- What a payer's payers paid it in the window is their pair's total when
-- the pair's first payment is in the window: only a pair that paid before
-- it has its payments read.  94..98 pay 93 400 each 3 hours ago: 93
-- moving 1000 fires, and reads no more payments than with pass_through
-- off.  87..91 pay 86 the same, and 87 paid it 400 more 25 hours ago,
-- which doesn't count: 86 moving 1000 (half of 2000, not of 2400) fires,
-- and reads 87's payments.
INSERT INTO p2pay.users (id, created_at) SELECT u(n), '2020-01-01' FROM generate_series(86, 99) n;
INSERT INTO p2pay.user_payment_methods
  SELECT u(n), '00000000-0000-4000-8000-000000000001' FROM generate_series(86, 99) n;
SELECT * FROM pay(87, 86, 400, :T - interval '25 hours');
SELECT count(*) FROM generate_series(87, 91) n, LATERAL pay(n, 86, 400, :T - interval '3 hours') p
 WHERE p.reasons = '{}';
SELECT count(*) FROM generate_series(94, 98) n, LATERAL pay(n, 93, 400, :T - interval '3 hours') p
 WHERE p.reasons = '{}';
BEGIN;
UPDATE p2pay.rules SET mode = 'off' WHERE name = 'pass_through';
SELECT reads AS off93 FROM pay_reads(93, 99, 1000, :T) \gset
SELECT reads AS off86 FROM pay_reads(86, 92, 1000, :T) \gset
ROLLBACK;
SELECT reasons, reads - :off93 AS "reads beyond pass_through off" FROM pay_reads(93, 99, 1000, :T);
SELECT reasons, reads > :off86 AS "87's payments read" FROM pay_reads(86, 92, 1000, :T);

DROP TABLE reads;
DROP FUNCTION pay_reads(int, int, numeric, timestamptz), payer_time_scans(),
  pay(int, int, numeric, timestamptz), u(int), try(text);
DROP EXTENSION p2pay;
