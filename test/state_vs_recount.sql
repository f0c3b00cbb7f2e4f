-- state_vs_recount(): the rows in which the per-account state differs from
-- what test/recount.sql counts from the payments stored, one per row that
-- only one side has (none when they agree).  Read by sql/on_conflict.sql
-- and sql/statement_rows.sql (\i); sql/backdated.sql keeps its own, which
-- compares what rebuild_state() counts too.
\ir recount.sql
CREATE FUNCTION state_vs_recount() RETURNS TABLE (state text, row_text text)
LANGUAGE sql AS $$
  SELECT 'account_stats', r::text FROM ((TABLE p2pay.account_stats EXCEPT TABLE recount_account_stats)
    UNION ALL (TABLE recount_account_stats EXCEPT TABLE p2pay.account_stats)) r
  UNION ALL SELECT 'pair_stats', r::text FROM ((TABLE p2pay.pair_stats EXCEPT TABLE recount_pair_stats)
    UNION ALL (TABLE recount_pair_stats EXCEPT TABLE p2pay.pair_stats)) r
  UNION ALL SELECT 'account_daily', r::text FROM ((TABLE p2pay.account_daily EXCEPT TABLE recount_account_daily)
    UNION ALL (TABLE recount_account_daily EXCEPT TABLE p2pay.account_daily)) r
$$;
