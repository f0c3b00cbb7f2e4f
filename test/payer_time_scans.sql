-- payer_time_scans(): how many scans of the (payer_id, created_at) index of
-- payments (or of its partitions' indexes, when payments is partitioned)
-- this transaction has made so far: the reads of a payer's payments, which
-- a test takes before and after a payment.  Read by sql/backdated.sql and
-- sql/money_flow.sql (\i); each drops it at its end.
CREATE FUNCTION payer_time_scans() RETURNS bigint LANGUAGE sql AS $$
  SELECT coalesce(sum(pg_stat_get_xact_numscans(i.indexrelid)), 0)::bigint
    FROM (SELECT 'p2pay.payments'::regclass AS relid
          UNION SELECT t.relid FROM pg_partition_tree('p2pay.payments') t) t
    JOIN pg_index i ON i.indrelid = t.relid
   WHERE pg_get_indexdef(i.indexrelid) LIKE '%(payer_id, created_at)%'
$$;
