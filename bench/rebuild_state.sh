#!/usr/bin/env bash
# bench/rebuild_state.sh: how long p2pay.rebuild_state() takes on a history
# loaded as scripts/bench.sh loads its own (scripts/lib.sh's
# bench_load_payments: BENCH_HISTORY payments between
# BENCH_USERS users, pre-scored, triggers off), against the set-based SQL
# count of test/recount.sql (the SQL rebuild it replaced wrote
# payer_hourly, which 1.2 no longer has), alternated, BENCH_ROUNDS
# times each, on one throwaway cluster (fsync off); then whether the two
# leave the same state, row for row.  maintenance_work_mem is
# REBUILD_MEMORY for both (1GB, as scripts/bench.sh counts its state).
#   BENCH_HISTORY (1000000), BENCH_USERS (10000), BENCH_ROUNDS (2),
#   REBUILD_MEMORY (1GB)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

N=${BENCH_HISTORY:-1000000}
USERS=${BENCH_USERS:-10000}
ROUNDS=${BENCH_ROUNDS:-2}
MEMORY=${REBUILD_MEMORY:-1GB}
BENCH_DB=bench

build_and_install
WORK=$(make_workdir rebuild)
trap 'stop_cluster "$WORK"; rm -rf "$WORK"' EXIT
export CLUSTER_CONF="fsync = off
synchronous_commit = off
$BENCH_QUIET_CONF"
start_cluster "$WORK" "$(free_port)"
q() { as_pg psql -X -q -v ON_ERROR_STOP=1 -d "$BENCH_DB" "$@"; }
bench_create_db "$USERS"
bench_load_payments "$USERS" 0 "$N"
q -c "VACUUM ANALYZE"
# the set-based count, as bench.rebuild_state_sql(): test/recount.sql's
# views (the tests' count of the state from the payments) written into the
# state tables
sed -e 's/CREATE TEMP VIEW recount_/CREATE VIEW bench.recount_/' \
  -e 's/JOIN recount_/JOIN bench.recount_/' test/recount.sql | q
q <<'SQL'
CREATE FUNCTION bench.rebuild_state_sql() RETURNS void LANGUAGE sql AS $$
  TRUNCATE p2pay.account_stats, p2pay.pair_stats, p2pay.account_daily;
  INSERT INTO p2pay.account_stats SELECT * FROM bench.recount_account_stats;
  INSERT INTO p2pay.pair_stats SELECT * FROM bench.recount_pair_stats;
  INSERT INTO p2pay.account_daily SELECT * FROM bench.recount_account_daily;
$$;
SQL

settings="SET work_mem = '1GB'; SET maintenance_work_mem = '$MEMORY';"
echo "$N payments, $USERS users, maintenance_work_mem $MEMORY"
for r in $(seq 1 "$ROUNDS"); do
  for f in bench.rebuild_state_sql p2pay.rebuild_state; do
    ms=$(q -A -t -c "CHECKPOINT" -c "$settings" -c '\timing on' -c "SELECT $f()" | awk '/^Time:/ {print $2}')
    echo "round $r: $f(): $ms ms"
  done
done
q -A -t -c "SELECT 'state: ' || (SELECT count(*) FROM p2pay.account_stats) || ' accounts, ' ||
  (SELECT count(*) FROM p2pay.pair_stats) || ' pairs, ' ||
  (SELECT sum(cardinality(out_hours)) FROM p2pay.account_daily) ||
  ' hours, ' || (SELECT count(*) FROM p2pay.account_daily) || ' days, ' ||
  pg_size_pretty(pg_total_relation_size('p2pay.account_stats') + pg_total_relation_size('p2pay.pair_stats')
    + pg_total_relation_size('p2pay.account_daily'))"
q -A -t <<SQL
$settings
SELECT bench.rebuild_state_sql();
CREATE TEMP TABLE sql_account AS TABLE p2pay.account_stats;
CREATE TEMP TABLE sql_pair AS TABLE p2pay.pair_stats;
CREATE TEMP TABLE sql_daily AS TABLE p2pay.account_daily;
SELECT p2pay.rebuild_state();
SELECT 'rows that differ between the two: ' ||
  (SELECT count(*) FROM ((TABLE sql_account EXCEPT ALL TABLE p2pay.account_stats)
                         UNION ALL (TABLE p2pay.account_stats EXCEPT ALL TABLE sql_account)) d) +
  (SELECT count(*) FROM ((TABLE sql_pair EXCEPT ALL TABLE p2pay.pair_stats)
                         UNION ALL (TABLE p2pay.pair_stats EXCEPT ALL TABLE sql_pair)) d) +
  (SELECT count(*) FROM ((TABLE sql_daily EXCEPT ALL TABLE p2pay.account_daily)
                         UNION ALL (TABLE p2pay.account_daily EXCEPT ALL TABLE sql_daily)) d);
SQL
