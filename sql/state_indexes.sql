-- The trigger writes the per-account state through the heap and keeps the
-- state tables' indexes itself: every index, including one added later,
-- holds an entry for every row version it must (amcheck verifies each
-- against the heap), and an index it can't keep is refused with a clear
-- error rather than left wrong.
CREATE EXTENSION p2pay;
CREATE EXTENSION amcheck;
SET TimeZone = 'UTC';

CREATE FUNCTION u(n int) RETURNS uuid LANGUAGE sql IMMUTABLE
  AS $$ SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid $$;
INSERT INTO p2pay.users (id, created_at) SELECT u(n), '2020-01-01' FROM generate_series(1, 12) n;
INSERT INTO p2pay.user_payment_methods
  SELECT u(n), '00000000-0000-4000-8000-000000000001' FROM generate_series(1, 12) n;

-- Every index of the three state tables, checked against the heap.
-- (bt_index_check with heapallindexed raises an error for a row version
-- its index lacks.)
CREATE FUNCTION check_state_indexes() RETURNS SETOF regclass
LANGUAGE sql AS $$
  SELECT i.indexrelid::regclass
    FROM pg_index i, LATERAL (SELECT bt_index_check(i.indexrelid, true)) c
   WHERE i.indrelid IN ('p2pay.pair_stats'::regclass, 'p2pay.account_stats'::regclass,
                        'p2pay.account_daily'::regclass)
   ORDER BY i.indexrelid::regclass::text
$$;

-- 400 payments over five days among twelve users: new pairs, hours and
-- days (inserts), pairs paid again (updates that move last_at, so not HOT)
-- and totals (HOT updates), some in one statement, some one at a time.
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT u(1 + i % 12), u(1 + (i % 12 + 1 + (i / 12) % 4) % 12), 10 + i % 29, 'USD',
       '00000000-0000-4000-8000-000000000001',
       '2026-03-01 00:00+00'::timestamptz + i * interval '17 minutes'
  FROM generate_series(0, 299) i
 ORDER BY i;
DO $$
BEGIN
  FOR i IN 300..399 LOOP
    INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
    VALUES (u(1 + i % 12), u(1 + (i % 12 + 1 + (i / 12) % 4) % 12), 10 + i % 29, 'USD',
            '00000000-0000-4000-8000-000000000001',
            '2026-03-01 00:00+00'::timestamptz + i * interval '17 minutes');
  END LOOP;
END $$;
SELECT (SELECT count(*) FROM p2pay.pair_stats) AS pairs, (SELECT sum(n) FROM p2pay.pair_stats) AS payments,
       (SELECT sum(cardinality(out_hours)) FROM p2pay.account_daily) AS hours,
       (SELECT count(*) FROM p2pay.account_daily) AS days;
SELECT check_state_indexes() AS checked;

-- An index added later is kept from the next payment on.
CREATE INDEX pair_stats_n_idx ON p2pay.pair_stats (payee_id, n);
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT u(1 + i % 12), u(1 + (i % 12 + 5) % 12), 10, 'USD',
       '00000000-0000-4000-8000-000000000001',
       '2026-03-06 00:00+00'::timestamptz + i * interval '3 minutes'
  FROM generate_series(0, 35) i
 ORDER BY i;
SELECT check_state_indexes() AS checked;
-- the new index finds what the table holds
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SELECT count(*) FROM p2pay.pair_stats WHERE payee_id = u(6) AND n >= 1;
RESET enable_seqscan;
RESET enable_bitmapscan;
SELECT count(*) FROM p2pay.pair_stats WHERE payee_id = u(6) AND n >= 1;
DROP INDEX p2pay.pair_stats_n_idx;

-- An index whose entries aren't plain columns is refused.
CREATE INDEX pair_stats_expr_idx ON p2pay.pair_stats ((n + 1));
\set VERBOSITY sqlstate
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
VALUES (u(1), u(2), 10, 'USD', '00000000-0000-4000-8000-000000000001');
\set VERBOSITY default
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
VALUES (u(1), u(2), 10, 'USD', '00000000-0000-4000-8000-000000000001');
DROP INDEX p2pay.pair_stats_expr_idx;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
VALUES (u(1), u(2), 10, 'USD', '00000000-0000-4000-8000-000000000001')
RETURNING decision;
SELECT check_state_indexes() AS checked;

-- A state table whose columns are not the ones p2pay created is refused.
ALTER TABLE p2pay.account_daily ADD COLUMN note text;
\set VERBOSITY sqlstate
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
VALUES (u(1), u(2), 10, 'USD', '00000000-0000-4000-8000-000000000001');
\set VERBOSITY default
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
VALUES (u(1), u(2), 10, 'USD', '00000000-0000-4000-8000-000000000001');
ALTER TABLE p2pay.account_daily DROP COLUMN note;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
VALUES (u(1), u(2), 10, 'USD', '00000000-0000-4000-8000-000000000001')
RETURNING decision;

DROP FUNCTION check_state_indexes();
DROP FUNCTION u(int);
DROP EXTENSION p2pay;
DROP EXTENSION amcheck;
