-- The per-account state counted from the payments in set-based SQL, apart
-- from the C that records each payment (the trigger, and rebuild_state()
-- through the same code), so that a test comparing the state with it does
-- not compare that code with itself.  One temporary view per state table,
-- named recount_<table>, with the table's columns in its order: what the
-- table must hold for the payments stored now.  Read by sql/backdated.sql
-- and test/state_vs_recount.sql (\i, \ir) and by t/lib/P2payNode.pm's
-- state_vs_recount().
CREATE TEMP VIEW recount_account_stats AS
SELECT user_id, sum(out_count)::bigint AS out_count, sum(out_sum) AS out_sum,
       sum(in_count)::bigint AS in_count, sum(in_sum) AS in_sum
  FROM (SELECT payer_id AS user_id, count(*) AS out_count, sum(amount_base) AS out_sum,
               0 AS in_count, 0 AS in_sum
          FROM p2pay.payments GROUP BY payer_id
        UNION ALL
        SELECT payee_id, 0, 0, count(*), sum(amount_base)
          FROM p2pay.payments GROUP BY payee_id) t
 GROUP BY user_id;
CREATE TEMP VIEW recount_pair_stats AS
SELECT payer_id, payee_id, min(created_at) AS first_at, max(created_at) AS last_at,
       count(*) AS n, sum(amount_base) AS total
  FROM p2pay.payments GROUP BY payer_id, payee_id;
-- A payer's amounts per hour of each UTC day: the hours whose sum is not
-- 0, ascending, and their sums.
CREATE TEMP VIEW recount_day_hours AS
SELECT payer_id, day, array_agg(hour ORDER BY hour) AS hours, array_agg(total ORDER BY hour) AS sums
  FROM (SELECT payer_id, (created_at AT TIME ZONE 'UTC')::date AS day,
               extract(hour FROM created_at AT TIME ZONE 'UTC')::smallint AS hour,
               sum(amount_base) AS total
          FROM p2pay.payments GROUP BY 1, 2, 3 HAVING sum(amount_base) <> 0) h
 GROUP BY payer_id, day;
CREATE TEMP VIEW recount_account_daily AS
SELECT d.user_id, d.day, d.out_count, d.out_payees, d.in_payers,
       coalesce(h.hours, '{}') AS out_hours, coalesce(h.sums, '{}') AS out_hour_sums
  FROM (SELECT user_id, day, sum(out_count)::bigint AS out_count,
               sum(out_payees)::bigint AS out_payees, sum(in_payers)::bigint AS in_payers
          FROM (SELECT payer_id AS user_id, (created_at AT TIME ZONE 'UTC')::date AS day,
                       count(*) AS out_count, count(DISTINCT payee_id) AS out_payees, 0 AS in_payers
                  FROM p2pay.payments GROUP BY 1, 2
                UNION ALL
                SELECT payee_id, (created_at AT TIME ZONE 'UTC')::date, 0, 0, count(DISTINCT payer_id)
                  FROM p2pay.payments GROUP BY 1, 2) t
         GROUP BY user_id, day) d
  LEFT JOIN recount_day_hours h ON h.payer_id = d.user_id AND h.day = d.day;
