-- scripts/partition-on-create.sql: make test's second run.  Loaded into a
-- database (template1, so that every database made from it has it), it
-- partitions p2pay.payments right after each CREATE EXTENSION p2pay and
-- hands it to pg_partman, so that every suite runs against a partitioned
-- payments as a DBA would set it up:
--   - p2pay.partition_payments(): monthly partitions from January 2026
--     (the suites' fixed times lie in 2026) through the current month;
--   - pg_partman's create_parent(): native (4.x) or range (5.x, its name
--     for the same), monthly, the next four months (from the next month:
--     pg_partman 5 would not know p2pay's partitions by their names, and
--     make overlapping ones) and its default partition, which holds the
--     payments of other times.
--     Its template table is an empty one of the harness's own: the one it
--     makes by default (LIKE p2pay.payments) has columns of p2pay's types,
--     which would keep the suites' DROP EXTENSION p2pay from working.
-- A suite that partitions payments itself sets p2pay_test.keep_plain = on
-- before CREATE EXTENSION.
CREATE SCHEMA IF NOT EXISTS partman;
CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman;
CREATE TABLE partman.p2pay_test_template ();

-- No SET search_path on the function: create_parent() sets the session's
-- search_path back to the one it found, which would then outlive the call.
CREATE FUNCTION public.p2pay_test_partition() RETURNS event_trigger
  LANGUAGE plpgsql SET client_min_messages = warning AS $$
BEGIN
  -- an older version, installed to be updated, has nothing to partition with
  IF pg_catalog.current_setting('p2pay_test.keep_plain', true) = 'on'
     OR pg_catalog.to_regproc('p2pay.partition_payments') IS NULL
     OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger_ddl_commands() c
                      JOIN pg_catalog.pg_extension e ON e.oid = c.objid
                     WHERE c.classid = 'pg_catalog.pg_extension'::pg_catalog.regclass
                       AND e.extname = 'p2pay') THEN
    RETURN;
  END IF;
  -- what pg_partman kept of an earlier p2pay of this database
  DELETE FROM partman.part_config WHERE parent_table = 'p2pay.payments';
  PERFORM p2pay.partition_payments(partition_interval => '1 month', premake => 0,
                                   default_partition => false, start_at => '2026-01-01');
  PERFORM partman.create_parent(
            p_parent_table => 'p2pay.payments', p_control => 'created_at',
            p_type => CASE WHEN pg_catalog.split_part(e.extversion, '.', 1)::int >= 5
                           THEN 'range' ELSE 'native' END,
            p_interval => '1 month', p_premake => 4,
            p_start_partition => (pg_catalog.date_trunc('month', pg_catalog.now())
                                  + interval '1 month')::text,
            p_template_table => 'partman.p2pay_test_template')
     FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_partman';
END $$;

CREATE EVENT TRIGGER p2pay_test_partition ON ddl_command_end
  WHEN TAG IN ('CREATE EXTENSION') EXECUTE FUNCTION public.p2pay_test_partition();
