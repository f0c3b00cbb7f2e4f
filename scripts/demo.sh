#!/usr/bin/env bash
# make demo: install what is needed, build and install p2pay, start a
# throwaway cluster, replay the scripted P2P payments of scripts/demo.sql and
# print them with the decisions p2pay gave them.  The cluster and its
# directory are removed at the end, unless P2PAY_DEMO_KEEP=1: then the
# cluster is left running and the script says how to connect and how to stop
# it, with tools/p2pay-http serving the HTTP API, the payment form and the
# analysts' console on it; the last lines say where.  Works as root (the cluster runs as postgres) or as a sudo user.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

DB=p2pay_demo

ensure_packages build-essential postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR curl
build_and_install

WORK=$(make_workdir demo)
PORT=$(free_port)

# Print how to reach and stop the kept cluster.
print_kept() {
  local stop="$PG_BIN/pg_ctl -D $WORK/data -m fast stop"
  if [ "$(id -u)" = 0 ]; then stop="runuser -u postgres -- $stop"; fi
  cat <<EOF

The demo cluster is still running (P2PAY_DEMO_KEEP=1), in $WORK.
  connect:  psql -h $WORK -p $PORT -U postgres $DB
            (or over TCP: psql -h 127.0.0.1 -p $PORT -U postgres $DB; no password)
  try:      SELECT * FROM demo.report;   -- the table above
            SELECT * FROM p2pay.rules;   -- an UPDATE here applies to the next insert
  server log: $WORK/server.log
  stop:     kill $HTTP_PID; $stop && rm -rf $WORK

p2pay-http serves the API, the payment form and the console (log: $WORK/http.log):
  API docs: http://127.0.0.1:$HTTP_PORT/api/v1/docs
  form:     http://127.0.0.1:$HTTP_PORT/
  console:  http://127.0.0.1:$HTTP_PORT/console
            log in as demo_analyst (password demo-analyst) or demo_app (demo-app)
EOF
}

# Stop the cluster and remove its directory, or keep both when asked to.
cleanup() {
  local status=$?
  if [ "${P2PAY_DEMO_KEEP:-}" = 1 ] && [ -f "$WORK/data/postmaster.pid" ] && [ $status = 0 ]; then
    print_kept
  else
    if [ -n "${HTTP_PID:-}" ]; then kill "$HTTP_PID" 2>/dev/null || true; fi
    stop_cluster "$WORK"
    rm -rf "$WORK"
  fi
  exit $status
}
trap cleanup EXIT

start_cluster "$WORK" "$PORT"

pg_psql -d postgres -c "CREATE DATABASE $DB" -c "ALTER DATABASE $DB SET TimeZone = 'UTC'"
pg_psql -d "$DB" -c 'CREATE EXTENSION p2pay'
# The flagged-payment stream: a slot created before the payments sees them all.
pg_psql -d "$DB" -c "SELECT FROM pg_create_logical_replication_slot('demo_flagged', 'p2pay')"

# Fed on stdin: the cluster user may not be able to read the checkout.
if ! pg_psql -d "$DB" -f - <scripts/demo.sql; then
  echo "make demo: scripts/demo.sql failed; the end of the server log:" >&2
  tail -n 20 "$WORK/server.log" >&2 || true
  exit 1
fi

# The same payments as a consumer of the stream sees them: pg_recvlogical on
# the slot, up to the end of the scenario's WAL, one JSON line per flagged
# payment.
END_LSN=$(pg_psql -d "$DB" -At -c 'SELECT pg_current_wal_lsn()')
echo
echo "The flagged-payment stream, as pg_recvlogical receives it from slot demo_flagged"
echo "(pg_recvlogical -d $DB --slot demo_flagged --start -E $END_LSN -o include-xids=0 -f -):"
as_pg pg_recvlogical -d "$DB" --slot demo_flagged --start -E "$END_LSN" \
  -o include-xids=0 -f - </dev/null

if [ "${P2PAY_DEMO_KEEP:-}" != 1 ]; then
  echo
  echo "For the HTTP API, the payment form and the analysts' console on this data:"
  echo "  make demo P2PAY_DEMO_KEEP=1"
  exit 0
fi

# The console: the README's roles, a login in each, and p2pay-http with the
# live feed on a slot of its own.
pg_psql -d "$DB" -f scripts/roles.sql >/dev/null
pg_psql -d "$DB" -c "CREATE ROLE demo_app LOGIN PASSWORD 'demo-app' IN ROLE p2pay_app" \
  -c "CREATE ROLE demo_analyst LOGIN PASSWORD 'demo-analyst' IN ROLE p2pay_analyst" >/dev/null
HTTP_PORT=$(free_port)
setsid "$PG_BIN/p2pay-http" --dsn "host=$WORK port=$PORT dbname=$DB" --listen "127.0.0.1:$HTTP_PORT" \
  --feed-dsn "host=$WORK port=$PORT dbname=$DB user=postgres" --create-slot \
  </dev/null >"$WORK/http.log" 2>&1 &
HTTP_PID=$!
for _ in $(seq 50); do
  curl -sf "http://127.0.0.1:$HTTP_PORT/api/v1/health" >/dev/null && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$HTTP_PORT/api/v1/health" >/dev/null ||
  { cat "$WORK/http.log" >&2; echo "make demo: p2pay-http did not start" >&2; exit 1; }
