/* p2pay--1.0--1.1.sql: from 1.0 to 1.1 */

\echo Use "ALTER EXTENSION p2pay UPDATE TO '1.1'" to load this file. \quit

------------------------------------------------------------------------------
-- Retention: archiving deletes (p2pay.delete_mode)
------------------------------------------------------------------------------

-- A delete of a payment is a reversal (it leaves the per-account state and
-- is a deleted event on the stream) or, with p2pay.delete_mode = archive,
-- archiving (it stays in the state, and the stream passes over it).  This
-- trigger fixes the transaction's mode at its first delete and marks the
-- transaction in the WAL for the stream before each delete is logged.
CREATE FUNCTION @extschema@.mark_delete() RETURNS trigger
  AS 'MODULE_PATHNAME', 'p2pay_mark_delete_trigger' LANGUAGE C;
COMMENT ON FUNCTION @extschema@.mark_delete() IS
  'BEFORE DELETE trigger on payments: fixes the transaction''s p2pay.delete_mode at its first delete and marks archived and reversed deletes for the stream.';
-- A trigger function of p2pay's own, like the others: nobody needs EXECUTE
-- to fire it.
REVOKE ALL ON FUNCTION @extschema@.mark_delete() FROM PUBLIC;
CREATE TRIGGER payments_mark_delete BEFORE DELETE ON @extschema@.payments
  FOR EACH ROW EXECUTE FUNCTION @extschema@.mark_delete();
COMMENT ON FUNCTION @extschema@.forget_payment() IS
  'AFTER DELETE trigger on payments: takes a reversed payment out of the per-account state; an archived one (p2pay.delete_mode = archive) stays.';

------------------------------------------------------------------------------
-- Partitioned payments: partition_payments() converts p2pay.payments in
-- place into a table partitioned by range on created_at, data and all;
-- add_payment_partitions() creates the next partitions for a DBA who does
-- not use pg_partman; an event trigger gives every partition of payments,
-- whoever creates or attaches it, REPLICA IDENTITY FULL.
------------------------------------------------------------------------------

-- The name of the partition starting at range_start: the parent's name,
-- '_p' and the start in the format pg_partman 4 gives partitions of that
-- interval ('YYYY' from a year on, 'YYYY_MM' from a month, 'YYYY_MM_DD'
-- from a day), so that pg_partman can take over partitions made here.
CREATE FUNCTION @extschema@.payment_partition_name(range_start timestamptz, partition_interval interval)
  RETURNS text
  LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
  SELECT 'payments_p' || to_char($1, CASE WHEN $2 >= interval '1 year' THEN 'YYYY'
                                          WHEN $2 >= interval '1 month' THEN 'YYYY_MM'
                                          ELSE 'YYYY_MM_DD' END)
$$;
COMMENT ON FUNCTION @extschema@.payment_partition_name(timestamptz, interval) IS
  'Name of the partition of p2pay.payments that starts at range_start, as pg_partman 4 names partitions of that interval.';

-- The start of the partition that holds at: at truncated to the interval's
-- unit (year, month or day) in the session's time zone, as pg_partman does.
CREATE FUNCTION @extschema@.payment_partition_start(at timestamptz, partition_interval interval)
  RETURNS timestamptz
  LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
  SELECT date_trunc(CASE WHEN $2 >= interval '1 year' THEN 'year'
                         WHEN $2 >= interval '1 month' THEN 'month'
                         ELSE 'day' END, $1)
$$;
COMMENT ON FUNCTION @extschema@.payment_partition_start(timestamptz, interval) IS
  'Where the first partition of that interval begins for a payment at this time: the start of its year, month or day in the session''s time zone.';

-- Partitions of p2pay.payments for [first_start, through): one per
-- interval, each with REPLICA IDENTITY FULL and the parent's owner.  An
-- existing table of a partition's name is an error: the caller runs in
-- one transaction, which the error undoes.
CREATE FUNCTION @extschema@.create_payment_partitions(parent regclass, first_start timestamptz,
                                                      through timestamptz, partition_interval interval)
  RETURNS TABLE (partition_name regclass, range_start timestamptz, range_end timestamptz)
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  lo timestamptz := first_start;
  hi timestamptz;
  part regclass;
  owner name;
BEGIN
  SELECT pg_get_userbyid(c.relowner) INTO owner FROM pg_class c WHERE c.oid = parent;
  WHILE lo < through LOOP
    hi := lo + partition_interval;
    EXECUTE format('CREATE TABLE @extschema@.%I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                   @extschema@.payment_partition_name(lo, partition_interval), parent, lo, hi);
    part := format('@extschema@.%I', @extschema@.payment_partition_name(lo, partition_interval))::regclass;
    EXECUTE format('ALTER TABLE %s REPLICA IDENTITY FULL, OWNER TO %I', part, owner);
    partition_name := part;
    range_start := lo;
    range_end := hi;
    RETURN NEXT;
    lo := hi;
  END LOOP;
END $$;
COMMENT ON FUNCTION @extschema@.create_payment_partitions(regclass, timestamptz, timestamptz, interval) IS
  'Internal to partition_payments() and add_payment_partitions(): creates the partitions of one interval each from first_start until through.';
REVOKE ALL ON FUNCTION @extschema@.create_payment_partitions(regclass, timestamptz, timestamptz, interval) FROM PUBLIC;

CREATE FUNCTION @extschema@.partition_payments(partition_interval interval DEFAULT '1 month',
                                               premake integer DEFAULT 4,
                                               default_partition boolean DEFAULT true,
                                               start_at timestamptz DEFAULT NULL)
  RETURNS TABLE (partition_name regclass, range_start timestamptz, range_end timestamptz,
                 payment_count bigint)
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  nsp oid := (SELECT n.oid FROM pg_namespace n WHERE n.nspname = '@extschema@');
  ext oid := (SELECT e.oid FROM pg_extension e WHERE e.extname = 'p2pay');
  old oid;
  old_kind "char";
  old_owner name;
  old_acl aclitem[];
  old_comment text;
  old_seq regclass;
  seq_last bigint;
  seq_called boolean;
  seq_acl aclitem[];
  new_seq regclass;
  view_def text;
  view_acl aclitem[];
  view_comment text;
  view_owner name;
  cols text;
  first_at timestamptz;
  last_at timestamptz;
  older bigint;
  base timestamptz;
  through timestamptz;
  n_parts bigint;
  r record;
  ddl text[] := '{}';
  grants text[] := '{}';
  triggers text[] := '{}';
  stmt text;
BEGIN
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    RAISE EXCEPTION 'p2pay: only a superuser can partition p2pay.payments'
      USING ERRCODE = 'insufficient_privilege',
            DETAIL = 'The conversion takes the table out of the extension and registers its replacement with pg_dump, which needs a superuser.';
  END IF;
  IF partition_interval IS NULL OR partition_interval < interval '1 day'
     OR partition_interval > interval '1 year' THEN
    RAISE EXCEPTION 'p2pay: partition_interval must lie between 1 day and 1 year'
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('partition_interval was %s.', coalesce(partition_interval::text, 'null'));
  END IF;
  IF premake IS NULL OR premake < 0 OR premake > 1000 THEN
    RAISE EXCEPTION 'p2pay: premake must lie between 0 and 1000'
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('premake was %s.', coalesce(premake::text, 'null'));
  END IF;
  IF default_partition IS NULL THEN
    RAISE EXCEPTION 'p2pay: default_partition must be true or false'
      USING ERRCODE = 'null_value_not_allowed';
  END IF;
  IF start_at IS NOT NULL AND NOT isfinite(start_at) THEN
    RAISE EXCEPTION 'p2pay: start_at must be a finite time'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;

  SELECT c.oid, c.relkind INTO old, old_kind
    FROM pg_class c WHERE c.relnamespace = nsp AND c.relname = 'payments';
  IF old IS NULL THEN
    RAISE EXCEPTION 'p2pay: p2pay.payments does not exist'
      USING ERRCODE = 'undefined_table';
  END IF;
  -- Nothing may write payments, or read it with a plan on the old table,
  -- until the new one is in place.
  EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', old::regclass);

  IF old_kind = 'p' THEN
    RAISE EXCEPTION 'p2pay: p2pay.payments is already partitioned'
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Create new partitions with p2pay.add_payment_partitions() or pg_partman.';
  END IF;
  IF old_kind <> 'r' THEN
    RAISE EXCEPTION 'p2pay: p2pay.payments is not a table'
      USING ERRCODE = 'wrong_object_type';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = old
                    AND d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext
                    AND d.deptype = 'e') THEN
    RAISE EXCEPTION 'p2pay: p2pay.payments is not a member of extension p2pay'
      USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = 'It was taken out of the extension (ALTER EXTENSION p2pay DROP TABLE), as when it is partitioned by hand.';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_attribute a
                  WHERE a.attrelid = old AND a.attname = 'created_at' AND NOT a.attisdropped
                    AND a.atttypid = 'timestamptz'::regtype AND a.attnotnull) THEN
    RAISE EXCEPTION 'p2pay: p2pay.payments has no column created_at of type timestamptz NOT NULL'
      USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = 'The partitions are ranges of created_at.';
  END IF;

  -- What can't be carried over to a partitioned table, or that this
  -- function does not carry over: refused, so that nothing is lost.
  IF EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = old OR i.inhparent = old) THEN
    RAISE EXCEPTION 'p2pay: p2pay.payments takes part in table inheritance'
      USING ERRCODE = 'feature_not_supported';
  END IF;
  FOR r IN SELECT DISTINCT pg_describe_object(d.classid, d.objid, 0) AS what
             FROM pg_depend d
            WHERE d.deptype = 'n'
              AND ((d.refclassid = 'pg_class'::regclass AND d.refobjid = old)
                   OR (d.refclassid = 'pg_type'::regclass
                       AND d.refobjid = (SELECT c.reltype FROM pg_class c WHERE c.oid = old)))
              AND NOT (d.classid = 'pg_rewrite'::regclass
                       AND d.objid = (SELECT w.oid FROM pg_rewrite w JOIN pg_class v ON v.oid = w.ev_class
                                       WHERE v.relnamespace = nsp AND v.relname = 'review_queue'))
              AND NOT (d.classid = 'pg_constraint'::regclass
                       AND EXISTS (SELECT 1 FROM pg_constraint k WHERE k.oid = d.objid AND k.conrelid = old))
  LOOP
    RAISE EXCEPTION 'p2pay: % depends on p2pay.payments', r.what
      USING ERRCODE = 'dependent_objects_still_exist',
            DETAIL = 'Converting payments drops the table; only its own constraints, indexes, triggers and the view p2pay.review_queue are carried over.',
            HINT = 'Drop it, partition payments, and create it again.';
  END LOOP;
  IF EXISTS (SELECT 1 FROM pg_rewrite w WHERE w.ev_class = old) THEN
    RAISE EXCEPTION 'p2pay: p2pay.payments has rules'
      USING ERRCODE = 'feature_not_supported',
            HINT = 'Drop them, partition payments, and create them again.';
  END IF;
  IF EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = old)
     OR (SELECT c.relrowsecurity OR c.relforcerowsecurity FROM pg_class c WHERE c.oid = old) THEN
    RAISE EXCEPTION 'p2pay: p2pay.payments has row-level security'
      USING ERRCODE = 'feature_not_supported',
            HINT = 'Drop its policies and disable row-level security, partition payments, and set them again.';
  END IF;
  IF EXISTS (SELECT 1 FROM pg_publication_rel p WHERE p.prrelid = old) THEN
    RAISE EXCEPTION 'p2pay: p2pay.payments is in a publication'
      USING ERRCODE = 'feature_not_supported',
            HINT = 'ALTER PUBLICATION ... DROP TABLE p2pay.payments, partition payments, and add it again (with publish_via_partition_root if subscribers know payments alone).';
  END IF;
  FOR r IN SELECT i.indexrelid::regclass AS idx
             FROM pg_index i
            WHERE i.indrelid = old
              AND (NOT i.indisvalid
                   OR (i.indisunique AND NOT EXISTS (SELECT 1 FROM pg_constraint k
                                                      WHERE k.conindid = i.indexrelid
                                                        AND k.contype IN ('p', 'u'))))
  LOOP
    RAISE EXCEPTION 'p2pay: index % of p2pay.payments can''t be carried over', r.idx
      USING ERRCODE = 'feature_not_supported',
            DETAIL = 'An invalid index, or a unique index that is not a constraint, is not re-created on the partitioned table.',
            HINT = 'Drop it (or REINDEX it), partition payments, and create it again: a unique index must then include created_at.';
  END LOOP;
  FOR r IN SELECT k.conname FROM pg_constraint k
            WHERE k.conrelid = old AND k.contype NOT IN ('p', 'u', 'f', 'c')
  LOOP
    RAISE EXCEPTION 'p2pay: constraint % of p2pay.payments can''t be carried over', r.conname
      USING ERRCODE = 'feature_not_supported',
            DETAIL = 'A partitioned table can''t have an exclusion constraint.';
  END LOOP;

  -- The range the partitions must cover.
  EXECUTE format('SELECT min(created_at), max(created_at) FROM %s', old::regclass)
    INTO first_at, last_at;
  base := @extschema@.payment_partition_start(coalesce(start_at, first_at, now()), partition_interval);
  through := @extschema@.payment_partition_start(greatest(now(), last_at), partition_interval);
  -- the end of the partition holding the latest of now() and the newest
  -- payment, then premake more
  WHILE through <= greatest(now(), last_at) LOOP
    through := through + partition_interval;
  END LOOP;
  through := through + partition_interval * premake;
  IF through <= base THEN
    through := base + partition_interval;
  END IF;
  SELECT count(*) INTO n_parts
    FROM generate_series(base, through - partition_interval, partition_interval);
  IF n_parts > 1000 THEN
    RAISE EXCEPTION 'p2pay: partitioning payments from % by % would make % partitions', base, partition_interval, n_parts
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Give a longer partition_interval, or a later start_at with a default partition for the older payments.';
  END IF;
  EXECUTE format('SELECT count(*) FROM %s WHERE created_at < %L', old::regclass, base) INTO older;
  IF older > 0 AND NOT default_partition THEN
    RAISE EXCEPTION 'p2pay: % payments are older than the first partition', older
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('The first partition begins at %s.', base),
            HINT = 'Give an earlier start_at, or default_partition => true.';
  END IF;

  -- Everything carried over, read before the old table goes.
  SELECT pg_get_userbyid(c.relowner), c.relacl, obj_description(c.oid, 'pg_class')
    INTO old_owner, old_acl, old_comment
    FROM pg_class c WHERE c.oid = old;
  old_seq := pg_get_serial_sequence(format('%s', old::regclass), 'id')::regclass;
  IF old_seq IS NOT NULL THEN
    EXECUTE format('SELECT last_value, is_called FROM %s', old_seq) INTO seq_last, seq_called;
    SELECT c.relacl INTO seq_acl FROM pg_class c WHERE c.oid = old_seq;
  END IF;
  SELECT pg_get_viewdef(v.oid), v.relacl, obj_description(v.oid, 'pg_class'), pg_get_userbyid(v.relowner)
    INTO view_def, view_acl, view_comment, view_owner
    FROM pg_class v WHERE v.relnamespace = nsp AND v.relname = 'review_queue' AND v.relkind = 'v';

  -- The primary key and unique constraints, with created_at added to their
  -- keys where they lack it (a partitioned table's unique index must hold
  -- the partition key); then foreign keys and CHECKs as they were.
  FOR r IN SELECT k.conname, k.contype, k.condeferrable, k.condeferred, i.indnullsnotdistinct,
                  (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY x.n)
                     FROM unnest(i.indkey[:i.indnkeyatts - 1]) WITH ORDINALITY x (attnum, n)
                     JOIN pg_attribute a ON a.attrelid = old AND a.attnum = x.attnum) AS keys,
                  (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY x.n)
                     FROM unnest(i.indkey[i.indnkeyatts:]) WITH ORDINALITY x (attnum, n)
                     JOIN pg_attribute a ON a.attrelid = old AND a.attnum = x.attnum) AS included,
                  EXISTS (SELECT 1 FROM unnest(i.indkey[:i.indnkeyatts - 1]) x (attnum)
                            JOIN pg_attribute a ON a.attrelid = old AND a.attnum = x.attnum
                           WHERE a.attname = 'created_at') AS has_created_at
             FROM pg_constraint k JOIN pg_index i ON i.indexrelid = k.conindid
            WHERE k.conrelid = old AND k.contype IN ('p', 'u')
            ORDER BY k.contype, k.conname
  LOOP
    ddl := ddl || format('ALTER TABLE @extschema@.payments ADD CONSTRAINT %I %s%s (%s)%s%s%s',
                         r.conname, CASE r.contype WHEN 'p' THEN 'PRIMARY KEY' ELSE 'UNIQUE' END,
                         CASE WHEN r.indnullsnotdistinct THEN ' NULLS NOT DISTINCT' ELSE '' END,
                         r.keys || CASE WHEN r.has_created_at THEN '' ELSE ', created_at' END,
                         CASE WHEN r.included IS NOT NULL THEN format(' INCLUDE (%s)', r.included) ELSE '' END,
                         CASE WHEN r.condeferrable THEN ' DEFERRABLE' ELSE '' END,
                         CASE WHEN r.condeferred THEN ' INITIALLY DEFERRED' ELSE '' END);
  END LOOP;
  FOR r IN SELECT k.conname, pg_get_constraintdef(k.oid) AS def
             FROM pg_constraint k WHERE k.conrelid = old AND k.contype = 'f' ORDER BY k.conname
  LOOP
    ddl := ddl || format('ALTER TABLE @extschema@.payments ADD CONSTRAINT %I %s', r.conname, r.def);
  END LOOP;
  -- Other indexes as they were (their definitions name p2pay.payments,
  -- which will be the new table).
  FOR r IN SELECT pg_get_indexdef(i.indexrelid) AS def
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            WHERE i.indrelid = old
              AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
            ORDER BY c.relname
  LOOP
    ddl := ddl || r.def;
  END LOOP;
  -- Triggers with their names and enable states.
  FOR r IN SELECT t.tgname, pg_get_triggerdef(t.oid) AS def, t.tgenabled
             FROM pg_trigger t WHERE t.tgrelid = old AND NOT t.tgisinternal ORDER BY t.tgname
  LOOP
    triggers := triggers || r.def;
    IF r.tgenabled <> 'O' THEN
      triggers := triggers || format('ALTER TABLE @extschema@.payments %s TRIGGER %I',
                                     CASE r.tgenabled WHEN 'A' THEN 'ENABLE ALWAYS'
                                                      WHEN 'R' THEN 'ENABLE REPLICA'
                                                      ELSE 'DISABLE' END, r.tgname);
    END IF;
  END LOOP;
  -- Grants on the table, its columns, its sequence and the view, given
  -- again by the current user (a superuser) in the name of the owner.
  SELECT array_agg(format('GRANT %s%s ON %s TO %s%s', g.privilege_type,
                          coalesce(' (' || quote_ident(g.attname) || ')', ''), g.target,
                          CASE g.grantee WHEN 0 THEN 'PUBLIC'
                                         ELSE quote_ident(pg_get_userbyid(g.grantee)) END,
                          CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END))
    INTO grants
    FROM (SELECT '@extschema@.payments' AS target, NULL::name AS attname, a.*
            FROM aclexplode(old_acl) a
          UNION ALL
          SELECT '@extschema@.payments', c.attname, a.*
            FROM pg_attribute c, aclexplode(c.attacl) a
           WHERE c.attrelid = old AND c.attnum > 0 AND NOT c.attisdropped AND c.attacl IS NOT NULL
          UNION ALL
          SELECT 'SEQUENCE @extschema@.payments_id_seq', NULL, a.* FROM aclexplode(seq_acl) a
          UNION ALL
          SELECT '@extschema@.review_queue', NULL, a.* FROM aclexplode(view_acl) a) g
   -- an owner's own privileges on the table, sequence or view come with ownership
   WHERE g.attname IS NOT NULL
      OR g.grantee <> (SELECT c.relowner FROM pg_class c WHERE c.oid = old);
  grants := coalesce(grants, '{}');

  -- The new table: the same columns in the same order (so that a column
  -- keeps its number where none was dropped), defaults, identity, CHECKs,
  -- NOT NULLs, storage, statistics and column comments; no rows, indexes
  -- or triggers yet, so that the copy is scored by nobody and indexed once.
  EXECUTE format('CREATE TABLE @extschema@.payments_partitioned (LIKE %s INCLUDING DEFAULTS'
                 ' INCLUDING CONSTRAINTS INCLUDING IDENTITY INCLUDING GENERATED INCLUDING STORAGE'
                 ' INCLUDING COMPRESSION INCLUDING STATISTICS INCLUDING COMMENTS)'
                 ' PARTITION BY RANGE (created_at)', old::regclass);
  EXECUTE format('ALTER TABLE @extschema@.payments_partitioned OWNER TO %I', old_owner);
  PERFORM @extschema@.create_payment_partitions('@extschema@.payments_partitioned'::regclass,
                                                base, through, partition_interval);
  IF default_partition THEN
    CREATE TABLE @extschema@.payments_default PARTITION OF @extschema@.payments_partitioned DEFAULT;
    EXECUTE format('ALTER TABLE @extschema@.payments_default REPLICA IDENTITY FULL, OWNER TO %I', old_owner);
  END IF;

  SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols
    FROM pg_attribute a
   WHERE a.attrelid = old AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '';
  EXECUTE format('INSERT INTO @extschema@.payments_partitioned (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM %s',
                 cols, cols, old::regclass);
  new_seq := pg_get_serial_sequence('@extschema@.payments_partitioned', 'id')::regclass;
  IF new_seq IS NOT NULL AND seq_last IS NOT NULL THEN
    PERFORM setval(new_seq, seq_last, seq_called);
  END IF;

  -- The old table leaves the extension with its sequence and the view, and
  -- goes; the new one takes its names.
  IF view_def IS NOT NULL THEN
    ALTER EXTENSION p2pay DROP VIEW @extschema@.review_queue;
    DROP VIEW @extschema@.review_queue;
  END IF;
  IF old_seq IS NOT NULL THEN
    EXECUTE format('ALTER EXTENSION p2pay DROP SEQUENCE %s', old_seq);
  END IF;
  EXECUTE format('ALTER EXTENSION p2pay DROP TABLE %s', old::regclass);
  EXECUTE format('DROP TABLE %s', old::regclass);
  ALTER TABLE @extschema@.payments_partitioned RENAME TO payments;
  IF new_seq IS NOT NULL THEN
    ALTER SEQUENCE @extschema@.payments_partitioned_id_seq RENAME TO payments_id_seq;
  END IF;

  FOREACH stmt IN ARRAY ddl || triggers LOOP
    EXECUTE stmt;
  END LOOP;
  -- The stream reads the old row of every update and delete whole.
  ALTER TABLE @extschema@.payments REPLICA IDENTITY FULL;
  EXECUTE format('COMMENT ON TABLE @extschema@.payments IS %L', old_comment);

  IF view_def IS NOT NULL THEN
    EXECUTE format('CREATE VIEW @extschema@.review_queue AS %s', view_def);
    EXECUTE format('ALTER VIEW @extschema@.review_queue OWNER TO %I', view_owner);
    EXECUTE format('COMMENT ON VIEW @extschema@.review_queue IS %L', view_comment);
    ALTER EXTENSION p2pay ADD VIEW @extschema@.review_queue;
  END IF;
  FOREACH stmt IN ARRAY grants LOOP
    EXECUTE stmt;
  END LOOP;

  -- Members of the extension, their rows kept by pg_dump as the old ones'
  -- were (pg_extension_config_dump() can be called from an extension's
  -- script alone: its catalogue entry is written as it writes it).
  ALTER EXTENSION p2pay ADD TABLE @extschema@.payments;
  IF new_seq IS NOT NULL THEN
    ALTER EXTENSION p2pay ADD SEQUENCE @extschema@.payments_id_seq;
  END IF;
  UPDATE pg_extension e
     SET extconfig = e.extconfig || ARRAY['@extschema@.payments'::regclass::oid]
                     || CASE WHEN new_seq IS NULL THEN '{}'::oid[]
                             ELSE ARRAY['@extschema@.payments_id_seq'::regclass::oid] END,
         extcondition = e.extcondition || ARRAY['']
                        || CASE WHEN new_seq IS NULL THEN '{}'::text[] ELSE ARRAY[''] END
   WHERE e.oid = ext;

  RETURN QUERY
    SELECT c.oid::regclass, lo, hi, coalesce(n.cnt, 0)
      FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid
      LEFT JOIN LATERAL (SELECT (regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                              '^FOR VALUES FROM \(''([^'']*)''\) TO \(''([^'']*)''\)$'))
                         AS b) m ON true
      CROSS JOIN LATERAL (SELECT m.b[1]::timestamptz AS lo, m.b[2]::timestamptz AS hi) x
      LEFT JOIN (SELECT p.tableoid, count(*) AS cnt FROM @extschema@.payments p GROUP BY 1) n
        ON n.tableoid = c.oid
     WHERE i.inhparent = '@extschema@.payments'::regclass
     ORDER BY lo NULLS FIRST;
END $$;
COMMENT ON FUNCTION @extschema@.partition_payments(interval, integer, boolean, timestamptz) IS
  'Convert p2pay.payments in place, in one transaction, into a table partitioned by range on created_at: partitions of partition_interval (1 day to 1 year; 1 month by default) from the start of start_at''s interval (by default the oldest payment''s, or now) through the one holding now and premake more (4), plus a default partition for payments outside them (default_partition, true). Rows, columns, identity, constraints, indexes, triggers, grants, the review queue and the extension membership are carried over; the primary key and the unique transaction_id gain created_at.  Superuser only; refused if payments is partitioned already.';
REVOKE ALL ON FUNCTION @extschema@.partition_payments(interval, integer, boolean, timestamptz) FROM PUBLIC;

-- The next partitions of a partitioned payments, for a DBA without
-- pg_partman: run it daily (pg_cron, say), well before the last partition
-- ends.
CREATE FUNCTION @extschema@.add_payment_partitions(premake integer DEFAULT 4,
                                                   partition_interval interval DEFAULT NULL)
  RETURNS TABLE (partition_name regclass, range_start timestamptz, range_end timestamptz)
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  parent regclass;
  last_start timestamptz;
  last_end timestamptz;
  months integer;
  through timestamptz;
  iv interval := partition_interval;
  dflt regclass;
  stray bigint;
BEGIN
  SELECT c.oid::regclass INTO parent
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = '@extschema@' AND c.relname = 'payments' AND c.relkind = 'p';
  IF parent IS NULL THEN
    RAISE EXCEPTION 'p2pay: p2pay.payments is not partitioned'
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'SELECT * FROM p2pay.partition_payments() partitions it.';
  END IF;
  IF premake IS NULL OR premake < 0 OR premake > 1000 THEN
    RAISE EXCEPTION 'p2pay: premake must lie between 0 and 1000'
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('premake was %s.', coalesce(premake::text, 'null'));
  END IF;
  IF iv IS NOT NULL AND (iv < interval '1 day' OR iv > interval '1 year') THEN
    RAISE EXCEPTION 'p2pay: partition_interval must lie between 1 day and 1 year'
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('partition_interval was %s.', iv);
  END IF;
  -- No two sessions add the same partitions.
  EXECUTE format('LOCK TABLE %s IN SHARE UPDATE EXCLUSIVE MODE', parent);

  -- The newest range partition, whose length is the interval unless one
  -- is given: whole months when it spans whole months, else its length.
  SELECT b[1]::timestamptz, b[2]::timestamptz INTO last_start, last_end
    FROM (SELECT regexp_match(pg_get_expr(c.relpartbound, c.oid),
                              '^FOR VALUES FROM \(''([^'']*)''\) TO \(''([^'']*)''\)$') AS b
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = parent) x
   WHERE b IS NOT NULL
   ORDER BY b[2]::timestamptz DESC LIMIT 1;
  IF last_end IS NULL THEN
    RAISE EXCEPTION 'p2pay: p2pay.payments has no partition with a finite time range'
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Create the first partition by hand (CREATE TABLE ... PARTITION OF p2pay.payments FOR VALUES FROM (...) TO (...)).';
  END IF;
  IF iv IS NULL THEN
    months := (extract(year FROM age(last_end, last_start)) * 12
               + extract(month FROM age(last_end, last_start)))::integer;
    iv := CASE WHEN months > 0 AND last_start + make_interval(months => months) = last_end
               THEN make_interval(months => months)
               ELSE last_end - last_start END;
    IF iv < interval '1 day' OR iv > interval '1 year' THEN
      RAISE EXCEPTION 'p2pay: the newest partition of p2pay.payments spans %, not between 1 day and 1 year', iv
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Give partition_interval.';
    END IF;
  END IF;

  -- the end of the partition holding now() on the grid of the newest
  -- partition, then premake more
  through := last_end;
  WHILE through <= now() LOOP
    through := through + iv;
  END LOOP;
  WHILE through - iv > now() LOOP
    through := through - iv;
  END LOOP;
  through := through + iv * premake;

  -- A row of the default partition inside a new range would make its
  -- creation fail: say which, rather than PostgreSQL's check.
  SELECT i.inhrelid::regclass INTO dflt
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
   WHERE i.inhparent = parent AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT';
  IF dflt IS NOT NULL THEN
    EXECUTE format('SELECT count(*) FROM %s WHERE created_at >= %L AND created_at < %L', dflt, last_end, through)
      INTO stray;
    IF stray > 0 THEN
      RAISE EXCEPTION 'p2pay: % payments of % fall in the partitions to create', stray, dflt
        USING ERRCODE = 'object_not_in_prerequisite_state',
              DETAIL = format('The new partitions would cover [%s, %s).', last_end, through),
              HINT = 'The partitions were not created in time; the payments stay in the default partition.  Create the later partitions with a larger premake once the time of those payments has passed, or move the payments by hand.';
    END IF;
  END IF;

  RETURN QUERY SELECT * FROM @extschema@.create_payment_partitions(parent, last_end, through, iv);
END $$;
COMMENT ON FUNCTION @extschema@.add_payment_partitions(integer, interval) IS
  'Create the partitions of a partitioned p2pay.payments that follow the newest one, through the one holding now and premake more (4 by default), each with REPLICA IDENTITY FULL; partition_interval, by default the length of the newest partition.  For DBAs who do not use pg_partman; run it daily.';
REVOKE ALL ON FUNCTION @extschema@.add_payment_partitions(integer, interval) FROM PUBLIC;

-- A partition does not take its parent's replica identity, and pg_partman
-- does not copy it from its template table: after a command that creates a
-- table in the partition tree of payments (CREATE TABLE ... PARTITION OF)
-- or alters a partitioned table of it (ATTACH PARTITION), every table of
-- the tree without REPLICA IDENTITY FULL gets it.  An ALTER TABLE of a
-- leaf partition is the DBA's own and is left as it is.
CREATE FUNCTION @extschema@.payments_partition_identity() RETURNS event_trigger
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  root oid;
  cmd record;
  part regclass;
BEGIN
  SELECT c.oid INTO root
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = '@extschema@' AND c.relname = 'payments' AND c.relkind = 'p';
  IF root IS NULL THEN
    RETURN;
  END IF;
  FOR cmd IN SELECT c.command_tag, c.objid, k.relkind
               FROM pg_event_trigger_ddl_commands() c
               JOIN pg_class k ON k.oid = c.objid
              WHERE c.classid = 'pg_class'::regclass AND c.objsubid = 0
  LOOP
    CONTINUE WHEN cmd.command_tag = 'ALTER TABLE' AND cmd.relkind <> 'p';
    CONTINUE WHEN cmd.objid <> root
             AND NOT EXISTS (SELECT 1 FROM pg_partition_ancestors(cmd.objid) a WHERE a.relid = root);
    FOR part IN SELECT t.relid FROM pg_partition_tree(cmd.objid) t
                  JOIN pg_class k ON k.oid = t.relid
                 WHERE k.relkind IN ('r', 'p') AND k.relreplident <> 'f'
    LOOP
      EXECUTE format('ALTER TABLE %s REPLICA IDENTITY FULL', part);
    END LOOP;
  END LOOP;
END $$;
COMMENT ON FUNCTION @extschema@.payments_partition_identity() IS
  'Event trigger: gives every new or attached partition of p2pay.payments REPLICA IDENTITY FULL, which the stream needs and partitions do not inherit.';
REVOKE ALL ON FUNCTION @extschema@.payments_partition_identity() FROM PUBLIC;

CREATE EVENT TRIGGER p2pay_payments_partition_identity ON ddl_command_end
  WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE')
  EXECUTE FUNCTION @extschema@.payments_partition_identity();

-- Detection from day one: accounts with no history in p2pay.  While an
-- account has fewer than baseline_days of history, the rules with a normal
-- compare with the days there are, with baseline_days / days times the
-- room, and payee_fan_in looks only at payments of at least
-- short_history_min_amount: many small payments are a new shop's, many
-- larger ones a mule's.  new_payee_high_amount takes an unseen pair for a
-- new payee only once p2pay has known the payer for min_known_days.
-- young_payee_high_amount weighs a first large payment to an account
-- opened within max_age, which needs no history.
COMMENT ON COLUMN @extschema@.rules.params IS
  'The rule''s parameters: every key the rule takes, each of its type (numbers, or intervals as text such as ''24 hours''); an optional key left out is 0 (off).';

UPDATE @extschema@.rules
   SET description = 'More than max_count payments by the payer in the window, and more than baseline_factor times its normal for such a window (with fewer than baseline_days of history: the days there are, with baseline_days / days times the room; optionally only payments of at least short_history_min_amount).'
 WHERE name = 'payer_velocity_count';
UPDATE @extschema@.rules
   SET description = 'Payer paid more than max_payees distinct payees in the window, and more than baseline_factor times its normal (with fewer than baseline_days of history: the days there are, with baseline_days / days times the room; optionally only payments of at least short_history_min_amount).'
 WHERE name = 'payer_fan_out';
UPDATE @extschema@.rules
   SET params = params || '{"short_history_min_amount": 100}',
       description = 'Payee received from more than max_payers distinct payers in the window (mule accounts), and more than baseline_factor times its normal; with fewer than baseline_days of history, payments of at least short_history_min_amount only, against the days there are with baseline_days / days times the room.'
 WHERE name = 'payee_fan_in';

UPDATE @extschema@.rules
   SET params = params || '{"min_known_days": 30}',
       description = 'First ever payment from payer to payee, above min_amount, by a payer p2pay has known for at least min_known_days (so that it would have seen a monthly payment to the payee).'
 WHERE name = 'new_payee_high_amount';

INSERT INTO @extschema@.rules (name, weight, params, description) VALUES
  ('young_payee_high_amount', 0.3, '{"max_age": "180 days", "min_amount": 1000}',
   'First ever payment from payer to a payee whose account is younger than max_age, above min_amount: where mules and drops are paid.');
