#!/usr/bin/env bash
# bench/stream.sh OUT.md: the stream part of `make bench`.
#
# Measures the p2pay logical decoding output plugin on a running cluster
# (PGHOST, PGPORT, PGUSER; wal_level = logical, p2pay preloaded, and p2pay,
# wal2json and test_decoding allowed as output plugins):
#
#   1. decode throughput: the WAL of STREAM_TXNS single-payment transactions
#      scored by the trigger, STREAM_FLAGGED of them flagged, decoded through
#      pg_logical_slot_peek_changes by p2pay, wal2json (with and without
#      add-tables) and test_decoding, STREAM_ROUNDS rounds;
#   2. latency from commit to a line arriving at a pg_recvlogical consumer,
#      over STREAM_LATENCY_N flagged payments at STREAM_LATENCY_RATE a second;
#   3. the walsender's memory while one transaction of STREAM_BIG_ROWS
#      flagged payments is streamed through pg_recvlogical.
#
# Everything happens in its own database (STREAM_DB, default bench_stream)
# with slots named after it; both are dropped at the end, on failure too.
# The report, Markdown, goes to OUT.md and to stdout.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../scripts/lib.sh
. "$HERE/../scripts/lib.sh"   # puts the server's binaries on PATH
OUT=$(bench_part_out "$@")

TXNS=${STREAM_TXNS:-200000}
FLAGGED=${STREAM_FLAGGED:-0.01}
ROUNDS=${STREAM_ROUNDS:-5}
BIG_ROWS=${STREAM_BIG_ROWS:-1000000}
LAT_N=${STREAM_LATENCY_N:-2000}
LAT_RATE=${STREAM_LATENCY_RATE:-200}
DB=${STREAM_DB:-bench_stream}

require_counts TXNS ROUNDS BIG_ROWS LAT_N LAT_RATE
[[ $FLAGGED =~ ^(0(\.[0-9]+)?|1(\.0+)?|\.[0-9]+)$ ]] ||
  { echo "stream.sh: STREAM_FLAGGED must be a share between 0 and 1, not '$FLAGGED'" >&2; exit 2; }
[[ $DB =~ ^[a-z_][a-z0-9_]*$ ]] || { echo "stream.sh: STREAM_DB must be a plain name" >&2; exit 2; }

# Every session decodes with PostgreSQL 15's default reorder-buffer budget,
# whatever the cluster's configuration says.
WORK_MEM=64MB
export PGOPTIONS="${PGOPTIONS:-} -c logical_decoding_work_mem=$WORK_MEM"

# Accounts 0 .. USERS-1 make the approved payments: two halves of HALF
# accounts, one per pgbench client, so that the two clients never lock the
# same account.  Within its half, payer i always pays account i+1, so each
# payee has one payer (no fan-in), no payment goes back (no round trip or
# cycle), and each payer makes about 8 payments during the run, under the
# velocity limit of 10 an hour.  Amounts are 20-99 USD, under every amount
# rule (5 times any payer's mean is at least 100).
# The flagged payments come from a pool of their own, accounts USERS+1 ..
# USERS+FLAGGED_N+1: the j-th flagged payment is 15,000 USD from pool
# account j to pool account j+1, the first payment of each, which fires
# amount_limit and new_payee_high_amount (score 0.6): reviewed.
HALF=$(( (TXNS + 15) / 16 ))
[ "$HALF" -ge 50 ] || HALF=50
USERS=$((2 * HALF))
FLAGGED_PLANNED=$(awk -v t="$TXNS" -v f="$FLAGGED" 'BEGIN { printf "%d", t * f + 1e-9 }')
ACCOUNTS=$((USERS + FLAGGED_PLANNED + 2))
METHOD=00000000-0000-4000-8000-000000000001
FLAG_AMOUNT=15000

TMP=$(mktemp -d /tmp/p2pay-bench-stream.XXXXXX)
BG_PIDS=()

# psql on the bench database: stop at the first error, no psqlrc, no pager.
q() { psql -X -q -v ON_ERROR_STOP=1 -P pager=off -d "$DB" "$@"; }
# One value from a query.
val() { q -At -c "$1"; }
# drop_slot NAME: drop a slot once its consumer's walsender has let go of it
# (a stopped pg_recvlogical's walsender can take a moment to exit).
drop_slot() {
  local i
  for ((i = 0; i < 100; i++)); do
    [ "$(val "SELECT active FROM pg_replication_slots WHERE slot_name = '$1'")" = t ] || break
    sleep 0.1
  done
  q -c "SELECT pg_drop_replication_slot('$1')" >/dev/null
}
# The median of the numbers on stdin, one a line.
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
log() { echo "stream.sh: $*" >&2; }

# Drop this benchmark's slots (ending the walsenders of those still in use:
# they serve our own pg_recvlogical) and its database.
drop_all() {
  for _ in 1 2 3 4 5; do
    psql -X -q -At -d postgres -c "
      SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
       WHERE slot_name LIKE '${DB}\_%' AND active_pid IS NOT NULL" >/dev/null 2>&1 || true
    psql -X -q -At -d postgres -c "
      SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
       WHERE slot_name LIKE '${DB}\_%'" >/dev/null 2>&1 && break
    sleep 0.5
  done
  psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
}

# On any exit: stop what we started in the background, drop slots and
# database, remove the scratch directory.
cleanup() {
  local status=$? pid
  for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  drop_all
  rm -rf "$TMP"
  [ "$status" = 0 ] || log "failed (status $status)"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_active SLOT: wait until a walsender serves SLOT; print its pid.
wait_active() {
  local pid
  for _ in $(seq 100); do
    pid=$(val "SELECT active_pid FROM pg_replication_slots WHERE slot_name = '$1'")
    if [ -n "$pid" ]; then echo "$pid"; return; fi
    sleep 0.1
  done
  log "no walsender started for slot $1"; return 1
}

# stop_pid PID: end a background process we started, and reap it.
stop_pid() { kill -INT "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# ---------------------------------------------------------------------------
# Setup: database, users with the bank transfer method registered
# ---------------------------------------------------------------------------
drop_all
log "setting up $DB: $(commas "$ACCOUNTS") accounts"
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $DB" -c "ALTER DATABASE $DB SET TimeZone = 'UTC'"
q <<SQL
CREATE EXTENSION p2pay;
CREATE SCHEMA bench;
-- Account i's id.
CREATE FUNCTION bench.uid(i bigint) RETURNS uuid IMMUTABLE STRICT PARALLEL SAFE
  LANGUAGE sql AS \$\$ SELECT ('10000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid \$\$;
-- Which flagged payment payment n is (1, 2, ...), or 0 when it is not one:
-- the flagged share, spread evenly over the run.
CREATE FUNCTION bench.flag_no(n bigint) RETURNS bigint IMMUTABLE STRICT PARALLEL SAFE
  LANGUAGE sql AS \$\$
  SELECT CASE WHEN floor(n * $FLAGGED::numeric) > floor((n - 1) * $FLAGGED::numeric)
              THEN floor(n * $FLAGGED::numeric)::bigint ELSE 0 END \$\$;
-- Peek a slot's changes up to an LSN, consuming the output server-side;
-- the time is the peek's alone.
CREATE FUNCTION bench.decode(slot name, upto pg_lsn, VARIADIC options text[],
                             OUT out_rows bigint, OUT out_bytes bigint, OUT out_seconds float8)
  LANGUAGE plpgsql AS \$\$
DECLARE
  t0 timestamptz := clock_timestamp();
BEGIN
  SELECT count(*), coalesce(sum(octet_length(c.data)), 0) INTO out_rows, out_bytes
    FROM pg_logical_slot_peek_changes(slot, upto, NULL, VARIADIC options) c;
  out_seconds := extract(epoch FROM clock_timestamp() - t0);
END \$\$;

-- Accounts opened long ago (new_account_high_amount stays quiet).
INSERT INTO p2pay.users (id, first_name, last_name, email_address, created_at)
SELECT bench.uid(i), 'Bench', 'User ' || i, 'user' || i || '@bench.example', '2020-01-01'
  FROM generate_series(0, $ACCOUNTS - 1) i;
INSERT INTO p2pay.user_payment_methods (user_id, payment_method_id, details)
SELECT bench.uid(i), '$METHOD', 'bench account ' || i
  FROM generate_series(0, $ACCOUNTS - 1) i;
ANALYZE;
CHECKPOINT;
SQL

# One payment through the trigger.  pgbench keeps a client's variables from
# one transaction to the next: k counts the client's payments (from -D k=),
# and n = 1, 2, 3, ... numbers all payments across the two clients, to pick
# the flagged ones.  VALUES, not a SELECT: the plain form is the common one.
cat >"$TMP/payment.sql" <<SQL
\\set n :k * 2 + :client_id + 1
\\set payer :client_id * $HALF + :k % $HALF
\\set payee :client_id * $HALF + (:k + 1) % $HALF
\\set k :k + 1
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
VALUES (bench.uid(CASE WHEN bench.flag_no(:n) > 0 THEN $USERS + bench.flag_no(:n) ELSE :payer END),
        bench.uid(CASE WHEN bench.flag_no(:n) > 0 THEN $USERS + bench.flag_no(:n) + 1 ELSE :payee END),
        CASE WHEN bench.flag_no(:n) > 0 THEN $FLAG_AMOUNT ELSE 20 + :n % 80 END,
        'USD', '$METHOD');
SQL

# ---------------------------------------------------------------------------
# 1. Decode throughput
# ---------------------------------------------------------------------------
# The configurations, in the order of round 1; each round starts one further
# along, so no plugin always runs first (on a cold cache) or right after the
# same neighbour.
CONFIGS=(p2pay wal2json_payments wal2json_all test_decoding)
declare -A SLOT=(
  [p2pay]=${DB}_p2pay [wal2json_payments]=${DB}_wal2json
  [wal2json_all]=${DB}_wal2json [test_decoding]=${DB}_test_decoding)
declare -A OPTS=(
  [p2pay]="ARRAY[]::text[]"
  [wal2json_payments]="ARRAY['add-tables', 'p2pay.payments']"
  [wal2json_all]="ARRAY[]::text[]"
  [test_decoding]="ARRAY['skip-empty-xacts', '1']")
declare -A LABEL=(
  [p2pay]="p2pay | defaults (flagged only: min-decision review)"
  [wal2json_payments]="wal2json | format-version 1, add-tables p2pay.payments"
  [wal2json_all]="wal2json | format-version 1, all tables"
  [test_decoding]="test_decoding | skip-empty-xacts 1")

log "creating slots, then $(commas "$TXNS") payments through the trigger (pgbench, 2 clients)"
q -c "SELECT pg_create_logical_replication_slot('${DB}_p2pay', 'p2pay'),
             pg_create_logical_replication_slot('${DB}_wal2json', 'wal2json'),
             pg_create_logical_replication_slot('${DB}_test_decoding', 'test_decoding')" >/dev/null
START_LSN=$(val "SELECT pg_current_wal_lsn()")
INSERT_T0=$EPOCHREALTIME
pgbench -n -c 2 -j 2 -t $((TXNS / 2)) -D k=0 -f "$TMP/payment.sql" "$DB" >"$TMP/pgbench.log" 2>&1 ||
  { cat "$TMP/pgbench.log" >&2; exit 1; }
# An odd count: the last one, as client 0's next payment.
if [ $((TXNS % 2)) = 1 ]; then
  pgbench -n -c 1 -t 1 -D k=$((TXNS / 2)) -f "$TMP/payment.sql" "$DB" >>"$TMP/pgbench.log" 2>&1 ||
    { cat "$TMP/pgbench.log" >&2; exit 1; }
fi
INSERT_SECS=$(calc "$EPOCHREALTIME - $INSERT_T0")
# The end: where the last commit was inserted into the WAL.  With
# synchronous_commit off it may not be flushed yet, and decoding stops at
# the flushed end: a synchronous commit that writes WAL (a transactional
# message, past the end) flushes everything before it.
END_LSN=$(val "SELECT pg_current_wal_insert_lsn()")
val "SET synchronous_commit = on; SELECT pg_logical_emit_message(true, 'p2pay-bench', 'flush')" >/dev/null
WAL_MB=$(val "SELECT round(pg_wal_lsn_diff('$END_LSN', '$START_LSN') / 1048576.0, 1)")

# Did the payments get the decisions they were planned to get?
counts=$(val "
  SELECT count(*), count(*) FILTER (WHERE amount > 10000),
         count(*) FILTER (WHERE amount > 10000 AND decision = 'review'),
         count(*) FILTER (WHERE amount <= 10000 AND decision = 'approve'),
         count(*) FILTER (WHERE decision = 'review'),
         count(*) FILTER (WHERE decision = 'decline')
    FROM p2pay.payments")
IFS='|' read -r TOTAL PLANNED PLANNED_REVIEW OTHERS_APPROVED REVIEWS DECLINES <<<"$counts"
FLAGGED_N=$((REVIEWS + DECLINES))
WARNINGS=()
[ "$TOTAL" = "$TXNS" ] || WARNINGS+=("$TOTAL payments stored, $TXNS planned.")
[ "$PLANNED" = "$FLAGGED_PLANNED" ] || WARNINGS+=("$PLANNED flagged payments made, $FLAGGED_PLANNED planned.")
[ "$PLANNED_REVIEW" = "$PLANNED" ] ||
  WARNINGS+=("only $PLANNED_REVIEW of the $PLANNED payments over 10,000 USD were reviewed.")
[ "$OTHERS_APPROVED" = $((TOTAL - PLANNED)) ] ||
  WARNINGS+=("$((TOTAL - PLANNED - OTHERS_APPROVED)) payments meant to be approved were not: $(val "
    SELECT string_agg(format('%s %s', n, r), ', ' ORDER BY n DESC)
      FROM (SELECT reasons::text AS r, count(*) AS n FROM p2pay.payments
             WHERE amount <= 10000 AND decision <> 'approve' GROUP BY 1) s").")

log "decoding $WAL_MB MB of WAL: $ROUNDS rounds of ${#CONFIGS[@]} configurations"
: >"$TMP/decode.tsv"
for ((r = 0; r < ROUNDS; r++)); do
  for ((k = 0; k < ${#CONFIGS[@]}; k++)); do
    c=${CONFIGS[$(((k + r) % ${#CONFIGS[@]}))]}
    result=$(val "SELECT * FROM bench.decode('${SLOT[$c]}', '$END_LSN', VARIADIC ${OPTS[$c]})")
    IFS='|' read -r rows bytes secs <<<"$result"
    printf '%s\t%s\t%s\t%s\t%s\n' "$c" "$((r + 1))" "$secs" "$rows" "$bytes" >>"$TMP/decode.tsv"
    log "  round $((r + 1)) $c: $(calc "$secs" 3) s, $rows rows"
  done
done
q -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
       WHERE slot_name IN ('${DB}_p2pay', '${DB}_wal2json', '${DB}_test_decoding')" >/dev/null

declare -A MEDIAN ROWS BYTES SPREAD
for c in "${CONFIGS[@]}"; do
  MEDIAN[$c]=$(awk -F'\t' -v c="$c" '$1 == c { print $3 }' "$TMP/decode.tsv" | median)
  SPREAD[$c]=$(awk -F'\t' -v c="$c" '$1 == c { print $3 }' "$TMP/decode.tsv" |
    sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.3f–%.3f", lo, hi }')
  # Every round must have produced the same output.
  [ "$(awk -F'\t' -v c="$c" '$1 == c { print $4, $5 }' "$TMP/decode.tsv" | sort -u | wc -l)" = 1 ] ||
    WARNINGS+=("$c produced different output in different rounds.")
  read -r rows bytes < <(awk -F'\t' -v c="$c" '$1 == c { print $4, $5; exit }' "$TMP/decode.tsv")
  ROWS[$c]=$rows BYTES[$c]=$bytes
done
[ "${ROWS[p2pay]}" = "$FLAGGED_N" ] ||
  WARNINGS+=("p2pay emitted ${ROWS[p2pay]} lines for $FLAGGED_N flagged payments.")
# How many times the transactions per second of p2pay config B's are.
speedup() { calc "${MEDIAN[$1]} / ${MEDIAN[p2pay]}"; }
holds() { awk -v x="$1" -v t="$2" 'BEGIN { print (x >= t) ? "holds" : "does not hold" }'; }

# ---------------------------------------------------------------------------
# 2. Latency from commit to arrival at pg_recvlogical
# ---------------------------------------------------------------------------
LAT_SLOT=${DB}_latency
log "latency: $LAT_N flagged payments at $LAT_RATE/s through pg_recvlogical"
q -c "SELECT pg_create_logical_replication_slot('$LAT_SLOT', 'p2pay')" >/dev/null
# Flagged whatever else fires (review or decline, both are emitted).
cat >"$TMP/flagged.sql" <<SQL
\\set payer :k % $HALF
\\set k :k + 1
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
VALUES (bench.uid(:payer), bench.uid((:payer + 1) % $HALF), $FLAG_AMOUNT, 'USD', '$METHOD');
SQL
mkfifo "$TMP/latency.fifo"
timeout $((LAT_N / LAT_RATE + 60)) python3 "$HERE/latency.py" latency "$LAT_N" "$TMP/latency.ready" \
  <"$TMP/latency.fifo" >"$TMP/latency.out" &
LAT_PY=$!; BG_PIDS+=("$LAT_PY")
# -F 0: no fsync of the output (it is a pipe); -s 1: feedback each second,
# which does not delay delivery.
pg_recvlogical -d "$DB" -S "$LAT_SLOT" --start -f - -F 0 -s 1 -o include-timestamp=true \
  >"$TMP/latency.fifo" 2>"$TMP/latency.err" &
LAT_RECV=$!; BG_PIDS+=("$LAT_RECV")
wait_active "$LAT_SLOT" >/dev/null
wait_file "$TMP/latency.ready"
# Durable commits, as in production: with synchronous_commit off the
# walsender sends a commit only once the WAL writer has flushed it (every
# wal_writer_delay, 200 ms by default), which would be the latency measured.
PGOPTIONS="$PGOPTIONS -c synchronous_commit=on" \
  pgbench -n -c 1 -j 1 -R "$LAT_RATE" -t "$LAT_N" -D k=0 -f "$TMP/flagged.sql" "$DB" >"$TMP/pgbench-latency.log" 2>&1 ||
  { cat "$TMP/pgbench-latency.log" >&2; exit 1; }
wait "$LAT_PY" || { log "the latency consumer failed"; cat "$TMP/latency.err" >&2; exit 1; }
stop_pid "$LAT_RECV"
read -r LAT_LINES LAT_P50 LAT_P99 LAT_MAX LAT_MEAN <"$TMP/latency.out"
[ "$LAT_LINES" = "$LAT_N" ] || { log "$LAT_LINES of $LAT_N lines arrived"; cat "$TMP/latency.err" >&2; exit 1; }
drop_slot "$LAT_SLOT"

# ---------------------------------------------------------------------------
# 3. Walsender memory over one transaction of BIG_ROWS flagged payments
# ---------------------------------------------------------------------------
# memory_run NAME PLUGIN LINES [OPTION...]: a fresh slot of PLUGIN, a
# pg_recvlogical consumer on it connected and idle, the walsender's memory
# sampled from then on; one transaction of BIG_ROWS pre-scored flagged
# payments (triggers off: the scoring trigger would take minutes for a
# million rows in one statement); sampling ends when the consumer has read
# LINES lines.  Appends "NAME lines first_arrival last_arrival insert_start
# commit" to $TMP/memory.txt; the samples are in $TMP/NAME.rss.
memory_run() {
  local name=$1 plugin=$2 lines=$3 slot=${DB}_$1 py recv walsender sampler t0 t1 got first last
  shift 3
  q -c "SELECT pg_create_logical_replication_slot('$slot', '$plugin')" >/dev/null
  mkfifo "$TMP/$name.fifo"
  timeout $((lines / 4000 + 120)) python3 "$HERE/latency.py" count "$lines" "$TMP/$name.ready" \
    <"$TMP/$name.fifo" >"$TMP/$name.out" &
  py=$!; BG_PIDS+=("$py")
  pg_recvlogical -d "$DB" -S "$slot" --start -f - -F 0 -s 10 "$@" >"$TMP/$name.fifo" 2>"$TMP/$name.err" &
  recv=$!; BG_PIDS+=("$recv")
  walsender=$(wait_active "$slot")
  wait_file "$TMP/$name.ready"
  sample_rss "$walsender" "$TMP/$name.rss" "$TMP/$name.stop" &
  sampler=$!; BG_PIDS+=("$sampler")
  sleep 0.5
  t0=$EPOCHREALTIME
  q <<SQL
BEGIN;
SET LOCAL session_replication_role = replica;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id,
                            risk_score, decision, is_approved, reasons, amount_base, ruleset_version)
SELECT bench.uid(g % $USERS), bench.uid((g + 1) % $USERS), $FLAG_AMOUNT, 'USD', '$METHOD',
       0.5, 'review', false, '{amount_limit}', $FLAG_AMOUNT,
       (SELECT max(version) FROM p2pay.ruleset)
  FROM generate_series(1, $BIG_ROWS) g;
COMMIT;
SQL
  t1=$EPOCHREALTIME
  wait "$py" || { log "the $name consumer failed"; cat "$TMP/$name.err" >&2; return 1; }
  touch "$TMP/$name.stop"
  wait "$sampler" || true
  stop_pid "$recv"
  read -r got first last <"$TMP/$name.out"
  [ "$got" = "$lines" ] || { log "$name: $got of $lines lines arrived"; cat "$TMP/$name.err" >&2; return 1; }
  drop_slot "$slot"
  echo "$name $got $first $last $t0 $t1" >>"$TMP/memory.txt"
}

# memory_figures NAME: from NAME's samples, VmRSS and RssAnon (MB) before
# the insert (the last sample before it began), at commit (the last before
# it returned: what the reorder buffer had queued) and at the peak, and the
# number of samples.
memory_figures() {
  local t0 t1
  read -r _ _ _ _ t0 t1 < <(awk -v n="$1" '$1 == n' "$TMP/memory.txt")
  awk -v t0="$t0" -v t1="$t1" '
    $1 < t0 { before = $2; abefore = $3 }
    $1 < t1 { commit = $2; acommit = $3 }
    { if ($2 > peak) peak = $2; if ($3 > apeak) apeak = $3 }
    END { printf "%.1f %.1f %.1f %.1f %.1f %.1f %d\n", before / 1024, commit / 1024, peak / 1024,
          abefore / 1024, acommit / 1024, apeak / 1024, NR }' "$TMP/$1.rss"
}

log "memory: one transaction of $(commas "$BIG_ROWS") flagged payments through pg_recvlogical, p2pay then test_decoding"
BIG_WORK_MEM=$(val "SHOW logical_decoding_work_mem")
: >"$TMP/memory.txt"
memory_run big_p2pay p2pay "$BIG_ROWS"
# The reorder buffer holds up to logical_decoding_work_mem of changes before
# it spills: the same with a smaller budget.
SMALL_WORK_MEM=16MB
PGOPTIONS="$PGOPTIONS -c logical_decoding_work_mem=$SMALL_WORK_MEM" memory_run big_p2pay_small p2pay "$BIG_ROWS"
# The reference: the same procedure with a second such transaction; BEGIN
# and COMMIT are a line each.
memory_run big_test_decoding test_decoding $((BIG_ROWS + 2)) -o skip-empty-xacts=1

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------
PG_VERSION=$(val "SHOW server_version")
FSYNC=$(val "SHOW fsync")
{
  echo "## Stream: logical decoding"
  echo
  echo "PostgreSQL $PG_VERSION, fsync = $FSYNC, logical_decoding_work_mem = $WORK_MEM (the default, set for every session)."
  echo "Sizes: STREAM_TXNS=$TXNS, STREAM_FLAGGED=$FLAGGED, STREAM_ROUNDS=$ROUNDS,"
  echo "STREAM_LATENCY_N=$LAT_N at STREAM_LATENCY_RATE=$LAT_RATE/s, STREAM_BIG_ROWS=$BIG_ROWS;"
  echo "$(commas "$USERS") accounts making the approved payments (two halves, one per pgbench client, each account"
  echo "paying the next one), $(commas "$((FLAGGED_PLANNED + 2))") more making the flagged ones (one each)."
  echo
  echo "### Decode throughput"
  echo
  echo "The WAL of $(commas "$TOTAL") single-payment transactions inserted through the scoring trigger"
  echo "(pgbench, 2 clients, $(commas "$(calc "$TOTAL / $INSERT_SECS" 0)") payments/s with the three slots present), state-table writes"
  echo "included: $WAL_MB MB. Decisions: $(commas "$REVIEWS") review, $(commas "$DECLINES") decline,"
  echo "$(commas "$((TOTAL - REVIEWS - DECLINES))") approve: $(calc "100 * $FLAGGED_N / $TOTAL") % flagged."
  echo "Each configuration decodes the same WAL with \`pg_logical_slot_peek_changes(slot, '$END_LSN', NULL, options)\`"
  echo "(fixed end, so later WAL such as autovacuum's is never included), its output consumed server-side by"
  echo "\`count(*), sum(octet_length(data))\`, timed with \`clock_timestamp()\` around the call;"
  echo "$ROUNDS rounds, each running the four in turn, starting one further along the list each round."
  echo
  echo "| plugin | options | median s | range s | transactions/s | output rows | output bytes |"
  echo "|---|---|--:|--:|--:|--:|--:|"
  for c in "${CONFIGS[@]}"; do
    echo "| ${LABEL[$c]} | $(calc "${MEDIAN[$c]}" 3) | ${SPREAD[$c]} | $(commas "$(calc "$TOTAL / ${MEDIAN[$c]}" 0)") | $(commas "${ROWS[$c]}") | $(commas "${BYTES[$c]}") |"
  done
  echo
  echo "| p2pay's transactions/s against | ratio | target | |"
  echo "|---|--:|--:|---|"
  echo "| wal2json, add-tables p2pay.payments | $(speedup wal2json_payments)× | ≥ 2× | $(holds "$(speedup wal2json_payments)" 2) |"
  echo "| wal2json, all tables | $(speedup wal2json_all)× | | |"
  echo "| test_decoding | $(speedup test_decoding)× | ≥ 1.3× | $(holds "$(speedup test_decoding)" 1.3) |"
  echo
  echo "### Latency, commit to pg_recvlogical"
  echo
  echo "$(commas "$LAT_N") flagged payments, one per transaction, synchronous_commit on, at $LAT_RATE/s (pgbench -R, 1 client), into"
  echo "\`pg_recvlogical --start -f - -F 0 -s 1 -o include-timestamp=true\` on a fresh p2pay slot, piped into"
  echo "bench/latency.py; latency = arrival time of the line − its \`commit_time\` (same machine, same clock)."
  echo
  echo "| lines | p50 ms | p99 ms | max ms | mean ms | target p99 | |"
  echo "|--:|--:|--:|--:|--:|--:|---|"
  echo "| $(commas "$LAT_LINES") | $LAT_P50 | $LAT_P99 | $LAT_MAX | $LAT_MEAN | < 50 ms | $(awk -v x="$LAT_P99" 'BEGIN { print (x < 50) ? "holds" : "does not hold" }') |"
  echo
  echo "### Walsender memory, one transaction of $(commas "$BIG_ROWS") flagged payments"
  echo
  echo "For each plugin, a fresh slot and a \`pg_recvlogical --start -f - -F 0\` consumer (bench/latency.py counting"
  echo "lines), connected and idle; then one transaction inserting $(commas "$BIG_ROWS") pre-scored payments"
  echo "(\`INSERT … SELECT\`, \`session_replication_role = replica\`, decision review); logical_decoding_work_mem"
  echo "in the walsender as given. Its /proc status is sampled every 100 ms from before the insert until"
  echo "the consumer has every row. RssAnon is the walsender's private memory; VmRSS adds the shared memory"
  echo "and files it touched. \"At commit\" is the last sample before the insert returned: what PostgreSQL's"
  echo "reorder buffer had queued by then (it spills to disk past logical_decoding_work_mem); the output"
  echo "plugin only runs after the commit. p2pay runs twice, at the default budget and at $SMALL_WORK_MEM;"
  echo "test_decoding is the reference: the same procedure, another such transaction."
  echo
  echo "| plugin | rows received | insert s | commit → last row s | VmRSS before → at commit → peak MB | growth MB | RssAnon before → at commit → peak MB | target growth | |"
  echo "|---|--:|--:|--:|--:|--:|--:|--:|---|"
  for name in big_p2pay big_p2pay_small big_test_decoding; do
    read -r _ got first last t0 t1 < <(awk -v n="$name" '$1 == n' "$TMP/memory.txt")
    read -r before commit peak abefore acommit apeak samples < <(memory_figures "$name")
    growth=$(calc "$peak - $before" 1)
    label="p2pay, logical_decoding_work_mem $BIG_WORK_MEM"
    [ "$name" != big_p2pay_small ] || label="p2pay, logical_decoding_work_mem $SMALL_WORK_MEM"
    [ "$name" != big_test_decoding ] || { label="test_decoding, logical_decoding_work_mem $BIG_WORK_MEM"; got=$((got - 2)); }
    target='< 50 MB'; verdict=$(awk -v x="$growth" 'BEGIN { print (x < 50) ? "holds" : "does not hold" }')
    [ "$name" != big_test_decoding ] || { target=''; verdict="($samples samples)"; }
    [ "$name" = big_test_decoding ] || verdict="$verdict ($samples samples)"
    echo "| $label | $(commas "$got") | $(calc "$t1 - $t0" 1) | $(calc "$last - $t1" 1) | $before → $commit → $peak | $growth | $abefore → $acommit → $apeak | $target | $verdict |"
  done
  if [ ${#WARNINGS[@]} -gt 0 ]; then
    echo
    for w in "${WARNINGS[@]}"; do echo "**Warning:** $w"; echo; done
  fi
} >"$OUT"
cat "$OUT"
