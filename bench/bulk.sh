#!/usr/bin/env bash
# bench/bulk.sh OUT.md: the bulk part of `make bench`.
#
# Does a bulk load scored by the trigger go through in one transaction?
# BENCH_BULK payments between BENCH_BULK_ACCOUNTS accounts (random payer and
# payee, amounts drawn as make bench draws its history's, created_at rising
# over the three days before the run), the same payments each time:
#
#   reference  the first min(BENCH_BULK, 100,000) in transactions of 1,000,
#              in one session (a procedure that commits after each 1,000);
#   A          all of them in one COPY p2pay.payments FROM a CSV file;
#   B          all of them in one INSERT INTO p2pay.payments SELECT from a
#              staging table.
#
# Each starts from no payments and no state (TRUNCATE p2pay.payments, which
# empties the state), in a session with statement_timeout =
# BENCH_BULK_TIMEOUT seconds, on the running cluster of make bench (PGHOST,
# PGPORT, PGUSER; p2pay preloaded) with its max_locks_per_transaction.  The
# loading backend's RssAnon is sampled every 0.5 s, and how many payments it
# has numbered (p2pay.payments_id_seq) every second.  During A and B another
# session inserts one payment per transaction every 100 ms between the same
# accounts (bench/trickle.py).  After each load, finished or rolled back,
# the per-account state is compared, row for row, with what
# p2pay.rebuild_state() counts from the payments stored.
#
# A load that fails or times out is reported as such, and the next one
# runs.  Everything happens in its own database (BULK_DB, default
# bench_bulk), dropped at the end.  The report, Markdown, goes to OUT.md and
# to stdout; the exit status is 3 when a state differed from what
# rebuild_state() counts, or the payments stored from those loaded.
#   BENCH_BULK (1000000), BENCH_BULK_ACCOUNTS (100000), BENCH_BULK_TIMEOUT
#   (1800), BULK_DB (bench_bulk)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../scripts/lib.sh
. "$HERE/../scripts/lib.sh"   # puts the server's binaries on PATH
OUT=$(bench_part_out "$@")

: "${BENCH_BULK:=1000000}" "${BENCH_BULK_ACCOUNTS:=100000}" "${BENCH_BULK_TIMEOUT:=1800}"
require_counts BENCH_BULK BENCH_BULK_ACCOUNTS BENCH_BULK_TIMEOUT
N=$BENCH_BULK ACCOUNTS=$BENCH_BULK_ACCOUNTS TIMEOUT=$BENCH_BULK_TIMEOUT
DB=${BULK_DB:-bench_bulk}
[ "$ACCOUNTS" -ge 2 ] || { echo "bulk.sh: BENCH_BULK_ACCOUNTS must be at least 2" >&2; exit 2; }
[[ $DB =~ ^[a-z_][a-z0-9_]*$ ]] || { echo "bulk.sh: BULK_DB must be a plain name" >&2; exit 2; }

BATCH=1000
REF_N=$((N < 100000 ? N : 100000))
METHOD=00000000-0000-4000-8000-000000000001
COLS="transaction_id, payer_id, payee_id, amount, currency, payment_method_id, created_at"
# How often the concurrent session pays, in seconds.
TRICKLE_EVERY=0.1
# Debian's interpreter, which python3-psycopg2 serves, whatever else is
# first on PATH.
PYTHON=/usr/bin/python3

# Written by the server (COPY TO and FROM a file): the cluster's user owns it.
TMP=$(make_workdir bench-bulk)
BG_PIDS=()

# psql on the bench database: stop at the first error, no psqlrc, no pager.
q() { psql -X -q -v ON_ERROR_STOP=1 -P pager=off -d "$DB" "$@"; }
# One value from a query.
val() { q -At -c "$1"; }
log() { echo "bulk.sh: $*" >&2; }
# A payment count or rate, rounded, with thousands separators.
num() { commas "$(calc "$1" 0)"; }

# On any exit: stop what we started in the background, drop the database,
# remove the scratch directory.
cleanup() {
  local status=$? pid
  for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$TMP"
  [ "$status" = 0 ] || [ "$status" = 3 ] || log "failed (status $status)"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------
# Setup: the accounts, and the payments in a staging table and a CSV file
# ---------------------------------------------------------------------------
log "setting up $DB: $(commas "$ACCOUNTS") accounts, $(commas "$N") payments"
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "SET client_min_messages = warning" \
  -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
{ echo "CREATE EXTENSION p2pay;"; bench_accounts_sql "$ACCOUNTS" "$METHOD"; } | q
q >/dev/null <<SQL
-- Payment n of 1 .. N, in created_at order: a random payer pays another
-- account (never itself); transaction ids in time order.
SELECT setseed(0.25);
CREATE TABLE bench.bulk AS
SELECT i AS n, ('00000000-0000-7000-8000-' || lpad(to_hex(i), 12, '0'))::uuid AS transaction_id,
       bench.uid(payer) AS payer_id, bench.uid(1 + (payer - 1 + off) % $ACCOUNTS) AS payee_id,
       round((5 + 2000 * random() ^ 6)::numeric, 2) AS amount, 'USD'::char(3) AS currency,
       '$METHOD'::uuid AS payment_method_id,
       now() - interval '1 hour' - ($N - i) * (interval '3 days' / $N) AS created_at
  FROM (SELECT i, 1 + floor(random() * $ACCOUNTS)::bigint AS payer,
               1 + floor(random() * ($ACCOUNTS - 1))::bigint AS off
          FROM generate_series(1, $N) i) g;
ALTER TABLE bench.bulk ADD PRIMARY KEY (n);
VACUUM ANALYZE bench.bulk;
COPY (SELECT $COLS FROM bench.bulk ORDER BY n) TO '$TMP/payments.csv' (FORMAT csv);
-- The reference: payments 1 .. upto, a transaction for each batch.
CREATE PROCEDURE bench.load_in_batches(upto bigint, batch int) LANGUAGE plpgsql AS \$\$
BEGIN
  FOR k IN 0 .. upto - 1 BY batch LOOP
    INSERT INTO p2pay.payments ($COLS)
    SELECT $COLS FROM bench.bulk WHERE n > k AND n <= least(k + batch, upto) ORDER BY n;
    COMMIT;
  END LOOP;
END \$\$;
SQL
LOCKS=$(val "SHOW max_locks_per_transaction")
CONNECTIONS=$(val "SHOW max_connections")

# How many payments p2pay.payments has numbered so far (rolled back or not).
numbered() { val "SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM p2pay.payments_id_seq"; }

# sample_numbered FILE STOPFILE: every second, append "time numbered" to
# FILE until STOPFILE exists (a query that fails, with the lock table full,
# is skipped).
sample_numbered() {
  local v
  while [ ! -e "$2" ]; do
    if v=$(numbered 2>/dev/null); then echo "$EPOCHREALTIME $v" >>"$1"; fi
    sleep 1
  done
}

# check_state: the per-account state against what rebuild_state() counts
# from the payments stored; prints the rows that differ, per table:
# "account_stats pair_stats account_daily".
check_state() {
  q -At <<SQL | tail -n 1
CREATE TEMP TABLE kept_account AS TABLE p2pay.account_stats;
CREATE TEMP TABLE kept_pair AS TABLE p2pay.pair_stats;
CREATE TEMP TABLE kept_daily AS TABLE p2pay.account_daily;
SET maintenance_work_mem = '1GB';
SELECT p2pay.rebuild_state();
SELECT concat_ws(' ',
  (SELECT count(*) FROM ((TABLE kept_account EXCEPT ALL TABLE p2pay.account_stats)
                         UNION ALL (TABLE p2pay.account_stats EXCEPT ALL TABLE kept_account)) d),
  (SELECT count(*) FROM ((TABLE kept_pair EXCEPT ALL TABLE p2pay.pair_stats)
                         UNION ALL (TABLE p2pay.pair_stats EXCEPT ALL TABLE kept_pair)) d),
  (SELECT count(*) FROM ((TABLE kept_daily EXCEPT ALL TABLE p2pay.account_daily)
                         UNION ALL (TABLE p2pay.account_daily EXCEPT ALL TABLE kept_daily)) d));
SQL
}

# ---------------------------------------------------------------------------
# The loads
# ---------------------------------------------------------------------------
ROWS=() NOTES=() MISMATCH=0 REF_RATE=

# run_load NAME LABEL PAYMENTS CONCURRENT STATEMENT: from no payments, one
# session runs STATEMENT, which loads PAYMENTS payments, while its memory
# and progress are sampled and, if CONCURRENT is 1, bench/trickle.py pays
# beside it; then the state is checked.  Appends the report's row to ROWS
# and what else it found to NOTES; sets RATE (payments/s, empty unless the
# load finished).
run_load() {
  local name=$1 label=$2 expected=$3 concurrent=$4 statement=$5
  local before trickle='' load bpid='' samplers=() status=0 t0 t1 secs sqlstate message
  local ok=0 attempts=0 in_ok in_err codes max_ms code msg after processed outcome rate vs
  local memory quarters state ctext='—' diff stored
  local -a d
  q -c "TRUNCATE p2pay.payments" -c "CHECKPOINT" >/dev/null
  before=$(numbered)
  if [ "$concurrent" = 1 ]; then
    PGDATABASE=$DB timeout $((TIMEOUT + 600)) "$PYTHON" "$HERE/trickle.py" "$ACCOUNTS" "$METHOD" "$TRICKLE_EVERY" \
      "$TMP/$name.trickle-stop" "$TMP/$name.trickle-ready" >"$TMP/$name.trickle" 2>"$TMP/$name.trickle-err" &
    trickle=$!; BG_PIDS+=("$trickle")
    wait_file "$TMP/$name.trickle-ready"
  fi
  # A second's nap before the load, so that the samplers see the backend
  # as it was before it.  No ON_ERROR_STOP: the load's error is reported
  # after it.
  cat >"$TMP/$name.sql" <<SQL
SET statement_timeout = '${TIMEOUT}s';
SELECT pg_sleep(1);
SELECT 'start ' || extract(epoch FROM clock_timestamp());
$statement;
\\echo result :SQLSTATE :ROW_COUNT
SELECT 'stop ' || extract(epoch FROM clock_timestamp());
\\echo message :LAST_ERROR_MESSAGE
SQL
  log "$label: $(commas "$expected") payments${trickle:+, one-payment transactions beside it}"
  PGAPPNAME=p2pay_bulk_$name psql -X -q -At -P pager=off -d "$DB" -f "$TMP/$name.sql" \
    >"$TMP/$name.out" 2>"$TMP/$name.err" &
  load=$!; BG_PIDS+=("$load")
  for _ in $(seq 100); do
    bpid=$(val "SELECT pid FROM pg_stat_activity WHERE application_name = 'p2pay_bulk_$name'" 2>/dev/null) || bpid=
    [ -z "$bpid" ] || break
    sleep 0.1
  done
  if [ -n "$bpid" ]; then
    sample_rss "$bpid" "$TMP/$name.rss" "$TMP/$name.stop" 0.5 &
    samplers+=($!)
  else
    log "$label: the loading backend was not found: no memory figures"
  fi
  sample_numbered "$TMP/$name.numbered" "$TMP/$name.stop" &
  samplers+=($!)
  BG_PIDS+=("${samplers[@]}")
  wait "$load" || status=$?
  touch "$TMP/$name.stop"
  wait "${samplers[@]}" 2>/dev/null || true
  if [ -n "$trickle" ]; then
    touch "$TMP/$name.trickle-stop"
    if ! wait "$trickle"; then
      log "$label: bench/trickle.py failed"; cat "$TMP/$name.trickle-err" >&2
      NOTES+=("$label: **bench/trickle.py failed**: $(tail -n 1 "$TMP/$name.trickle-err")")
    fi
  fi
  after=$(numbered)
  t0=$(sed -n 's/^start //p' "$TMP/$name.out")
  t1=$(sed -n 's/^stop //p' "$TMP/$name.out")

  # The concurrent payments: all of them (numbered, stored), and those in
  # flight while the load ran, which the report counts.
  if [ -n "$trickle" ]; then
    read -r attempts ok < <(awk '$1 != "message" { n++; if ($3 == "00000") k++ } END { print n + 0, k + 0 }' \
      "$TMP/$name.trickle")
    IFS=$'\t' read -r in_ok in_err codes max_ms < <(awk -v t0="${t0:-0}" -v t1="${t1:-9e18}" '
      $1 != "message" && $1 < t1 && $2 > t0 {
        if ($3 == "00000") ok++; else { err++; by[$3]++ }
        ms = ($2 - $1) * 1000; if (ms > max) max = ms
      }
      END {
        for (c in by) codes = codes (codes == "" ? "" : ", ") c " ×" by[c]
        printf "%d\t%d\t%s\t%.0f\n", ok, err, (codes == "" ? "-" : codes), max
      }' "$TMP/$name.trickle")
    ctext="$in_ok / $in_err"
    [ "$codes" = - ] || ctext+=" ($codes)"
    ctext+=" / $(commas "$max_ms")"
    while read -r _ code msg; do
      NOTES+=("$label: a concurrent one-payment transaction got $code: ${msg//|/\\|}")
    done < <(grep '^message ' "$TMP/$name.trickle")
  fi
  read -r sqlstate _ < <(sed -n 's/^result //p' "$TMP/$name.out") || true
  message=$(sed -n 's/^message //p' "$TMP/$name.out")
  # what it numbered, less the concurrent session's
  processed=$((after - before - attempts))
  [ "$processed" -ge 0 ] || processed=0
  RATE=
  if [ "$status" != 0 ] || [ -z "$t0" ] || [ -z "$t1" ] || [ -z "${sqlstate:-}" ]; then
    outcome="failed: psql exited with status $status: $(tail -n 1 "$TMP/$name.err")"
    secs=
  else
    secs=$(calc "$t1 - $t0" 1)
    if [ "$sqlstate" = 00000 ]; then
      outcome=finished
      processed=$expected
      RATE=$(calc "$expected / ($t1 - $t0)" 1)
    elif [ "$sqlstate" = 57014 ] && [[ $message == *"statement timeout"* ]]; then
      outcome="**timed out** (statement_timeout $TIMEOUT s), after ~$(commas "$processed") payments"
    else
      outcome="**failed: $sqlstate** ${message//|/\\|}, after ~$(commas "$processed") payments"
    fi
  fi
  log "$label: ${outcome//\*\*/}${secs:+, $secs s}"
  vs="—"
  if [ -n "$RATE" ]; then
    rate=$(num "$RATE")
    if [ "$name" = reference ]; then vs=1.00; elif [ -n "$REF_RATE" ]; then vs=$(calc "$RATE / $REF_RATE"); fi
  elif [ -n "$secs" ] && [ "$processed" -gt 0 ]; then
    rate="($(num "$processed / $secs"))"
    [ -z "$REF_RATE" ] || vs="($(calc "$processed / $secs / $REF_RATE"))"
  else
    rate="—" vs="—"
  fi

  # RssAnon: the last sample before the load began, and the peak
  memory="—"
  if [ -s "$TMP/$name.rss" ] && [ -n "$t0" ]; then
    memory=$(awk -v t0="$t0" 'NR == 1 || $1 < t0 { before = $3 } $3 > peak { peak = $3 }
                              END { printf "%.1f", (peak - before) / 1024 }' "$TMP/$name.rss")
  fi

  # payments/s in each quarter of the load's time, from the numbered samples
  if [ -n "$secs" ] && [ "$(calc "($secs >= 20)" 0)" = 1 ]; then
    quarters=$(awk -v t0="$t0" -v t1="$t1" -v n0="$before" -v n1="$after" '
      { t[NR] = $1; v[NR] = $2 }
      END {
        q = (t1 - t0) / 4; last = n0
        for (k = 1; k <= 4; k++) {
          at = last
          for (i = 1; i <= NR; i++) if (t[i] <= t0 + k * q && v[i] > at) at = v[i]
          if (k == 4 && n1 > at) at = n1
          print (at - last) / q
          last = at
        }
      }' "$TMP/$name.numbered" | while read -r x; do num "$x"; done | paste -sd/ | sed 's|/| / |g')
    NOTES+=("$label: payments/s in each quarter of its $secs s: $quarters.")
  fi

  # the state, against what rebuild_state() counts
  diff=$(check_state) || diff=
  if [ "$diff" = "0 0 0" ]; then
    state=yes
  elif [ -z "$diff" ]; then
    state="**check failed**"
    NOTES+=("**$label: comparing the state with rebuild_state()'s failed** (see the log).")
    log "after $label: comparing the state with rebuild_state()'s failed"
    MISMATCH=1
  else
    read -r -a d <<<"$diff"
    state="**NO ($((d[0] + d[1] + d[2])) differing rows)**"
    NOTES+=("**$label: the per-account state differs from what rebuild_state() counts from the payments stored**: account_stats ${d[0]}, pair_stats ${d[1]}, account_daily ${d[2]} rows.")
    log "MISMATCH after $label: the state differs from rebuild_state()'s in $diff rows (account_stats pair_stats account_daily)"
    MISMATCH=1
  fi
  if [ "$outcome" = finished ]; then
    stored=$(val "SELECT count(*) FROM p2pay.payments")
    if [ "$stored" != $((expected + ok)) ]; then
      NOTES+=("**$label: $stored payments stored, $((expected + ok)) expected** ($expected loaded, $ok concurrent).")
      log "MISMATCH after $label: $stored payments stored, $((expected + ok)) expected"
      MISMATCH=1
    fi
  fi

  ROWS+=("| $label | $outcome | ${secs:-—} | $rate | $vs | $memory | $ctext | $state |")
}

run_load reference "reference: transactions of $(commas "$BATCH") (the first $(commas "$REF_N"))" \
  "$REF_N" 0 "CALL bench.load_in_batches($REF_N, $BATCH)"
REF_RATE=$RATE
[ -n "$REF_RATE" ] || NOTES+=("**The reference did not finish**: no ratios.")
run_load copy "A: one COPY" "$N" 1 "COPY p2pay.payments ($COLS) FROM '$TMP/payments.csv' (FORMAT csv)"
run_load insert "B: one INSERT … SELECT" "$N" 1 \
  "INSERT INTO p2pay.payments ($COLS) SELECT $COLS FROM bench.bulk ORDER BY n"

# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------
{
  echo "## Bulk loads ($(commas "$N") payments over $(commas "$ACCOUNTS") accounts, one transaction each)"
  echo
  echo "The same payments in each load: random payer and payee, 5–2,005 USD, created_at over the 3 days before the run. Each load starts from no payments and no state, with max_locks_per_transaction = $LOCKS (max_connections = $CONNECTIONS) and statement_timeout = $TIMEOUT s. The reference is the first $(commas "$REF_N") payments in transactions of $(commas "$BATCH"), in one session. During A and B another session inserts one payment per transaction every $(calc "$TRICKLE_EVERY * 1000" 0) ms between the same accounts; the table counts those in flight while the load ran. The state is compared with what rebuild_state() counts after every load, finished or rolled back. Memory: the loading backend's RssAnon, its peak less its value before the load (sampled every 0.5 s). In parentheses: over the payments processed before the load failed (counted by the payments' identity sequence)."
  echo
  echo "| load | outcome | s | payments/s | vs 1,000-payment transactions | backend memory growth MB | concurrent one-payment transactions: ok / errors / max ms | state = rebuild_state() |"
  echo "|---|---|--:|--:|--:|--:|---|---|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "Targets: 1,000,000 payments over 100,000 accounts (here $(commas "$N") over $(commas "$ACCOUNTS")) in one COPY and in one INSERT … SELECT, through scoring, with the default max_locks_per_transaction, finish at ≥ 0.5× the per-payment rate of 1,000-payment transactions; the backend's memory grows by < 100 MB; a concurrent one-payment transaction gets no error."
  if [ ${#NOTES[@]} -gt 0 ]; then
    echo
    printf -- '- %s\n' "${NOTES[@]}"
  fi
  echo
} >"$OUT"
cat "$OUT"
[ "$MISMATCH" = 0 ] || { log "the state or the payments stored differed: see the report"; exit 3; }
