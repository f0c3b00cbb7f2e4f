#!/usr/bin/env bash
# make bench: how much does scoring cost the insert, does the cost stay flat
# as history grows, and how does the stream compare with the generic
# decoders?  Installs what is needed, builds and installs p2pay, starts a
# throwaway cluster, and prints Markdown tables, which it also writes to
# bench/results/latest.md.  Every comparison alternates its contenders within
# one run and reports medians over the rounds.
#
# Parts (BENCH_PARTS, comma-separated; all but bulk by default):
#   insert    payments between BENCH_USERS users with BENCH_HISTORY payments of
#             history, BENCH_CLIENTS pgbench clients: (a) the p2pay trigger,
#             (b) the bare insert (same table, indexes and foreign keys, the
#             scoring trigger disabled), (c) bench/plpgsql_rules.sql, the same
#             rules written by hand in PL/pgSQL; synchronous_commit off, and
#             (a) and (b) again with it on, for context
#   scaling   (a) and (b) at each history size of BENCH_SCALES
#   hot       (a)'s and (c)'s latency paying a payee with BENCH_HOT payments
#             in its 24-hour window, against paying ordinary payees (one
#             client)
#   backtest  p2pay.backtest() over the history, payments per second
#   http      POST /api/v1/payments through tools/p2pay-http (wrk, HTTP
#             keep-alive, BENCH_HTTP_CLIENTS connections) against (a), the
#             direct SQL insert, with as many pgbench clients
#   stream    bench/stream.sh: the p2pay plugin against wal2json and
#             test_decoding on the same WAL, end-to-end latency, walsender
#             memory (its sizes: STREAM_* variables, see that script)
#   bulk      bench/bulk.sh: BENCH_BULK payments between BENCH_BULK_ACCOUNTS
#             accounts in one COPY and in one INSERT ... SELECT through the
#             trigger, each against transactions of 1,000: finished or the
#             error, payments/s, the backend's memory growth, one-payment
#             transactions beside it, the state against rebuild_state()
#             (long: not in the default list)
#   profile   bench/floor.sh with FLOOR_PERF=1, run first, alone, on a
#             cluster of its own with BENCH_HISTORY payments of history
#             among BENCH_USERS users:
#             what one payment writes and reads, row by row and index entry
#             by index entry, against the bare insert, and a CPU profile of
#             the backend inserting through the trigger, by step (needs
#             perf; not in the default list)
#
# Options, as environment variables (make bench BENCH_PARTS=insert,hot):
#   BENCH_USERS (10000), BENCH_HISTORY (1000000), BENCH_SCALES
#   (100000,1000000,10000000), BENCH_CLIENTS (2), BENCH_SECONDS (10, per
#   pgbench run), BENCH_ROUNDS (3), BENCH_HTTP_CLIENTS (8), BENCH_HOT (200000), BENCH_HOT_ROUNDS (2),
#   STREAM_ROUNDS (3) and bench/stream.sh's other STREAM_*, BENCH_BULK
#   (1000000), BENCH_BULK_ACCOUNTS (100000), BENCH_BULK_TIMEOUT (1800, seconds
#   a load may take), BENCH_RESULTS
#   (bench/results/latest.md), BENCH_KEEP=1 (leave the cluster running).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

PARTS=${BENCH_PARTS:-insert,scaling,hot,backtest,http,stream}
USERS=${BENCH_USERS:-10000}
HISTORY=${BENCH_HISTORY:-1000000}
SCALES=${BENCH_SCALES:-100000,1000000,10000000}
CLIENTS=${BENCH_CLIENTS:-2}
HTTP_CLIENTS=${BENCH_HTTP_CLIENTS:-8}
SECS=${BENCH_SECONDS:-10}
ROUNDS=${BENCH_ROUNDS:-3}
HOT=${BENCH_HOT:-200000}
HOT_ROUNDS=${BENCH_HOT_ROUNDS:-2}
RESULTS=${BENCH_RESULTS:-bench/results/latest.md}
KEEP=${BENCH_KEEP:-}
BENCH_DB=p2pay_bench

has_part() { [[ ",$PARTS," == *",$1,"* ]]; }
for part in ${PARTS//,/ }; do
  case $part in
    insert|scaling|hot|backtest|http|stream|bulk|profile) ;;
    *) echo "make bench: BENCH_PARTS takes insert, scaling, hot, backtest, http, stream, bulk and profile, not '$part'" >&2
       exit 2 ;;
  esac
done

ensure_packages build-essential postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR \
  postgresql-$PG_MAJOR-wal2json python3 python3-psycopg2 wrk curl
# what is built and measured: the tree as it is now
BUILT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' with uncommitted changes')"
build_and_install

WORK=$(make_workdir bench)
HTTP_PID=
cleanup() {
  if [ -n "$HTTP_PID" ]; then kill "$HTTP_PID" 2>/dev/null || true; wait "$HTTP_PID" 2>/dev/null || true; fi
  if [ -n "$KEEP" ]; then
    echo "cluster left running in $WORK (PGHOST=$WORK PGPORT=$PGPORT PGUSER=postgres)"
  else
    stop_cluster "$WORK"
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

# The parts with a script of their own (bulk, profile): its exit status.  A
# failed one fails make bench once the report is written, which has what
# the script wrote of its own report and says that it failed.
declare -A PART_STATUS=([bulk]=0 [profile]=0)
declare -A PART_SCRIPT=([bulk]=bench/bulk.sh [profile]=bench/floor.sh)

# part_report PART REPORT HEADING: the part's report, and its failure.
part_report() {
  local status=${PART_STATUS[$1]}
  if [ -s "$2" ]; then
    cat "$2"
    echo
  else
    printf '## %s\n\n' "$3"
  fi
  if [ "$status" != 0 ]; then
    printf '%s failed (status %s).\n\n' "${PART_SCRIPT[$1]}" "$status"
  fi
}

# The floor and the profile, first and alone on the machine: bench/floor.sh
# on a cluster of its own, with the tree built and installed above; its
# report's headings one level down.
if has_part profile; then
  say "profile (bench/floor.sh)"
  FLOOR_INSTALLED=1 FLOOR_PERF=1 FLOOR_HISTORY=$HISTORY FLOOR_USERS=$USERS \
    bash bench/floor.sh >"$WORK/profile.out" || PART_STATUS[profile]=$?
  sed 's/^#/##/' "$WORK/profile.out" >"$WORK/profile.md"
fi

# Durable commits (fsync on), so that synchronous_commit = on means what it
# does in production; off by default, for the CPU-bound comparison.
export OUTPUT_PLUGINS='pgoutput, test_decoding, p2pay, wal2json'
export CLUSTER_CONF="fsync = on
synchronous_commit = off
shared_buffers = 4GB
max_wal_size = 16GB
checkpoint_timeout = 30min
max_connections = 50"
start_cluster "$WORK" "$(free_port)"
START=$(date +%s)

bench_create_db "$USERS"
bench_psql -f bench/plpgsql_rules.sql >/dev/null

bench_pay_script "$USERS" "$WORK/pay.sql"
# The same, to one hot payee (user USERS + 1).
cat >"$WORK/pay_hot.sql" <<EOF
\\set payer random(1, $USERS)
\\set cents random(500, 50000)
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
VALUES (bench.uid(:payer), bench.uid($USERS + 1), :cents / 100.0, 'USD', '$BENCH_BANK');
EOF
chown postgres: "$WORK"/*.sql 2>/dev/null || true

# use CONTENDER: a = p2pay, b = bare insert, c = PL/pgSQL
use() {
  case $1 in
    a) bench_psql -c "SELECT bench.use_p2pay()" >/dev/null ;;
    b) bench_psql -c "SELECT bench.use_p2pay()" -c "ALTER TABLE p2pay.payments DISABLE TRIGGER payments_score" >/dev/null ;;
    c) bench_psql -c "ALTER TABLE p2pay.payments ENABLE TRIGGER payments_score" -c "SELECT bench.use_plpgsql()" >/dev/null ;;
  esac
}

# run NAME SCRIPT CLIENTS [PGOPTIONS]: one pgbench run of SECS seconds;
# prints "tps p50_ms p99_ms".  The payments it inserted are deleted
# afterwards (with the triggers off) and the state restored, so that every
# run starts from the same history.
run() {
  local name=$1 script=$2 clients=$3 opts=${4:-} maxid out tps lat
  maxid=$(bench_value "SELECT coalesce(max(id), 0) FROM p2pay.payments")
  bench_psql -c "CHECKPOINT" >/dev/null
  mkdir -p "$WORK/log/$name"
  chown postgres: "$WORK/log/$name" 2>/dev/null || true
  out=$(cd "$WORK/log/$name" && PGOPTIONS="$opts" as_pg pgbench -n -M prepared -c "$clients" -j "$clients" \
    -T "$SECS" -l --log-prefix=tx -f "$script" "$BENCH_DB" 2>&1) || { echo "$out" >&2; return 1; }
  tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' <<<"$out")
  # per-transaction log: client, number, latency (µs), script, epoch, µs
  lat=$(cat "$WORK/log/$name"/tx* | awk '{print $3}' | sort -n |
    awk '{v[NR]=$1} END {printf "%.3f %.3f", v[int(NR*0.5)+1]/1000, v[int(NR*0.99)+1]/1000}')
  rm -rf "$WORK/log/$name"
  bench_forget_since "$maxid"
  printf '%.0f %s\n' "$tps" "$lat"
}

# col K "a b c" ...: the K-th field of each argument
col() { local k=$1 x; shift; for x in "$@"; do awk -v k="$k" '{print $k}' <<<"$x"; done; }

# median of the numbers given
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {if (NR % 2) print v[(NR+1)/2]; else printf "%.3f\n", (v[NR/2]+v[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

# compare LABEL CLIENTS OPTS CONTENDERS...: ROUNDS rounds, the contenders'
# order rotated each round; sets TPS_x, P50_x, P99_x (medians) and prints
# one table row per contender.
declare -A NAME=([a]="p2pay trigger" [b]="bare insert (no scoring)" [c]="PL/pgSQL trigger (bench/plpgsql_rules.sql)")
compare() {
  local label=$1 clients=$2 opts=$3; shift 3
  local cs=("$@") r i c res
  declare -A tps p50 p99
  for ((r = 0; r < ROUNDS; r++)); do
    for ((i = 0; i < ${#cs[@]}; i++)); do
      c=${cs[$(( (i + r) % ${#cs[@]} ))]}
      use "$c"
      res=$(run "$label-$c-$r" "$WORK/pay.sql" "$clients" "$opts")
      say "$label round $((r + 1)): $c: $res"
      read -r t a b <<<"$res"
      tps[$c]+="$t "; p50[$c]+="$a "; p99[$c]+="$b "
    done
  done
  for c in "${cs[@]}"; do
    # shellcheck disable=SC2086
    printf -v "TPS_$c" '%.0f' "$(median ${tps[$c]})"
    # shellcheck disable=SC2086
    printf -v "P50_$c" '%s' "$(median ${p50[$c]})"
    # shellcheck disable=SC2086
    printf -v "P99_$c" '%s' "$(median ${p99[$c]})"
  done
  use a
}

# The HTTP part: p2pay-http in front of the same database, logging in as
# the cluster's superuser (trust authentication here), and wrk posting
# payments drawn as pay.sql draws them.
start_http() {
  HTTP_PORT=$(free_port)
  tools/p2pay-http --dsn "host=$WORK port=$PGPORT dbname=$BENCH_DB" --listen "127.0.0.1:$HTTP_PORT" \
    --pool-size 64 --max-connections 128 2>"$WORK/http.log" &
  HTTP_PID=$!
  for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$HTTP_PORT/api/v1/health" >/dev/null && return 0
    sleep 0.1
  done
  cat "$WORK/http.log" >&2; return 1
}
cat >"$WORK/pay.lua" <<EOF
-- One payment per request, drawn as pay.sql draws them.
local users = $USERS
wrk.method = "POST"
wrk.path = "/api/v1/payments"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic $(printf 'postgres:x' | base64)"
local function uid(n) return string.format("00000000-0000-4000-8000-%012d", n) end
-- pgbench's random_exponential(500, 2000000, 46)
local function cents()
  local cut = math.exp(-46)
  local u = 1.0 - math.random()
  return 500 + math.floor((2000000 - 500 + 1) * (-math.log(cut + (1 - cut) * u) / 46))
end
function init(args) math.randomseed(os.time() * 1000 + math.floor(os.clock() * 1000000)) end
function request()
  local payer = math.random(1, users)
  local off
  if math.random(1, 100) <= 80 then
    off = 1 + (payer * 131 + math.random(0, 19) * 7919) % (users - 1)
  else
    off = math.random(1, users - 1)
  end
  local payee = 1 + (payer - 1 + off) % users
  local c = cents()
  wrk.body = string.format('{"payer_id":"%s","payee_id":"%s","amount":"%d.%02d","currency":"USD","payment_method_id":"$BENCH_BANK"}',
                           uid(payer), uid(payee), math.floor(c / 100), c % 100)
  return wrk.format()
end
EOF
# run_http NAME: one wrk run of SECS seconds, cleaned up after as run()
# does; prints "rps p50_ms p99_ms".  Any response but 201 fails it.
to_ms() { awk '{v=$1; if (v ~ /us$/) printf "%.3f", v/1000; else if (v ~ /ms$/) printf "%.3f", v+0; else printf "%.3f", v*1000}'; }
run_http() {
  local name=$1 maxid out rps p50 p99 bad stored
  maxid=$(bench_value "SELECT coalesce(max(id), 0) FROM p2pay.payments")
  bench_psql -c "CHECKPOINT" >/dev/null
  out=$(wrk -t 2 -c "$HTTP_CLIENTS" -d "${SECS}s" --latency -s "$WORK/pay.lua" "http://127.0.0.1:$HTTP_PORT" 2>&1)
  bad=$(sed -n 's/^ *Non-2xx or 3xx responses: *//p' <<<"$out")
  stored=$(bench_value "SELECT count(*) FROM p2pay.payments WHERE id > $maxid")
  rps=$(sed -n 's/^Requests\/sec: *//p' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out" | to_ms)
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out" | to_ms)
  bench_forget_since "$maxid"
  if [ -n "$bad" ] || [ -z "$rps" ]; then
    echo "$out" >&2; tail -5 "$WORK/http.log" >&2
    echo "make bench: $name: ${bad:-?} responses were not 201" >&2; return 1
  fi
  say "$name: $stored payments stored"
  printf '%.0f %s %s\n' "$rps" "$p50" "$p99"
}

OUT=$WORK/results.md
: >"$OUT"
emit() { echo "$*" >>"$OUT"; }

scales=()
if has_part scaling; then IFS=, read -r -a scales <<<"$SCALES"; fi
if has_part insert || has_part hot || has_part backtest || has_part http; then scales+=("$HISTORY"); fi
if [ ${#scales[@]} -gt 0 ]; then mapfile -t scales < <(printf '%s\n' "${scales[@]}" | sort -n | uniq); fi

declare -A SCALE_ROW
for size in "${scales[@]}"; do
  bench_grow_history "$USERS" "$size"
  if [ "$size" = "$HISTORY" ] && has_part insert; then
    say "insert path at $size payments of history, synchronous_commit off"
    compare "insert-$size" "$CLIENTS" "" a b c
    INSERT_TABLE="| contender | payments/s | p50 ms | p99 ms |
|---|--:|--:|--:|
| (a) ${NAME[a]} | $TPS_a | $P50_a | $P99_a |
| (b) ${NAME[b]} | $TPS_b | $P50_b | $P99_b |
| (c) ${NAME[c]} | $TPS_c | $P50_c | $P99_c |

a/b = **$(ratio "$TPS_a" "$TPS_b")×** (target ≥ 0.6), a/c = **$(ratio "$TPS_a" "$TPS_c")×** (target ≥ 5)"
    SA=$TPS_a SB=$TPS_b
    say "insert path at $size, synchronous_commit on"
    compare "sync-$size" "$CLIENTS" "-c synchronous_commit=on" a b
    SYNC_TABLE="| contender | payments/s | p50 ms | p99 ms |
|---|--:|--:|--:|
| (a) ${NAME[a]} | $TPS_a | $P50_a | $P99_a |
| (b) ${NAME[b]} | $TPS_b | $P50_b | $P99_b |

a/b = $(ratio "$TPS_a" "$TPS_b")×"
    TPS_a=$SA TPS_b=$SB
  elif has_part scaling; then
    say "scaling: $size payments of history"
    compare "scale-$size" "$CLIENTS" "" a b
  fi
  if has_part scaling; then
    SCALE_ROW[$size]="| $size | $TPS_a | $TPS_b | $(ratio "$TPS_a" "$TPS_b") |"
  fi

  if [ "$size" = "$HISTORY" ] && has_part hot; then
    say "hot payee: $HOT payments in its 24-hour window"
    bench_psql <<SQL
SET session_replication_role = replica;
SELECT setseed(0.5);
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at,
                            risk_score, decision, is_approved, reasons, amount_base)
SELECT bench.uid(1 + floor(random() * $USERS)::bigint), bench.uid($USERS + 1), 20, 'USD', '$BENCH_BANK',
       now() - i * (interval '23 hours' / $HOT), 0, 'approve', true, '{}', 20
  FROM generate_series(1, $HOT) i;
RESET session_replication_role;
SQL
    bench_count_state
    HOT_ROWS=""
    for c in a c; do
      use "$c"
      hot=() cold=()
      for ((r = 0; r < HOT_ROUNDS; r++)); do
        res=$(run "hot-$c-$r" "$WORK/pay_hot.sql" 1); say "hot $c round $((r + 1)): $res"; hot+=("$res")
        res=$(run "cold-$c-$r" "$WORK/pay.sql" 1); say "ordinary $c round $((r + 1)): $res"; cold+=("$res")
      done
      HT=$(printf '%.0f' "$(median $(col 1 "${hot[@]}"))") H50=$(median $(col 2 "${hot[@]}")) H99=$(median $(col 3 "${hot[@]}"))
      CT=$(printf '%.0f' "$(median $(col 1 "${cold[@]}"))") C50=$(median $(col 2 "${cold[@]}")) C99=$(median $(col 3 "${cold[@]}"))
      HOT_ROWS+="| (${c}) ${NAME[$c]} | $CT | $C50 | $C99 | $HT | $H50 | $H99 | **$(ratio "$H50" "$C50")×** / $(ratio "$H99" "$C99")× |
"
    done
    use a
    HOT_TABLE="| contender | ordinary payee: payments/s | p50 ms | p99 ms | hot payee: payments/s | p50 ms | p99 ms | hot/ordinary latency p50 / p99 |
|---|--:|--:|--:|--:|--:|--:|--:|
${HOT_ROWS}
Target for p2pay: a hot payee's latency ≤ 1.5× an ordinary one's."
    bench_psql -c "SET session_replication_role = replica" \
      -c "DELETE FROM p2pay.payments WHERE payee_id = bench.uid($USERS + 1)" \
      -c "RESET session_replication_role" >/dev/null
    bench_count_state
  fi

  if [ "$size" = "$HISTORY" ] && has_part backtest; then
    say "backtest over $size payments"
    BT=$(bench_value "SELECT extract(epoch FROM clock_timestamp() - s) || ' ' || n
                   FROM (SELECT clock_timestamp() AS s) t0,
                        LATERAL (SELECT payments AS n FROM p2pay.backtest('-infinity', 'infinity')
                                  WHERE rule = 'overall') b")
    read -r BT_S BT_N <<<"$BT"
    BT_ROW="p2pay.backtest('-infinity', 'infinity') replayed $BT_N payments in $(printf '%.2f' "$BT_S") s: **$(awk -v n="$BT_N" -v s="$BT_S" 'BEGIN {printf "%d", n / s}') payments/s**."
  fi

  if [ "$size" = "$HISTORY" ] && has_part http; then
    say "HTTP: POST /api/v1/payments against the direct insert, $HTTP_CLIENTS clients"
    use a
    start_http
    hd=() hh=()
    for ((r = 0; r < ROUNDS; r++)); do
      order="d h"; [ $((r % 2)) = 1 ] && order="h d"
      for c in $order; do
        if [ "$c" = d ]; then
          res=$(run "direct-$r" "$WORK/pay.sql" "$HTTP_CLIENTS"); hd+=("$res")
        else
          res=$(run_http "http-$r"); hh+=("$res")
        fi
        say "http round $((r + 1)): $c: $res"
      done
    done
    kill "$HTTP_PID"; wait "$HTTP_PID" 2>/dev/null || true; HTTP_PID=
    DT=$(printf '%.0f' "$(median $(col 1 "${hd[@]}"))") D50=$(median $(col 2 "${hd[@]}")) D99=$(median $(col 3 "${hd[@]}"))
    HT=$(printf '%.0f' "$(median $(col 1 "${hh[@]}"))") H50=$(median $(col 2 "${hh[@]}")) H99=$(median $(col 3 "${hh[@]}"))
    HTTP_TABLE="| path | payments/s | p50 ms | p99 ms |
|---|--:|--:|--:|
| direct SQL insert (pgbench, $HTTP_CLIENTS clients, prepared) | $DT | $D50 | $D99 |
| POST /api/v1/payments (p2pay-http, wrk, $HTTP_CLIENTS keep-alive connections) | $HT | $H50 | $H99 |

HTTP/direct = **$(ratio "$HT" "$DT")×** (target ≥ 0.6). Both score every payment with the trigger and commit one payment per request. wrk runs on the same $(nproc) cores as the daemon and the server. The system p2pay replaces estimated about 2,700 payments/s per FastAPI service."
  fi
done

if has_part stream; then
  say "stream"
  STREAM_ROUNDS=${STREAM_ROUNDS:-3} bash bench/stream.sh "$WORK/stream.md" >&2
fi

if has_part bulk; then
  say "bulk loads"
  bash bench/bulk.sh "$WORK/bulk.md" >&2 || PART_STATUS[bulk]=$?
fi

# The report.
{
  echo "# p2pay benchmark"
  echo
  echo "Run $(date -u '+%Y-%m-%d %H:%M UTC'), p2pay commit $BUILT, $(( $(date +%s) - START )) s."
  echo
  echo "Machine: $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) memory; $(bench_value 'SELECT version()' | cut -d, -f1)."
  echo "Settings: $(bench_value "SELECT string_agg(name || ' = ' || setting || coalesce(unit, ''), ', ' ORDER BY name) FROM pg_settings WHERE name IN ('shared_buffers', 'synchronous_commit', 'fsync', 'wal_level', 'max_wal_size', 'checkpoint_timeout', 'shared_preload_libraries')")."
  echo "pgbench: $CLIENTS clients (1 for the hot payee), $SECS s a run, $ROUNDS rounds ($HOT_ROUNDS for the hot payee), contenders alternated (order rotated each round), medians; one payment per transaction; the payments a run inserted are deleted and the per-account state restored before the next. $USERS users."
  echo
  if has_part insert; then
    echo "## Insert path ($HISTORY payments of history, synchronous_commit off)"
    echo
    echo "$INSERT_TABLE"
    echo
    echo "With synchronous_commit on (durable commits, fsync on), for context:"
    echo
    echo "$SYNC_TABLE"
    echo
  fi
  if has_part scaling; then
    echo "## Scaling with history (synchronous_commit off)"
    echo
    echo "| payments of history | (a) p2pay payments/s | (b) bare payments/s | a/b |"
    echo "|--:|--:|--:|--:|"
    for s in "${scales[@]}"; do [ -n "${SCALE_ROW[$s]:-}" ] && echo "${SCALE_ROW[$s]}"; done
    echo
  fi
  if has_part hot; then
    echo "## Hot payee (one client)"
    echo
    echo "$HOT_TABLE"
    echo
  fi
  if has_part backtest; then
    echo "## Backtest"
    echo
    echo "$BT_ROW"
    echo
  fi
  if has_part http; then
    echo "## HTTP API ($HISTORY payments of history, synchronous_commit off)"
    echo
    echo "$HTTP_TABLE"
    echo
  fi
  if has_part stream; then
    cat "$WORK/stream.md"
    echo
  fi
  if has_part bulk; then
    part_report bulk "$WORK/bulk.md" "Bulk loads"
  fi
  if has_part profile; then
    part_report profile "$WORK/profile.md" "The insert path's floor"
  fi
  cat "$OUT"
} >"$RESULTS.tmp"
mv "$RESULTS.tmp" "$RESULTS"
cat "$RESULTS"
echo "make bench: written to $RESULTS"
for part in profile bulk; do
  status=${PART_STATUS[$part]}
  [ "$status" = 0 ] || { echo "make bench: ${PART_SCRIPT[$part]} exited with status $status" >&2; exit "$status"; }
done
