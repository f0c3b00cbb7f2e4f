#!/usr/bin/env bash
# bench/ab.sh A.so B.so: two builds of p2pay's library compared on one
# cluster.  1,000,000 payments of history (AB_HISTORY) among 10,000 users,
# as scripts/bench.sh loads them; then runs of AB_SECONDS (10) s of pgbench,
# AB_CLIENTS (2) clients, one payment per transaction, synchronous_commit
# off, autovacuum off, the builds alternated A B B A for AB_ROUNDS (3)
# rounds.  Before each run the build's library is installed in place of
# p2pay.so and the server restarted; after it the run's payments are
# deleted and the per-account state restored (bench_forget_since), so that
# every run starts from the same history.  Prints each run's payments/s and
# each build's median; the installed library is put back at the end.
#
# AB_WINDOW=N first inserts N payments more through the trigger (B's
# build), dated now, by pgbench as the runs do: the history's last hours
# are then as dense as N / 10,000 payments an account, which is what the
# rules' windows read (the history alone holds about 0.3 an account a
# day).
#
# Each library is put in place by a rename, so that a process that has
# the one before mapped (p2pay is in shared_preload_libraries) keeps it
# until the restart.
#
# Both builds must serve the installed extension's SQL (the same version's
# scripts).  Build the other one in a worktree: git worktree add /tmp/a REV
# && make -C /tmp/a p2pay.so.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

if [ $# -ne 2 ] || [ ! -f "$1" ] || [ ! -f "$2" ]; then
  echo "usage: bash bench/ab.sh A.so B.so" >&2
  exit 2
fi
A=$(realpath "$1")
B=$(realpath "$2")
ROUNDS=${AB_ROUNDS:-3}
HISTORY=${AB_HISTORY:-1000000}
SECONDS_RUN=${AB_SECONDS:-10}
CLIENTS=${AB_CLIENTS:-2}
WINDOW=${AB_WINDOW:-0}
USERS=10000
BENCH_DB=p2pay_ab

ensure_packages "postgresql-$PG_MAJOR"
LIB="$("$PG_BIN/pg_config" --pkglibdir)/p2pay.so"
WORK=$(make_workdir ab)
cp "$LIB" "$WORK/installed.so"
# install_lib SO: SO in place of p2pay.so, by a rename.
install_lib() {
  cp "$1" "$LIB.ab-new"
  mv -f "$LIB.ab-new" "$LIB"
}
cleanup() {
  stop_cluster "$WORK"
  install_lib "$WORK/installed.so"
  rm -rf "$WORK"
}
trap cleanup EXIT

export CLUSTER_CONF="fsync = on
synchronous_commit = off
$BENCH_QUIET_CONF"
install_lib "$B"
start_cluster "$WORK" "$(free_port)"
bench_create_db "$USERS"
bench_grow_history "$USERS" "$HISTORY"
bench_pay_script "$USERS" "$WORK/pay.sql"
if [ "$WINDOW" -gt 0 ]; then
  as_pg pgbench -n -M prepared -c "$CLIENTS" -j "$CLIENTS" -t $(((WINDOW + CLIENTS - 1) / CLIENTS)) \
    -f "$WORK/pay.sql" "$BENCH_DB" >/dev/null 2>&1
  bench_psql -c "VACUUM ANALYZE" >/dev/null
  echo "window: $(bench_value "SELECT count(*) FROM p2pay.payments
                                WHERE created_at > now() - interval '24 hours'") payments in the last 24 hours"
fi
bench_save_state

: >"$WORK/runs"
for r in $(seq "$ROUNDS"); do
  for build in A B B A; do
    if [ "$build" = A ]; then install_lib "$A"; else install_lib "$B"; fi
    as_pg pg_ctl -D "$WORK/data" -m fast -w restart -l "$WORK/server.log" >/dev/null
    max=$(bench_value "SELECT coalesce(max(id), 0) FROM p2pay.payments")
    tps=$(as_pg pgbench -n -M prepared -c "$CLIENTS" -j "$CLIENTS" -T "$SECONDS_RUN" \
            -f "$WORK/pay.sql" "$BENCH_DB" 2>/dev/null | awk '/^tps/ {print int($3)}')
    echo "round $r: $build $tps payments/s"
    echo "$build $tps" >>"$WORK/runs"
    bench_forget_since "$max"
  done
done
for build in A B; do
  printf '%s (%s): median %s payments/s\n' "$build" "$([ $build = A ] && echo "$1" || echo "$2")" \
    "$(awk -v b=$build '$1 == b {print $2}' "$WORK/runs" | sort -n |
       awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}')"
done
