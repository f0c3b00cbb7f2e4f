-- partition_payments(): payments converted in place into a table partitioned
-- by range on created_at, keeping its rows, columns, identity, constraints,
-- indexes, triggers, grants, review queue and extension membership; what it
-- refuses; add_payment_partitions(); REPLICA IDENTITY FULL on every
-- partition, however it is made.
--
-- This test partitions payments itself: the second run of make test, which
-- partitions payments after every CREATE EXTENSION p2pay, leaves it plain.
SET p2pay_test.keep_plain = on;
CREATE EXTENSION p2pay;
SET TimeZone = 'UTC';
SET client_min_messages = warning;

CREATE FUNCTION pg_temp.uid(integer) RETURNS uuid LANGUAGE sql IMMUTABLE
  AS $$ SELECT ('00000000-0000-4000-8000-' || lpad($1::text, 12, '0'))::uuid $$;
INSERT INTO p2pay.users (id, created_at) SELECT pg_temp.uid(n), '2020-01-01' FROM generate_series(1, 4) n;
-- Payments from January to March 2024, one under review.
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT pg_temp.uid(1 + g % 3), pg_temp.uid(4), CASE WHEN g = 5 THEN 15000 ELSE 10 * g END, 'USD',
       '00000000-0000-4000-8000-000000000001', timestamptz '2024-01-10' + g * interval '9 days'
  FROM generate_series(1, 8) g;
SELECT count(*) AS under_review FROM p2pay.review_queue;

-- Roles with grants on payments, a column and the view.
CREATE ROLE part_app;
CREATE ROLE part_analyst;
GRANT USAGE ON SCHEMA p2pay TO part_app, part_analyst;
GRANT SELECT, INSERT ON p2pay.payments TO part_app;
GRANT UPDATE (decision) ON p2pay.payments TO part_analyst WITH GRANT OPTION;
GRANT SELECT ON p2pay.review_queue TO part_analyst;
-- A trigger enable state to keep, and a DBA's own index.
ALTER TABLE p2pay.payments ENABLE ALWAYS TRIGGER payments_guard;
CREATE INDEX part_dba_idx ON p2pay.payments (payee_id) WHERE amount > 100;

-- What must survive, recorded before.
CREATE TEMP TABLE before_columns AS
  SELECT a.attnum, a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull,
         a.attidentity, pg_get_expr(d.adbin, d.adrelid) AS def
    FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
   WHERE a.attrelid = 'p2pay.payments'::regclass AND a.attnum > 0 AND NOT a.attisdropped;
CREATE TEMP TABLE before_rows AS SELECT * FROM p2pay.payments;
CREATE TEMP TABLE before_triggers AS
  SELECT tgname, tgenabled, tgtype, tgfoid::regproc FROM pg_trigger
   WHERE tgrelid = 'p2pay.payments'::regclass AND NOT tgisinternal;
SELECT last_value AS seq_before FROM p2pay.payments_id_seq;

-- Arguments out of range, and a role that is not a superuser.
SELECT * FROM p2pay.partition_payments(partition_interval => '1 hour');
SELECT * FROM p2pay.partition_payments(partition_interval => '2 years');
SELECT * FROM p2pay.partition_payments(premake => -1);
SELECT * FROM p2pay.partition_payments(default_partition => NULL);
SELECT * FROM p2pay.partition_payments(start_at => 'infinity');
-- Daily partitions from 2000 are too many: one a day through today, and the
-- four premade (the count grows by one a day, so it is checked, not shown).
DO $$
BEGIN
  PERFORM p2pay.partition_payments(partition_interval => '1 day', start_at => '2000-01-01');
EXCEPTION WHEN invalid_parameter_value THEN
  RAISE WARNING '% (%)', regexp_replace(SQLERRM, '\d+ partitions', 'N partitions'),
    (substring(SQLERRM FROM '(\d+) partitions'))::int
      = (current_date - date '2000-01-01') + 1 + 4;
END $$;
SELECT * FROM p2pay.partition_payments(start_at => '2024-02-01', default_partition => false);
GRANT EXECUTE ON FUNCTION p2pay.partition_payments(interval, integer, boolean, timestamptz) TO part_app;
SET ROLE part_app;
SELECT * FROM p2pay.partition_payments();
RESET ROLE;
REVOKE EXECUTE ON FUNCTION p2pay.partition_payments(interval, integer, boolean, timestamptz) FROM part_app;
-- Nothing partitioned yet.
SELECT * FROM p2pay.add_payment_partitions();

-- Objects that depend on payments, which the conversion would drop: refused.
CREATE VIEW public.big_payments AS SELECT id FROM p2pay.payments WHERE amount > 100;
SELECT * FROM p2pay.partition_payments();
DROP VIEW public.big_payments;
CREATE TABLE public.refunds (payment_id bigint REFERENCES p2pay.payments (id));
SELECT * FROM p2pay.partition_payments();
DROP TABLE public.refunds;
CREATE UNIQUE INDEX part_unique_idx ON p2pay.payments (payer_id, amount, created_at);
SELECT * FROM p2pay.partition_payments();
DROP INDEX p2pay.part_unique_idx;
SELECT relkind FROM pg_class WHERE oid = 'p2pay.payments'::regclass;

-- The conversion: partitions from January 2024 (the oldest payment's
-- month) through the current month and four more, plus a default one.
CREATE TEMP TABLE parts AS SELECT * FROM p2pay.partition_payments();
SELECT partition_name, range_start, range_end, payment_count FROM parts
 WHERE range_start IS NULL OR range_start < '2024-05-01' ORDER BY range_start NULLS FIRST;
SELECT max(range_end) = date_trunc('month', now()) + interval '5 months' AS four_ahead,
       count(*) = 1 + (SELECT count(*) FROM generate_series(timestamptz '2024-01-01',
                                         date_trunc('month', now()) + interval '4 months', '1 month')) AS one_per_month,
       sum(payment_count) AS payments
  FROM parts;
SELECT relkind, relreplident, pg_get_partkeydef(oid) FROM pg_class WHERE oid = 'p2pay.payments'::regclass;

-- The same columns in the same order, the same rows, triggers and states.
SELECT a.attnum, a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull,
       a.attidentity, pg_get_expr(d.adbin, d.adrelid) AS def
  FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attrelid = 'p2pay.payments'::regclass AND a.attnum > 0 AND NOT a.attisdropped
EXCEPT SELECT * FROM before_columns;
SELECT count(*) AS columns FROM before_columns;
(SELECT * FROM p2pay.payments EXCEPT SELECT * FROM before_rows)
UNION ALL (SELECT * FROM before_rows EXCEPT SELECT * FROM p2pay.payments);
SELECT tgname, tgenabled, tgtype, tgfoid::regproc FROM pg_trigger
 WHERE tgrelid = 'p2pay.payments'::regclass AND NOT tgisinternal
EXCEPT SELECT * FROM before_triggers;
SELECT tgname, tgenabled FROM pg_trigger
 WHERE tgrelid = 'p2pay.payments_p2024_02'::regclass AND NOT tgisinternal ORDER BY 1;
-- Constraints and indexes: the primary key and the unique transaction_id
-- hold created_at too.  (NOT NULL, a constraint row of its own from
-- PostgreSQL 18 on, is checked with the columns.)
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
 WHERE conrelid = 'p2pay.payments'::regclass AND contype <> 'n' ORDER BY conname;
SELECT pg_get_indexdef(indexrelid) FROM pg_index
 WHERE indrelid = 'p2pay.payments'::regclass ORDER BY 1;
-- The identity goes on from where it was.
SELECT pg_get_serial_sequence('p2pay.payments', 'id'), last_value AS seq_after FROM p2pay.payments_id_seq;
-- Every partition logs whole old rows, and is owned as payments is.
SELECT count(*) AS partitions,
       count(*) FILTER (WHERE c.relreplident = 'f') AS replica_identity_full,
       count(*) FILTER (WHERE c.relowner = p.relowner) AS same_owner
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
  JOIN pg_class p ON p.oid = i.inhparent
 WHERE i.inhparent = 'p2pay.payments'::regclass;
-- Grants, comments, the view.  MAINTAIN (17's privilege, which an owner
-- holds) is left out of the listings: what is kept is what p2pay granted.
-- The owner (the user who created the extension, whatever its name) is
-- shown as owner.
SELECT CASE WHEN a.grantee = relowner THEN 'owner' ELSE a.grantee::regrole::text END AS grantee,
       a.privilege_type
  FROM pg_class, aclexplode(relacl) a
 WHERE oid = 'p2pay.payments'::regclass AND a.privilege_type <> 'MAINTAIN' ORDER BY 1, 2;
SELECT t.attname, a.grantee::regrole, a.privilege_type, a.is_grantable,
       a.grantor = c.relowner AS granted_by_owner
  FROM pg_attribute t JOIN pg_class c ON c.oid = t.attrelid, aclexplode(t.attacl) a
 WHERE t.attrelid = 'p2pay.payments'::regclass AND t.attacl IS NOT NULL;
SELECT CASE WHEN a.grantee = relowner THEN 'owner' ELSE a.grantee::regrole::text END AS grantee,
       a.privilege_type
  FROM pg_class, aclexplode(relacl) a
 WHERE oid = 'p2pay.review_queue'::regclass AND a.privilege_type <> 'MAINTAIN' ORDER BY 1, 2;
SELECT obj_description('p2pay.payments'::regclass, 'pg_class') IS NOT NULL AS table_comment,
       col_description('p2pay.payments'::regclass, 8) AS created_at_comment;
SELECT count(*) AS under_review FROM p2pay.review_queue;
-- Extension members, kept by pg_dump.
SELECT pg_describe_object(classid, objid, objsubid) FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'p2pay')
   AND classid IN ('pg_class'::regclass, 'pg_event_trigger'::regclass) AND objid IN
       (SELECT oid FROM pg_class WHERE relname ~ '^(payments|review_queue)'
        UNION ALL SELECT oid FROM pg_event_trigger)
 ORDER BY 1;
SELECT c.relname
  FROM pg_extension e, unnest(e.extconfig) AS cfg(oid) JOIN pg_class c ON c.oid = cfg.oid
 WHERE e.extname = 'p2pay' AND c.relname ~ '^payments'
 ORDER BY 1;

-- Partitioned already: refused.
SELECT * FROM p2pay.partition_payments();

-- New partitions: up to date already, so nothing; more ahead; one made by
-- hand or attached gets REPLICA IDENTITY FULL from the event trigger, and
-- a partition's own setting afterwards is the DBA's.
SELECT * FROM p2pay.add_payment_partitions();
SELECT count(*) AS added, bool_and(range_start + interval '1 month' = range_end) AS monthly
  FROM p2pay.add_payment_partitions(premake => 6);
SELECT * FROM p2pay.add_payment_partitions(premake => -1);
CREATE TABLE p2pay.payments_p2035_01 PARTITION OF p2pay.payments
  FOR VALUES FROM ('2035-01-01') TO ('2035-02-01');
CREATE TABLE public.attached (LIKE p2pay.payments);
ALTER TABLE p2pay.payments ATTACH PARTITION public.attached FOR VALUES FROM ('2036-01-01') TO ('2036-02-01');
CREATE TABLE p2pay.payments_p2037 PARTITION OF p2pay.payments
  FOR VALUES FROM ('2037-01-01') TO ('2038-01-01') PARTITION BY RANGE (created_at);
CREATE TABLE p2pay.payments_p2037_01 PARTITION OF p2pay.payments_p2037
  FOR VALUES FROM ('2037-01-01') TO ('2037-02-01');
SELECT relname, relreplident FROM pg_class
 WHERE oid IN ('p2pay.payments_p2035_01'::regclass, 'public.attached'::regclass,
               'p2pay.payments_p2037'::regclass, 'p2pay.payments_p2037_01'::regclass)
 ORDER BY 1;
ALTER TABLE public.attached REPLICA IDENTITY DEFAULT;
SELECT relreplident FROM pg_class WHERE oid = 'public.attached'::regclass;
SELECT * FROM p2pay.add_payment_partitions(partition_interval => '1 hour');

-- A payment that the default partition holds inside a range to create
-- (2038, after 2037's sub-partitioned year): refused with the count.  It
-- is written with the triggers off, as a restore would, so that it lands
-- there.  With its id, as a restore gives it (from 17 a partition shares
-- the identity of p2pay.payments, which then needs OVERRIDING SYSTEM VALUE).
SET session_replication_role = replica;
INSERT INTO p2pay.payments_default (id, payer_id, payee_id, amount, currency, payment_method_id, created_at)
OVERRIDING SYSTEM VALUE
VALUES (1000, pg_temp.uid(1), pg_temp.uid(2), 10, 'USD', '00000000-0000-4000-8000-000000000001', '2038-03-05');
RESET session_replication_role;
SELECT * FROM p2pay.add_payment_partitions(premake => 12, partition_interval => '1 year');

-- DROP EXTENSION takes every partition with payments.
DROP TABLE public.attached, before_rows, before_columns, before_triggers, parts;
DROP EXTENSION p2pay;
SELECT count(*) AS left_behind FROM pg_class WHERE relname ~ '^payments';
DROP OWNED BY part_app, part_analyst;
DROP ROLE part_app, part_analyst;
