#!/usr/bin/env bash
# make eval: how well do the rules catch planted fraud, and at what cost in
# honest payments flagged?  Installs what is needed, builds and installs
# p2pay, starts a throwaway cluster, generates a seeded payment network with
# eval/simulate.py and replays it through the scoring trigger in created_at
# order twice, into one database each: cold start (only the payments of the
# scored period, so that no account has history in p2pay) and warm (all the
# history before them too).  Then the same for a few other networks (other
# seeds, sizes and mixes).  Prints the report, cold start and warm side by
# side, the table across networks, and eval/report.sql's details of each
# mode, and writes it to eval/results/latest.md.  See eval/README.md.
#
# Options, as environment variables (make eval EVAL_SEED=7 EVAL_PEOPLE=3000)
# or as flags (bash scripts/eval.sh --seed 7; make eval ARGS="--seed 7"):
#   EVAL_SEED, EVAL_PEOPLE, EVAL_TENANTS, EVAL_LANDLORDS, EVAL_BUSINESSES,
#   EVAL_CUSTOMERS, EVAL_DAYS, EVAL_START, EVAL_WARMUP_DAYS, EVAL_INSTANCES
#                      the simulator's --seed, --people, ... for the primary
#                      network (any other flag of eval/simulate.py --help
#                      goes in ARGS)
#   EVAL_MODES / --modes LIST      cold,warm (the default), cold or warm
#   EVAL_COLD_START=1 / --cold-start   the same as --modes cold
#   EVAL_NETWORKS / --networks LIST
#                      the other networks, each the simulator's flags (from
#                      its defaults, not the primary's), separated by ";";
#                      "none" for the primary network alone
#   EVAL_BATCH / --batch N        payments per replay transaction (2500)
#   EVAL_RULES_SQL / --rules-sql FILE
#                      SQL run in every database after CREATE EXTENSION,
#                      before the replay (change rules, put some in shadow)
#   EVAL_RESULTS / --results FILE  where the Markdown goes (eval/results/latest.md)
#   EVAL_KEEP=1 / --keep           leave the cluster and every database in it
#                                  running, and say how to reach them
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

# The other networks: seeds, sizes and mixes the rules were not tuned on.
DEFAULT_NETWORKS='--seed 2 --people 800;
--seed 3 --start 2024-11-01;
--seed 4 --people 3000 --customers 80-120;
--seed 5 --people 2500 --friend-rate 2 --unregistered-share 0.03 --eur-share 0.3 --new-businesses 6;
--seed 6 --days 45 --busy-businesses 4 --busy-customers 150-250 --marketplace-rate 0.02 --occasional-share 0.15'

BATCH=${EVAL_BATCH:-2500}
RULES_SQL=${EVAL_RULES_SQL:-}
RESULTS=${EVAL_RESULTS:-eval/results/latest.md}
KEEP=${EVAL_KEEP:-}
MODES=${EVAL_MODES:-cold,warm}
if [ "${EVAL_COLD_START:-}" = 1 ]; then MODES=cold; fi
NETWORKS=${EVAL_NETWORKS-$DEFAULT_NETWORKS}

sim_args=()
add_opt() { if [ -n "${2:-}" ]; then sim_args+=("$1" "$2"); fi; }
add_opt --seed "${EVAL_SEED:-}"
add_opt --people "${EVAL_PEOPLE:-}"
add_opt --tenants "${EVAL_TENANTS:-}"
add_opt --landlords "${EVAL_LANDLORDS:-}"
add_opt --businesses "${EVAL_BUSINESSES:-}"
add_opt --customers "${EVAL_CUSTOMERS:-}"
add_opt --days "${EVAL_DAYS:-}"
add_opt --start "${EVAL_START:-}"
add_opt --warmup-days "${EVAL_WARMUP_DAYS:-}"
add_opt --instances "${EVAL_INSTANCES:-}"

# Flags: this script's own, then everything else for the simulator.  ARGS
# comes from make's command line (make eval ARGS="..."), which make exports.
read -r -a make_args <<<"${ARGS:-}"
set -- "${make_args[@]}" "$@"
while [ $# -gt 0 ]; do
  case $1 in
    --batch) BATCH=$2; shift 2 ;;
    --rules-sql) RULES_SQL=$2; shift 2 ;;
    --results) RESULTS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --modes) MODES=$2; shift 2 ;;
    --cold-start) MODES=cold; shift ;;
    --networks) NETWORKS=$2; shift 2 ;;
    -h|--help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      echo
      echo "The other networks by default:"
      echo "$DEFAULT_NETWORKS" | sed 's/;$//; s/^/  /'
      echo
      /usr/bin/python3 eval/simulate.py --help 2>/dev/null || true
      exit 0 ;;
    *) sim_args+=("$1"); shift ;;
  esac
done
case $BATCH in ''|*[!0-9]*|0) echo "make eval: --batch must be a positive whole number" >&2; exit 2 ;; esac
if [ "$BATCH" -gt 5000 ]; then
  echo "make eval: warning: batches above 5,000 payments a transaction slow the replay down" >&2
fi
if [ -n "$RULES_SQL" ] && [ ! -r "$RULES_SQL" ]; then
  echo "make eval: can't read the rules SQL file $RULES_SQL" >&2; exit 2
fi
case $MODES in
  cold|warm|cold,warm) ;;
  warm,cold) MODES=cold,warm ;;
  *) echo "make eval: --modes must be cold,warm, cold or warm" >&2; exit 2 ;;
esac
IFS=, read -r -a modes <<<"$MODES"
# The other networks, one simulator command line each.
networks=()
if [ "$NETWORKS" != none ]; then
  while IFS= read -r spec; do
    spec=$(echo "$spec" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')
    if [ -n "$spec" ]; then networks+=("$spec"); fi
  done < <(echo "$NETWORKS" | tr ';' '\n')
fi

ensure_packages build-essential postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR python3
# Debian's interpreter, whatever else is first on PATH.
PYTHON=/usr/bin/python3
build_and_install

t_begin=$(date +%s)
WORK=$(make_workdir eval)
PORT=$(free_port)
RUN_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
# The databases left at the end: the primary network's, and with --keep
# every other network's too.
kept_dbs=()

# Stop the cluster and remove its directory, or keep both when asked to.
cleanup() {
  local status=$?
  if [ "$KEEP" = 1 ] && [ -f "$WORK/data/postmaster.pid" ]; then
    local stop="$PG_BIN/pg_ctl -D $WORK/data -m fast stop" from=FROM to=TO db
    if [ "$(id -u)" = 0 ]; then stop="runuser -u postgres -- $stop"; fi
    if [ -f "$WORK/gen-0/meta.tsv" ]; then
      from=$(awk -F'\t' '$1 == "period_start" { print $2 }' "$WORK/gen-0/meta.tsv")
      to=$(awk -F'\t' '$1 == "period_end" { print $2 }' "$WORK/gen-0/meta.tsv")
    fi
    db=${kept_dbs[0]:-p2pay_eval_${modes[0]}}
    cat <<EOF2

The evaluation cluster is still running (EVAL_KEEP=1), in $WORK.
  databases: ${kept_dbs[*]:-none}
             (the primary network's: p2pay_eval_cold, p2pay_eval_warm; network N's:
             p2pay_eval_nN_cold, p2pay_eval_nN_warm; \`SELECT * FROM eval.meta\` says which)
  connect:  psql -h $WORK -p $PORT -U postgres $db
  try:      SELECT * FROM eval.typology_summary;   -- and eval.scored, eval.rule_summary, ...
            -- the scored period again, with a rule changed, against the labels:
            SELECT rule, fired, would_review, would_decline, precision, recall
              FROM p2pay.backtest('$from', '$to',
                                  '[{"name": "payee_fan_in", "params": {"max_payers": 80}}]');
  stop:     $stop && rm -rf $WORK
EOF2
  else
    stop_cluster "$WORK"
    rm -rf "$WORK"
  fi
  exit $status
}
trap cleanup EXIT

start_cluster "$WORK" "$PORT"

commit=unknown
if git rev-parse --git-dir >/dev/null 2>&1; then
  commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  # p2pay differing from the commit (the harness itself aside): the figures
  # are of the working tree, not of the commit alone.
  if [ -n "$(git status --porcelain -- . ':(exclude)eval' ':(exclude)scripts/eval.sh' 2>/dev/null)" ]; then
    commit="$commit with uncommitted changes"
  fi
fi

# generate DIR FLAGS...: the network, generated by root into a directory the
# cluster user can read; sets data_sha.
generate() {
  local dir=$1
  shift
  mkdir -m 755 "$dir"
  echo "== generating a network (eval/simulate.py $*)"
  PYTHONHASHSEED=0 "$PYTHON" eval/simulate.py --out "$dir" "$@"
  chmod -R a+rX "$dir"
  data_sha=$(cat "$dir"/users.csv "$dir"/user_payment_methods.csv "$dir"/payments.csv | sha256sum | cut -c1-16)
}

# replay DB GEN MODE NETWORK OPTIONS: a database with p2pay (and the rules
# SQL), the network of GEN and its labels in schema eval, the payments
# replayed through the trigger (in cold mode only those of the scored
# period), the labels in p2pay.fraud_labels, and eval.meta saying what was
# done.  NETWORK numbers the network (0 the primary), OPTIONS are the
# simulator's flags it was generated with.
replay() {
  local db=$1 gen=$2 mode=$3 network=$4 options=$5 t0 t1 replay_s out_of_order
  pg_psql -d postgres -c "CREATE DATABASE $db" -c "ALTER DATABASE $db SET TimeZone = 'UTC'"
  pg_psql -d "$db" -c 'CREATE EXTENSION p2pay'
  if [ -n "$RULES_SQL" ]; then
    echo "== $db: applying $RULES_SQL"
    pg_psql -d "$db" -f - <"$RULES_SQL"
  fi

  pg_psql -d "$db" -v gen="$gen" -v mode="$mode" -f - <<'EOF2'
SET client_min_messages = warning;
CREATE SCHEMA eval;
COMMENT ON SCHEMA eval IS 'make eval: the simulated network''s labels, the replay and the report.';

CREATE TABLE eval.meta (key text PRIMARY KEY, value text NOT NULL);
COMMENT ON TABLE eval.meta IS 'The simulator''s parameters and counts, and the run''s mode, date, commit and timings.';

CREATE TABLE eval.accounts (user_id uuid PRIMARY KEY, role text NOT NULL);
COMMENT ON TABLE eval.accounts IS 'What each simulated account is: person, tenant, occasional, landlord, business, or a fraud_* account.';

-- The payments to replay, in seq (created_at) order.
CREATE TABLE eval.input (
  seq               bigint PRIMARY KEY,
  transaction_id    uuid NOT NULL UNIQUE,
  payer_id          uuid NOT NULL,
  payee_id          uuid NOT NULL,
  amount            numeric NOT NULL,
  currency          char(3) NOT NULL,
  payment_method_id uuid NOT NULL,
  created_at        timestamptz NOT NULL
);
COMMENT ON TABLE eval.input IS
  'The payments replayed, in seq order: all of them (warm), or those of the scored period (cold start).';

CREATE TABLE eval.labels (
  transaction_id uuid PRIMARY KEY,
  typology       text NOT NULL,
  instance       integer,
  step           text NOT NULL,
  is_fraud       boolean NOT NULL,
  in_period      boolean NOT NULL
);
COMMENT ON TABLE eval.labels IS
  'Ground truth of every simulated payment: typology (honest, or the fraud typology), instance of the fraud, step within it (or the kind of honest payment), and whether it lies in the scored period.';

CREATE TEMP TABLE raw (
  seq bigint, transaction_id uuid, payer_id uuid, payee_id uuid, amount numeric,
  currency char(3), payment_method_id uuid, created_at timestamptz,
  typology text, instance integer, step text, is_fraud boolean, in_period boolean);

\set users_csv :gen '/users.csv'
\set methods_csv :gen '/user_payment_methods.csv'
\set accounts_csv :gen '/accounts.csv'
\set meta_tsv :gen '/meta.tsv'
\set payments_csv :gen '/payments.csv'
COPY p2pay.users (id, first_name, last_name, email_address, created_at) FROM :'users_csv' WITH (FORMAT csv, HEADER true);
COPY p2pay.user_payment_methods (user_id, payment_method_id, details) FROM :'methods_csv' WITH (FORMAT csv, HEADER true);
COPY eval.accounts FROM :'accounts_csv' WITH (FORMAT csv, HEADER true);
COPY eval.meta FROM :'meta_tsv';
COPY raw FROM :'payments_csv' WITH (FORMAT csv, HEADER true);

-- Cold start: nothing before the period, as on the day p2pay is installed.
INSERT INTO eval.input
  SELECT row_number() OVER (ORDER BY seq), transaction_id, payer_id, payee_id, amount, currency,
         payment_method_id, created_at
    FROM raw
   WHERE in_period OR :'mode' <> 'cold';
INSERT INTO eval.labels
  SELECT transaction_id, typology, instance, step, is_fraud, in_period FROM raw;
ANALYZE eval.input;

-- Replay in seq order through the trigger, one transaction per batch: within
-- a transaction every payment of an account updates its state rows again.
CREATE PROCEDURE eval.replay(batch integer)
LANGUAGE plpgsql AS $$
DECLARE
  total  bigint;
  done   bigint := 0;
  shown  bigint := 0;
  t0     timestamptz := clock_timestamp();
BEGIN
  SELECT count(*) INTO total FROM eval.input;
  WHILE done < total LOOP
    INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency,
                                payment_method_id, created_at)
      SELECT transaction_id, payer_id, payee_id, amount, currency, payment_method_id, created_at
        FROM eval.input
       WHERE seq > done AND seq <= done + batch
       ORDER BY seq;
    done := least(done + batch, total);
    COMMIT;
    IF done - shown >= 20000 OR done = total THEN
      RAISE NOTICE 'replayed % of % payments in % s', done, total,
        round(extract(epoch FROM clock_timestamp() - t0));
      shown := done;
    END IF;
  END LOOP;
END $$;
EOF2

  echo "== $db: replaying through the trigger, $BATCH payments a transaction"
  t0=$(date +%s.%N)
  pg_psql -d "$db" -c "CALL eval.replay($BATCH)"
  t1=$(date +%s.%N)
  replay_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", b - a }')

  # The replay must have kept the order: identity ids rise with seq.
  out_of_order=$(pg_psql -d "$db" -At -c "
    SELECT count(*) FROM (
      SELECT p.id < lag(p.id) OVER (ORDER BY i.seq) AS back
        FROM eval.input i JOIN p2pay.payments p USING (transaction_id)) x
     WHERE back")
  if [ "$out_of_order" != 0 ]; then
    echo "make eval: $db: $out_of_order payments were inserted out of created_at order" >&2
    exit 1
  fi

  # The labels, where p2pay.backtest() reads them: a kept cluster can backtest
  # rule changes against the period with precision and recall.
  pg_psql -d "$db" \
    -v run_date="$RUN_DATE" -v commit="$commit" -v data_sha="$data_sha" -v mode="$mode" \
    -v network="$network" -v options="$options" \
    -v replay_s="$replay_s" -v batch="$BATCH" -v rules_sql="${RULES_SQL:-none}" -f - <<'EOF2'
INSERT INTO p2pay.fraud_labels (transaction_id, is_fraud, source)
  SELECT transaction_id, is_fraud, 'make eval: ' || typology FROM eval.labels WHERE in_period;
INSERT INTO eval.meta VALUES
  ('run_date', :'run_date'), ('commit', :'commit'), ('data_sha256', :'data_sha'),
  ('mode', :'mode'), ('network', :'network'), ('options', :'options'),
  ('replayed', (SELECT count(*) FROM eval.input)::text),
  ('replay_seconds', :'replay_s'), ('batch', :'batch'), ('rules_sql', :'rules_sql');
ANALYZE;
EOF2
}

# summarise DB: its line of JSON (eval/summary.sql) in summaries.jsonl.
summarise() {
  cat eval/views.sql eval/summary.sql | pg_psql -d "$1" -At -f - >>"$WORK/summaries.jsonl"
}

# 1. The primary network, in each mode, with the details of each.
REPORT=$WORK/report
mkdir -m 755 "$REPORT"
: >"$WORK/summaries.jsonl"
generate "$WORK/gen-0" "${sim_args[@]}"
for mode in "${modes[@]}"; do
  db=p2pay_eval_$mode
  replay "$db" "$WORK/gen-0" "$mode" 0 "${sim_args[*]}"
  kept_dbs+=("$db")
  summarise "$db"
  cat eval/views.sql eval/report.sql | pg_psql -d "$db" -At -v part=details -f - >"$REPORT/details-$mode.md"
done
cat eval/views.sql eval/report.sql | pg_psql -d "$db" -At -v part=header -f - >"$REPORT/header.md"
cat eval/views.sql eval/report.sql | pg_psql -d "$db" -At -v part=config -f - >"$REPORT/config.md"
t_primary=$(($(date +%s) - t_begin))

# 2. The other networks, in the same modes: their summaries only.  Their
# databases go once summarised, unless they are to be kept.
n=0
for spec in "${networks[@]}"; do
  n=$((n + 1))
  read -r -a flags <<<"$spec"
  generate "$WORK/gen-$n" "${flags[@]}"
  for mode in "${modes[@]}"; do
    db=p2pay_eval_n${n}_$mode
    replay "$db" "$WORK/gen-$n" "$mode" "$n" "$spec"
    summarise "$db"
    if [ "$KEEP" = 1 ]; then
      kept_dbs+=("$db")
    else
      pg_psql -d postgres -c "DROP DATABASE $db"
    fi
  done
  rm -rf "$WORK/gen-$n"
done
t_networks=$(($(date +%s) - t_begin - t_primary))

# 3. The report: printed, and written where it is kept.
details=()
for mode in "${modes[@]}"; do details+=(--details "$mode=$REPORT/details-$mode.md"); done
"$PYTHON" eval/tables.py --summaries "$WORK/summaries.jsonl" --header "$REPORT/header.md" \
  --config "$REPORT/config.md" "${details[@]}" \
  --seconds "$t_primary,$t_networks" >"$WORK/report.md"
mkdir -p "$(dirname "$RESULTS")"
cp "$WORK/report.md" "$RESULTS.tmp"
mv "$RESULTS.tmp" "$RESULTS"
echo
cat "$WORK/report.md"
echo
echo "make eval: written to $RESULTS; $(($(date +%s) - t_begin)) s from cluster start to report"
