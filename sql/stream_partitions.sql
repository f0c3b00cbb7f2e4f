-- The stream with p2pay.payments partitioned: a change of a partition, at
-- any depth and whatever its column order, is a payment event; a TRUNCATE
-- is the truncated event only when it names p2pay.payments, and keeps the
-- per-account state when it names a partition (archiving), as detaching
-- or dropping a partition does.  The table is partitioned by hand here,
-- without p2pay's triggers: its rows are written as the trigger would
-- have scored them.
CREATE EXTENSION p2pay;
SET TimeZone = 'UTC';

ALTER TABLE p2pay.payments RENAME TO payments_plain;
CREATE TABLE p2pay.payments (LIKE p2pay.payments_plain INCLUDING DEFAULTS)
  PARTITION BY RANGE (created_at);
CREATE TABLE p2pay.payments_2025 PARTITION OF p2pay.payments
  FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE p2pay.payments_2026 PARTITION OF p2pay.payments
  FOR VALUES FROM ('2026-01-01') TO ('2027-01-01') PARTITION BY RANGE (created_at);
CREATE TABLE p2pay.payments_2026_02 PARTITION OF p2pay.payments_2026
  FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
-- March is made apart, its columns in another order after a dropped one,
-- and attached.
CREATE TABLE p2pay.payments_2026_03 (
  scratch int,
  shadow_decision p2pay.decision, shadow_risk_score double precision, shadow_reasons text[],
  ruleset_version bigint, amount_base numeric, reasons text[], is_approved boolean,
  decision p2pay.decision, risk_score double precision, created_at timestamptz NOT NULL,
  payment_method_id uuid NOT NULL, currency char(3) NOT NULL, amount numeric NOT NULL,
  payee_id uuid NOT NULL, payer_id uuid NOT NULL, transaction_id uuid NOT NULL, id bigint NOT NULL);
ALTER TABLE p2pay.payments_2026_03 DROP COLUMN scratch;
ALTER TABLE p2pay.payments_2026 ATTACH PARTITION p2pay.payments_2026_03
  FOR VALUES FROM ('2026-03-01') TO ('2026-04-01');
ALTER TABLE p2pay.payments_2025 REPLICA IDENTITY FULL;
ALTER TABLE p2pay.payments_2026_02 REPLICA IDENTITY FULL;
ALTER TABLE p2pay.payments_2026_03 REPLICA IDENTITY FULL;
SELECT c.relname, a.attnum
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE a.attname = 'transaction_id' AND c.relname IN ('payments', 'payments_2025', 'payments_2026_03')
   AND c.relnamespace = 'p2pay'::regnamespace
 ORDER BY 1;

-- The truncate trigger of p2pay.payments, and a row of state to watch.
CREATE TRIGGER payments_truncate AFTER TRUNCATE ON p2pay.payments
  FOR EACH STATEMENT EXECUTE FUNCTION p2pay.truncate_state();
INSERT INTO p2pay.users (id, created_at)
  SELECT ('00000000-0000-4000-8000-00000000000' || n)::uuid, '2020-01-01' FROM generate_series(1, 2) n;
INSERT INTO p2pay.account_stats (user_id, out_count, out_sum)
  VALUES ('00000000-0000-4000-8000-000000000001', 1, 10);

SELECT 'created' FROM pg_create_logical_replication_slot('p2pay_partitions', 'p2pay');
CREATE FUNCTION stream() RETURNS SETOF text LANGUAGE sql AS $$
  SELECT data FROM pg_logical_slot_get_changes('p2pay_partitions', NULL, NULL,
    'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0')
$$;

-- A payment as the trigger would have written it, into whichever table.
CREATE FUNCTION pay(tab regclass, n int, at timestamptz, decision p2pay.decision) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('INSERT INTO %s (id, transaction_id, payer_id, payee_id, amount, currency,
                                  payment_method_id, created_at, risk_score, decision, is_approved,
                                  reasons, amount_base)
                  OVERRIDING SYSTEM VALUE
                  VALUES ($1, $2, $3, $4, $5, ''USD'', $6, $7, $8, $9, $9 = ''approve'', $10, $5)', tab)
    USING n, ('aaaaaaaa-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid,
          '00000000-0000-4000-8000-000000000001'::uuid, '00000000-0000-4000-8000-000000000002'::uuid,
          100 * n + 0.5, '00000000-0000-4000-8000-000000000001'::uuid, at,
          CASE decision WHEN 'approve' THEN 0 WHEN 'review' THEN 0.5 ELSE 0.9 END, decision,
          CASE decision WHEN 'approve' THEN '{}'::text[] ELSE '{amount_limit}'::text[] END;
END $$;

-- Through the parent into each leaf, straight into a leaf, and into the
-- extension's own table set aside (no longer p2pay.payments).
SELECT pay('p2pay.payments', 1, '2025-06-01 10:00', 'review');
SELECT pay('p2pay.payments', 2, '2026-02-10 10:00', 'decline');
SELECT pay('p2pay.payments', 3, '2026-03-10 10:00', 'review');
SELECT pay('p2pay.payments_2026_03', 4, '2026-03-11 10:00', 'decline');
SELECT pay('p2pay.payments', 5, '2026-03-12 10:00', 'approve');
SET session_replication_role = replica;
SELECT pay('p2pay.payments_plain', 6, '2026-03-12 10:00', 'decline');
RESET session_replication_role;
SELECT * FROM stream();

-- Updates and deletes of the partitions' rows.
UPDATE p2pay.payments SET decision = 'approve' WHERE id = 3;
UPDATE p2pay.payments_2026_03 SET decision = 'decline' WHERE id = 5;
DELETE FROM p2pay.payments WHERE id = 2;
DELETE FROM p2pay.payments_2026_03 WHERE id = 4;
SELECT * FROM stream();

-- Deletes that follow the archive mark in their transaction emit nothing
-- (p2pay's delete trigger writes the mark; written by hand here), up to a
-- reverse mark.
BEGIN;
SELECT 'marked' FROM pg_logical_emit_message(true, 'p2pay', 'archive');
DELETE FROM p2pay.payments_2025 WHERE id = 1;
SELECT 'marked' FROM pg_logical_emit_message(true, 'p2pay', 'reverse');
DELETE FROM p2pay.payments WHERE id = 3;
COMMIT;
SELECT * FROM stream();

-- TRUNCATE of a partition, of a partitioned partition: nothing, and the
-- state stays; of p2pay.payments: one truncated event, and the state is
-- emptied.
SELECT pay('p2pay.payments', 7, '2025-07-01 10:00', 'review');
SELECT pay('p2pay.payments', 8, '2026-02-11 10:00', 'review');
SELECT count(*) FROM stream();
TRUNCATE p2pay.payments_2025;
TRUNCATE p2pay.payments_2026;
SELECT * FROM stream();
SELECT count(*) AS state_rows FROM p2pay.account_stats;
TRUNCATE p2pay.payments;
SELECT * FROM stream();
SELECT count(*) AS state_rows FROM p2pay.account_stats;

-- Detaching and dropping partitions emit nothing; a detached partition's
-- changes are no payment events, and attached again they are.  A leaf
-- below a partitioned table that is attached, or detached, follows it.
ALTER TABLE p2pay.payments DETACH PARTITION p2pay.payments_2025;
SELECT pay('p2pay.payments_2025', 10, '2025-08-01 10:00', 'review');
DROP TABLE p2pay.payments_2026_02;
SELECT * FROM stream();
ALTER TABLE p2pay.payments ATTACH PARTITION p2pay.payments_2025
  FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
SELECT pay('p2pay.payments_2025', 11, '2025-08-02 10:00', 'review');
-- Decoded in one go, so that the decoding session follows the attach and
-- the detach through the invalidations it replays: the leaf's changes
-- before the attach and after the detach are no payment events.
CREATE TABLE p2pay.payments_2027 (LIKE p2pay.payments) PARTITION BY RANGE (created_at);
CREATE TABLE p2pay.payments_2027_01 PARTITION OF p2pay.payments_2027
  FOR VALUES FROM ('2027-01-01') TO ('2027-02-01');
ALTER TABLE p2pay.payments_2027_01 REPLICA IDENTITY FULL;
SELECT pay('p2pay.payments_2027_01', 12, '2027-01-05 10:00', 'review');
ALTER TABLE p2pay.payments ATTACH PARTITION p2pay.payments_2027
  FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
DELETE FROM p2pay.payments_2027_01 WHERE id = 12;
SELECT pay('p2pay.payments_2027_01', 13, '2027-01-06 10:00', 'review');
ALTER TABLE p2pay.payments DETACH PARTITION p2pay.payments_2027;
DELETE FROM p2pay.payments_2027_01 WHERE id = 13;
SELECT pay('p2pay.payments_2027_01', 14, '2027-01-07 10:00', 'review');
SELECT * FROM stream();

SELECT pg_drop_replication_slot('p2pay_partitions');
DROP FUNCTION stream(), pay(regclass, int, timestamptz, p2pay.decision);
DROP TABLE p2pay.payments, p2pay.payments_2027;
DROP EXTENSION p2pay;
