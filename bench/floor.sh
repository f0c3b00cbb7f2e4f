#!/usr/bin/env bash
# bench/floor.sh: what one payment costs the database, row by row.  Inserts
# FLOOR_N payments one per transaction through the scoring trigger, and
# the same payments with the trigger disabled (the bare insert: the same
# table, indexes and foreign keys), and prints per payment, from the
# deltas of the statistics views, the heap rows each table took (inserted,
# updated, of which HOT, deleted), the btree entries written, the index
# scans of each index, the buffers hit, and what pg_stat_statements and
# pg_stat_wal say of the whole statement.  With FLOOR_PERF=1, also a CPU
# profile (perf record) of the backends while pgbench inserts payments
# through the trigger.  docs/internals.md ("The insert path's floor")
# reads these tables.
#
# Builds and installs p2pay, starts a throwaway cluster, loads a history
# as scripts/bench.sh does (scripts/lib.sh's bench_* functions), and prints
# Markdown tables on stdout, progress on stderr.
#
# Options, as environment variables (FLOOR_HISTORY=100000 bash bench/floor.sh):
#   FLOOR_HISTORY (1000000) payments of history among FLOOR_USERS (10000)
#   users; FLOOR_N (10000) payments inserted by each contender, by one
#   pgbench client with --random-seed=FLOOR_SEED (1), so that both insert
#   the same payers, payees and amounts; FLOOR_PERF=1 to profile, for
#   FLOOR_PERF_SECONDS (15) with FLOOR_PERF_CLIENTS (1) clients;
#   FLOOR_KEEP=1 leaves the cluster running; FLOOR_INSTALLED=1 skips the
#   build and install (make bench has just made them).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

USERS=${FLOOR_USERS:-10000}
HISTORY=${FLOOR_HISTORY:-1000000}
N=${FLOOR_N:-10000}
SEED=${FLOOR_SEED:-1}
PERF=${FLOOR_PERF:-}
PERF_SECONDS=${FLOOR_PERF_SECONDS:-15}
PERF_CLIENTS=${FLOOR_PERF_CLIENTS:-1}
KEEP=${FLOOR_KEEP:-}
BENCH_DB=p2pay_floor

ensure_packages build-essential "postgresql-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR"
if [ -n "$PERF" ]; then
  ensure_packages python3
  command -v perf >/dev/null || ensure_packages linux-perf
fi
BUILT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' with uncommitted changes')"
[ -n "${FLOOR_INSTALLED:-}" ] || build_and_install >&2

WORK=$(make_workdir floor)
cleanup() {
  if [ -n "$KEEP" ]; then
    echo "cluster left running in $WORK (PGHOST=$WORK PGPORT=$PGPORT PGUSER=postgres)" >&2
  else
    stop_cluster "$WORK"
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

# scripts/bench.sh's settings, with autovacuum off (the history load
# vacuums itself), so that no worker moves a counter during a run, and
# pg_stat_statements, for the whole statement's buffers and WAL and for
# the statements run inside it (foreign-key checks, the money-flow SQL).
export CLUSTER_CONF="fsync = on
synchronous_commit = off
$BENCH_QUIET_CONF
shared_preload_libraries = 'p2pay, pg_stat_statements'
pg_stat_statements.track = all"
start_cluster "$WORK" "$(free_port)"

# The p2pay.so the server loaded, from its memory map: another checkout's
# make install may replace the installed file at any time, and what is
# measured must be this tree's build.
loaded_library() {
  local pid range
  pid=$(as_pg head -n 1 "$WORK/data/postmaster.pid")
  range=$(awk '/\/p2pay\.so/ {print $1; exit}' "/proc/$pid/maps")
  echo "/proc/$pid/map_files/$range"
}
if [ "$(id -u)" = 0 ] && ! cmp -s "$(loaded_library)" p2pay.so; then
  echo "floor.sh: the server loaded a p2pay.so other than this tree's build (installed meanwhile by another make install?); run again" >&2
  exit 1
fi

bench_create_db "$USERS"
bench_grow_history "$USERS" "$HISTORY"
bench_pay_script "$USERS" "$WORK/pay.sql"

# The counters, as each run's before and after: per table and index of
# schema p2pay, and the server's WAL.  Read in a session that touches no
# table of p2pay, once every other session has gone (settle).
bench_psql <<'SQL'
CREATE EXTENSION pg_stat_statements;
CREATE SCHEMA floor;
CREATE TABLE floor.counters (run text, phase text, kind text, name text, metric text, v numeric);
CREATE FUNCTION floor.snap(run text, phase text) RETURNS void LANGUAGE sql VOLATILE AS $$
  SELECT pg_catalog.pg_stat_clear_snapshot();
  INSERT INTO floor.counters
  SELECT run, phase, 'table', t.relname, x.metric, x.v
    FROM pg_catalog.pg_stat_user_tables t JOIN pg_catalog.pg_statio_user_tables io USING (relid),
         LATERAL (VALUES ('ins', t.n_tup_ins), ('upd', t.n_tup_upd), ('hot', t.n_tup_hot_upd),
                         ('del', t.n_tup_del), ('seq_scan', t.seq_scan),
                         ('idx_scan', coalesce(t.idx_scan, 0)),
                         ('hit', io.heap_blks_hit + coalesce(io.idx_blks_hit, 0)),
                         ('read', io.heap_blks_read + coalesce(io.idx_blks_read, 0))) x(metric, v)
   WHERE t.schemaname = 'p2pay';
  INSERT INTO floor.counters
  SELECT run, phase, 'index', i.indexrelname, x.metric, x.v
    FROM pg_catalog.pg_stat_user_indexes i JOIN pg_catalog.pg_statio_user_indexes io USING (indexrelid),
         LATERAL (VALUES ('scan', i.idx_scan), ('read', i.idx_tup_read), ('fetch', i.idx_tup_fetch),
                         ('hit', io.idx_blks_hit)) x(metric, v)
   WHERE i.schemaname = 'p2pay';
  INSERT INTO floor.counters
  SELECT run, phase, 'wal', 'wal', x.metric, x.v
    FROM pg_catalog.pg_stat_wal w,
         LATERAL (VALUES ('records', w.wal_records), ('fpi', w.wal_fpi), ('bytes', w.wal_bytes)) x(metric, v);
$$;
-- The statements of a run (pg_stat_statements, reset before it): the
-- INSERT, top level, and what ran inside it.
CREATE TABLE floor.statements (run text, toplevel bool, query text, calls bigint, hit bigint,
                               read bigint, dirtied bigint, wal_records bigint, wal_fpi bigint,
                               wal_bytes numeric);
-- The btree entries the writes of a run made: each row inserted, and each
-- updated but not HOT, has one in every btree index of its table, but in
-- a partial index only if the predicate holds (partial counts those).
CREATE TABLE floor.partial (run text, name text, entries bigint);
-- The WAL of a run by record type (pg_waldump --stats=record).
CREATE TABLE floor.wal (run text, type text, n bigint, rec_bytes bigint, fpi_bytes bigint);
CREATE VIEW floor.delta AS
  SELECT a.run, a.kind, a.name, a.metric, a.v - b.v AS v
    FROM floor.counters a JOIN floor.counters b USING (run, kind, name, metric)
   WHERE a.phase = 'after' AND b.phase = 'before';
CREATE VIEW floor.btrees AS
  SELECT c.relname AS tab, count(*) FILTER (WHERE i.indpred IS NULL) AS full_indexes
    FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
    JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_catalog.pg_am am ON am.oid = ic.relam
   WHERE c.relnamespace = 'p2pay'::regnamespace AND am.amname = 'btree'
   GROUP BY c.relname;
SQL

# Wait until no other session is connected to the database: a backend
# sends its statistics at exit, before it leaves pg_stat_activity, so
# every run's counters are in by then.
settle() {
  for _ in $(seq 100); do
    [ "$(bench_value "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                        AND pid <> pg_backend_pid() AND backend_type = 'client backend'")" = 0 ] && return 0
    sleep 0.1
  done
  echo "floor.sh: sessions still connected after 10 s" >&2; return 1
}

# measure RUN: FLOOR_N payments through pgbench, one client, one per
# transaction, with the counters read before and after; the payments are
# deleted afterwards and the state restored (bench_forget_since).  Sets
# LAT_<RUN>, the mean latency in ms.
LAT_a='' LAT_b=''
measure() {
  local run=$1 maxid out lat moved from until
  maxid=$(bench_value "SELECT coalesce(max(id), 0) FROM p2pay.payments")
  bench_psql -c "CHECKPOINT" >/dev/null
  settle
  bench_psql -c "SELECT pg_stat_statements_reset()" -c "SELECT floor.snap('$run', 'before')" >/dev/null
  from=$(bench_value "SELECT pg_current_wal_insert_lsn()")
  out=$(as_pg pgbench -n -M prepared -c 1 -j 1 -t "$N" --random-seed="$SEED" \
    -f "$WORK/pay.sql" "$BENCH_DB" 2>&1) || { echo "$out" >&2; return 1; }
  lat=$(sed -n 's/^latency average = \([0-9.]*\) ms$/\1/p' <<<"$out")
  printf -v "LAT_$run" '%s' "$lat"
  LOAD+="$run: $(cut -d' ' -f1 /proc/loadavg); "
  settle
  until=$(bench_value "SELECT pg_current_wal_insert_lsn()")
  # on disk for pg_waldump: the WAL writer flushes asynchronous commits
  # within wal_writer_delay
  for _ in $(seq 100); do
    [ "$(bench_value "SELECT pg_current_wal_flush_lsn() >= '$until'")" = t ] && break
    sleep 0.1
  done
  # type, count, record bytes, full-page image bytes, once the
  # percentages are out
  as_pg pg_waldump --stats=record -p "$WORK/data/pg_wal" -s "$from" -e "$until" |
    awk -v run="$run" -v q="'" '$1 ~ /\// { gsub(/\( *[0-9.]+\)/, ""); if ($2 ~ /^[0-9]+$/)
      printf "INSERT INTO floor.wal VALUES (%s, %s, %s, %s, %s);\n", q run q, q $1 q, $2, $3, $4 }' |
    bench_psql >/dev/null
  bench_psql <<SQL >/dev/null
SELECT floor.snap('$run', 'after');
INSERT INTO floor.statements
SELECT '$run', toplevel, regexp_replace(query, '\s+', ' ', 'g'), calls, shared_blks_hit, shared_blks_read,
       shared_blks_dirtied, wal_records, wal_fpi, wal_bytes
  FROM pg_stat_statements
 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND (toplevel AND query LIKE 'INSERT INTO p2pay.payments%'
        OR NOT toplevel AND query NOT LIKE '%floor.%' AND query NOT LIKE '%pg_stat_clear_snapshot%');
SQL
  # the partial indexes' entries: the run's payments that meet the predicate
  bench_value "SELECT format('INSERT INTO floor.partial VALUES (%L, %L, (SELECT count(*) FROM p2pay.payments WHERE id > $maxid AND %s));',
                             '$run', ic.relname, pg_get_expr(i.indpred, i.indrelid))
                 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                WHERE i.indrelid = 'p2pay.payments'::regclass AND i.indpred IS NOT NULL" |
    bench_psql >/dev/null
  if [ "$run" = a ]; then MIX=$(bench_value "
    SELECT format('%s payments: %s %% of at least 1,000 (the money-flow reads), decisions %s.',
                  count(*), round(100.0 * count(*) FILTER (WHERE amount_base >= 1000) / count(*), 1),
                  (SELECT string_agg(d || ' ' || n, ', ' ORDER BY d)
                     FROM (SELECT decision::text AS d, count(*) AS n FROM p2pay.payments
                            WHERE id > $maxid GROUP BY 1) x))
      FROM p2pay.payments WHERE id > $maxid"); fi
  moved=$(bench_value "SELECT v FROM floor.delta WHERE run = '$run' AND kind = 'table'
                         AND name = 'payments' AND metric = 'ins'")
  if [ "$moved" != "$N" ]; then
    echo "floor.sh: run $run inserted $N payments, but pg_stat_user_tables counted ${moved:-none}" >&2
    return 1
  fi
  bench_forget_since "$maxid"
}

# The bare insert first, then the trigger, on the history as loaded.
LOAD=
say "bare insert: $N payments"
bench_psql -c "ALTER TABLE p2pay.payments DISABLE TRIGGER payments_score" >/dev/null
measure b
bench_psql -c "ALTER TABLE p2pay.payments ENABLE TRIGGER payments_score" >/dev/null
say "p2pay trigger: $N payments"
measure a

# The tables.  Per payment: a counter's delta over the run, divided by N.
report() {
  as_pg psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$BENCH_DB" -v n="$N" "$@"
}
echo "# The insert path's floor, measured"
echo
echo "p2pay commit $BUILT; $(bench_value 'SELECT version()' | cut -d, -f1); $(nproc) cores."
echo "\`FLOOR_HISTORY=$HISTORY FLOOR_USERS=$USERS FLOOR_N=$N bash bench/floor.sh\`: $HISTORY payments of"
echo "history among $USERS users, then $N payments by one pgbench client (\`-M prepared\`, one"
echo "payment per transaction, \`--random-seed=$SEED\`): (a) through the p2pay trigger, (b) the same"
echo "payments with the trigger disabled. $MIX The machine's load average after each run"
echo "(other work included): ${LOAD%; }."
echo
echo "Per payment, by table (btree entries: rows inserted and non-HOT updates times the"
echo "table's btree indexes, plus the partial index's entries; buffer hits: heap and indexes,"
echo "pg_statio_user_tables):"
echo
report <<'SQL'
WITH t AS (
  SELECT run, name,
         sum(v) FILTER (WHERE metric = 'ins') AS ins, sum(v) FILTER (WHERE metric = 'upd') AS upd,
         sum(v) FILTER (WHERE metric = 'hot') AS hot, sum(v) FILTER (WHERE metric = 'del') AS del,
         sum(v) FILTER (WHERE metric = 'idx_scan') AS iscan,
         sum(v) FILTER (WHERE metric = 'seq_scan') AS sscan,
         sum(v) FILTER (WHERE metric = 'hit') AS hit, sum(v) FILTER (WHERE metric = 'read') AS rd
    FROM floor.delta WHERE kind = 'table' GROUP BY run, name),
e AS (
  SELECT t.*, (t.ins + t.upd - t.hot) * coalesce(b.full_indexes, 0)
              + coalesce((SELECT sum(entries) FROM floor.partial p WHERE p.run = t.run AND t.name = 'payments'), 0)
              AS entries
    FROM t LEFT JOIN floor.btrees b ON b.tab = t.name),
rows AS (
  SELECT run, name, ins, upd, hot, del, entries, iscan, sscan, hit, rd, 0 AS total FROM e
   WHERE ins + upd + del + iscan + sscan + hit + rd >= :n / 200.0
  UNION ALL
  SELECT run, 'all tables', sum(ins), sum(upd), sum(hot), sum(del), sum(entries), sum(iscan), sum(sscan),
         sum(hit), sum(rd), 1 FROM e GROUP BY run)
SELECT '| contender | table | rows inserted | updated | of which HOT | deleted | btree entries | index scans | seq scans | buffer hits | reads |'
UNION ALL SELECT '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|'
UNION ALL
SELECT format('| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |',
              CASE run WHEN 'a' THEN '(a) p2pay trigger' ELSE '(b) bare insert' END,
              CASE WHEN total = 1 THEN '**all tables**' ELSE name END,
              round(ins / :n, 2), round(upd / :n, 2), round(hot / :n, 2), round(del / :n, 2),
              round(entries / :n, 2), round(iscan / :n, 2), round(sscan / :n, 2), round(hit / :n, 1),
              round(rd / :n, 2))
  FROM (SELECT * FROM rows ORDER BY run, total, name) r;
SQL
echo
echo "Per payment, by index (scans: descents that read, pg_stat_user_indexes.idx_scan;"
echo "entries read, heap rows fetched through it; the descents that insert an entry are not"
echo "counted there):"
echo
report <<'SQL'
WITH i AS (
  SELECT name, metric, sum(v) FILTER (WHERE run = 'a') AS a, sum(v) FILTER (WHERE run = 'b') AS b
    FROM floor.delta WHERE kind = 'index' GROUP BY name, metric),
w AS (
  SELECT name,
         max(a) FILTER (WHERE metric = 'scan') AS a_scan, max(a) FILTER (WHERE metric = 'read') AS a_read,
         max(a) FILTER (WHERE metric = 'fetch') AS a_fetch, max(a) FILTER (WHERE metric = 'hit') AS a_hit,
         max(b) FILTER (WHERE metric = 'scan') AS b_scan, max(b) FILTER (WHERE metric = 'hit') AS b_hit
    FROM i GROUP BY name)
SELECT '| index | (a) scans | (a) entries read | (a) heap fetches | (a) buffer hits | (b) scans | (b) buffer hits |'
UNION ALL SELECT '|---|--:|--:|--:|--:|--:|--:|'
UNION ALL
SELECT format('| %s | %s | %s | %s | %s | %s | %s |', name, round(a_scan / :n, 2), round(a_read / :n, 2),
              round(a_fetch / :n, 2), round(a_hit / :n, 2), round(b_scan / :n, 2), round(b_hit / :n, 2))
  FROM (SELECT * FROM w WHERE a_scan + a_hit + b_scan + b_hit >= :n / 200.0 ORDER BY a_scan DESC, name) x
UNION ALL
SELECT format('| **all** | %s | %s | %s | %s | %s | %s |', round(sum(a_scan) / :n, 2), round(sum(a_read) / :n, 2),
              round(sum(a_fetch) / :n, 2), round(sum(a_hit) / :n, 2), round(sum(b_scan) / :n, 2),
              round(sum(b_hit) / :n, 2))
  FROM w;
SQL
echo
echo "Per payment, the whole INSERT (pg_stat_statements, top level: every buffer and WAL"
echo "record of the statement, catalogs, sequence and foreign-key checks included, the commit"
echo "not) and the server's WAL (pg_stat_wal, commits included; a checkpoint before each run):"
echo
report -v lat_a="$LAT_a" -v lat_b="$LAT_b" <<'SQL'
WITH s AS (
  SELECT run, sum(calls) AS calls, sum(hit) AS hit, sum(read) AS rd, sum(dirtied) AS dirtied,
         sum(wal_records) AS wrec, sum(wal_bytes) AS wbytes
    FROM floor.statements WHERE toplevel AND query LIKE 'INSERT INTO p2pay.payments%' GROUP BY run),
w AS (
  SELECT run, sum(v) FILTER (WHERE metric = 'records') AS rec, sum(v) FILTER (WHERE metric = 'fpi') AS fpi,
         sum(v) FILTER (WHERE metric = 'bytes') AS bytes
    FROM floor.delta WHERE kind = 'wal' GROUP BY run),
m(k, label, a, b) AS (
  SELECT 1, 'mean latency, ms (pgbench, one client)', :'lat_a'::numeric, :'lat_b'::numeric
  UNION ALL SELECT 2, 'statement: shared buffers hit', sa.hit / :n, sb.hit / :n FROM s sa, s sb WHERE sa.run = 'a' AND sb.run = 'b'
  UNION ALL SELECT 3, 'statement: shared buffers read', sa.rd / :n, sb.rd / :n FROM s sa, s sb WHERE sa.run = 'a' AND sb.run = 'b'
  UNION ALL SELECT 4, 'statement: buffers dirtied', sa.dirtied / :n, sb.dirtied / :n FROM s sa, s sb WHERE sa.run = 'a' AND sb.run = 'b'
  UNION ALL SELECT 5, 'statement: WAL records', sa.wrec / :n, sb.wrec / :n FROM s sa, s sb WHERE sa.run = 'a' AND sb.run = 'b'
  UNION ALL SELECT 6, 'statement: WAL bytes', sa.wbytes / :n, sb.wbytes / :n FROM s sa, s sb WHERE sa.run = 'a' AND sb.run = 'b'
  UNION ALL SELECT 7, 'server: WAL records', wa.rec / :n, wb.rec / :n FROM w wa, w wb WHERE wa.run = 'a' AND wb.run = 'b'
  UNION ALL SELECT 8, 'server: WAL bytes', wa.bytes / :n, wb.bytes / :n FROM w wa, w wb WHERE wa.run = 'a' AND wb.run = 'b'
  UNION ALL SELECT 9, 'server: full-page images', wa.fpi / :n, wb.fpi / :n FROM w wa, w wb WHERE wa.run = 'a' AND wb.run = 'b')
SELECT '| per payment | (a) p2pay trigger | (b) bare insert | a − b | a / b |'
UNION ALL SELECT '|---|--:|--:|--:|--:|'
UNION ALL
SELECT format('| %s | %s | %s | %s | %s |', label, round(a, 3), round(b, 3), round(a - b, 3),
              CASE WHEN b > 0 THEN round(a / b, 2)::text || '×' ELSE '' END)
  FROM (SELECT * FROM m ORDER BY k) x;
SQL
echo
echo "Per payment, the WAL by record type (\`pg_waldump --stats=record\` over each run: the"
echo "records' own bytes, and the full-page images apart, which follow the checkpoint before each run):"
echo
report <<'SQL'
WITH w AS (
  SELECT type, sum(n) FILTER (WHERE run = 'a') AS a_n, sum(rec_bytes) FILTER (WHERE run = 'a') AS a_b,
         sum(n) FILTER (WHERE run = 'b') AS b_n, sum(rec_bytes) FILTER (WHERE run = 'b') AS b_b
    FROM floor.wal GROUP BY type)
SELECT '| record | (a) records | (a) bytes | (b) records | (b) bytes |'
UNION ALL SELECT '|---|--:|--:|--:|--:|'
UNION ALL
SELECT format('| %s | %s | %s | %s | %s |', type, round(coalesce(a_n, 0) / :n, 2), round(coalesce(a_b, 0) / :n, 1),
              round(coalesce(b_n, 0) / :n, 2), round(coalesce(b_b, 0) / :n, 1))
  FROM (SELECT * FROM w WHERE coalesce(a_n, 0) + coalesce(b_n, 0) >= :n / 100.0
         ORDER BY coalesce(a_b, 0) DESC, type) x
UNION ALL
SELECT format('| **all records** | %s | %s | %s | %s |', round(sum(a_n) / :n, 2), round(sum(a_b) / :n, 1),
              round(sum(b_n) / :n, 2), round(sum(b_b) / :n, 1)) FROM w
UNION ALL
SELECT format('| full-page images | | %s | | %s |',
              round((SELECT sum(fpi_bytes) FROM floor.wal WHERE run = 'a') / :n, 1),
              round((SELECT sum(fpi_bytes) FROM floor.wal WHERE run = 'b') / :n, 1));
SQL
echo
echo "Per payment, the statements run inside the INSERT (pg_stat_statements, not top level):"
echo
report <<'SQL'
SELECT '| contender | statement | calls | buffers hit | WAL records |'
UNION ALL SELECT '|---|---|--:|--:|--:|'
UNION ALL
SELECT format('| %s | `%s` | %s | %s | %s |', CASE run WHEN 'a' THEN '(a)' ELSE '(b)' END,
              CASE WHEN length(query) > 90 THEN left(query, 87) || '...' ELSE query END,
              round(calls::numeric / :n, 3), round(hit::numeric / :n, 2), round(wal_records::numeric / :n, 2))
  FROM (SELECT * FROM floor.statements WHERE NOT toplevel AND calls >= :n / 200.0
         ORDER BY run, calls DESC, hit DESC) x;
SQL

# The steps of an insert whose time, callees included, the profile shows:
# the executor's, the trigger's (p2pay_*, record_payment), the foreign-key
# checks (AfterTriggerEndQuery) and the commit; and the primitives they
# share.
STEPS=' (PostgresMain|ExecBRInsertTriggers|p2pay_score_payment|p2pay_lookup_references|p2pay_lock_payment|p2pay_read_facts|p2pay_assemble_facts|record_payment|p2pay_read_money_flow|p2pay_cycle_candidates|p2pay_evaluate|ExecInsertIndexTuples|heap_insert|AfterTriggerEndQuery|CommitTransactionCommand|_bt_first|_bt_doinsert|index_fetch_heap|heap_page_prune_opt|heap_update|BufTableLookup|LockAcquireExtended|RelationGetNumberOfBlocksInFork|ExecInitNode|XLogInsert|secure_read|secure_write)$'
if [ -n "$PERF" ]; then
  say "perf: $PERF_SECONDS s of $PERF_CLIENTS pgbench clients through the trigger"
  maxid=$(bench_value "SELECT coalesce(max(id), 0) FROM p2pay.payments")
  as_pg pgbench -n -M prepared -c "$PERF_CLIENTS" -j "$PERF_CLIENTS" -T $((PERF_SECONDS + 3)) \
    -f "$WORK/pay.sql" "$BENCH_DB" >"$WORK/perf-pgbench.log" 2>&1 &
  bench_pid=$!
  sleep 1
  pids=$(bench_value "SELECT string_agg(pid::text, ',') FROM pg_stat_activity
                       WHERE datname = current_database() AND application_name = 'pgbench'")
  # Debian's postgres is built without frame pointers: the call chains
  # are unwound from the stack copied at each sample (DWARF), through the
  # .eh_frame that stripping keeps.
  perf record -q -F 499 --call-graph dwarf,32768 -p "$pids" -o "$WORK/perf.data" -- sleep "$PERF_SECONDS" \
    2>"$WORK/perf-record.log" || { cat "$WORK/perf-record.log" >&2; exit 1; }
  wait "$bench_pid" || { cat "$WORK/perf-pgbench.log" >&2; exit 1; }
  # What perf reads symbols and unwinding tables from: every object the
  # profile names, as it is on disk, but p2pay.so as the server loaded it
  # (should it have been replaced since, the profile names it
  # "p2pay.so (deleted)" and the file on disk is another build).
  pp() { perf report -i "$WORK/perf.data" --symfs="$WORK/symfs" --kallsyms=/proc/kallsyms -g none --stdio "$@" 2>/dev/null; }
  perf report -i "$WORK/perf.data" --no-children --sort dso -g none --stdio -v 2>/dev/null |
    grep -v '^#' | grep -o '/.*' | sed 's/ *$//' | while IFS= read -r f; do
      mkdir -p "$WORK/symfs$(dirname "$f")"
      case $f in
        */p2pay.so*) as_root cp "$(loaded_library)" "$WORK/symfs$f" ;;
        *) ln -sf "$f" "$WORK/symfs$f" ;;
      esac
    done
  echo
  echo "## CPU profile"
  echo
  echo "\`perf record -F 499 --call-graph dwarf\` on the $PERF_CLIENTS pgbench backend(s) for $PERF_SECONDS s"
  echo "($(sed -n 's/^tps = \([0-9.]*\) (without.*/\1/p' "$WORK/perf-pgbench.log") payments/s while recorded, through the trigger)."
  echo "postgres is stripped: its exported functions resolve (.dynsym), its static ones show as"
  echo "addresses; p2pay.so is built with -g. Self time, top symbols (\`perf report --no-children --sort symbol\`):"
  echo
  echo '```'
  pp --no-children --sort symbol --percent-limit 0.7 | grep -v '^#' | grep -v '^$' | sed 's/ *-  *- *$//' | head -n 30
  echo '```'
  echo
  echo "By object (\`--sort dso\`):"
  echo
  echo '```'
  pp --no-children --sort dso --percent-limit 0.5 | grep -v '^#' | grep -v '^$' | sed 's/ *-  *- *$//' | head -n 12
  echo '```'
  echo
  echo "Time under each step, callees included (\`perf report --children\`):"
  echo
  echo '```'
  pp --children --sort symbol | sed 's/ *-  *- *$//' | grep -E "$STEPS" || true
  echo '```'
  echo
  echo "The samples by step (bench/floor_profile.py over \`perf script\`):"
  echo
  perf script -i "$WORK/perf.data" --symfs="$WORK/symfs" --kallsyms=/proc/kallsyms 2>/dev/null | python3 bench/floor_profile.py
  bench_forget_since "$maxid"
fi
