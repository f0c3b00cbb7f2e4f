-- A long load in one transaction, into an empty payments: the money-flow
-- statements, planned at its first large payment while the table's
-- statistics say it is empty, read the payments through their b-tree
-- indexes, never by a sequential or BRIN scan that would visit every
-- payment the load inserted so far, for each payment it inserts.
CREATE EXTENSION p2pay;
SET TimeZone = 'UTC';

CREATE FUNCTION u(n int) RETURNS uuid LANGUAGE sql IMMUTABLE
  AS $$ SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid $$;
INSERT INTO p2pay.users (id, created_at) SELECT u(n), '2020-01-01' FROM generate_series(1, 100) n;
INSERT INTO p2pay.user_payment_methods
  SELECT u(n), '00000000-0000-4000-8000-000000000001' FROM generate_series(1, 100) n;

-- How many times payments (its partitions, if partitioned) was read
-- sequentially, and through a BRIN index, by this backend since its
-- statistics were last reported (never within a transaction block).
CREATE FUNCTION payment_scans(OUT seq bigint, OUT brin bigint) LANGUAGE sql AS $$
  WITH tables AS (SELECT 'p2pay.payments'::regclass AS relid
                  UNION SELECT relid FROM pg_partition_tree('p2pay.payments'))
  SELECT (SELECT coalesce(sum(pg_stat_get_xact_numscans(t.relid)), 0)
            FROM tables t JOIN pg_class c ON c.oid = t.relid
           WHERE c.relkind = 'r'),
         (SELECT coalesce(sum(pg_stat_get_xact_numscans(i.indexrelid)), 0)
            FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
           WHERE a.amname = 'brin'
             AND i.indrelid IN (SELECT relid FROM tables))
$$;

BEGIN;
SELECT * FROM payment_scans() \gset before_
-- 500 payments of at least the cycle rule's min_amount over a few hours,
-- each user paying the next five in turn.
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT u(1 + i % 100), u(1 + (i % 100 + 1 + (i / 100) % 5) % 100),
       1000 + i % 500, 'USD', '00000000-0000-4000-8000-000000000001',
       '2026-03-01 00:00+00'::timestamptz + i * interval '40 seconds'
  FROM generate_series(0, 499) i
 ORDER BY i;
SELECT seq - :before_seq AS seq_scans, brin - :before_brin AS brin_scans FROM payment_scans();
SELECT count(*) AS payments FROM p2pay.payments;
COMMIT;

DROP FUNCTION payment_scans();
DROP FUNCTION u(int);
DROP EXTENSION p2pay;
