#!/usr/bin/env bash
# make demo: install what is needed, build and install p2pay, start a
# throwaway cluster, replay the scripted P2P payments of scripts/demo.sql and
# print them with the decisions p2pay gave them.  The cluster and its
# directory are removed at the end, unless P2PAY_DEMO_KEEP=1: then the
# cluster is left running and the script says how to connect and how to stop
# it.  Works as root (the cluster runs as postgres) or as a sudo user.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

DB=p2pay_demo

ensure_packages build-essential postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR
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
  stop:     $stop && rm -rf $WORK
EOF
}

# Stop the cluster and remove its directory, or keep both when asked to.
cleanup() {
  local status=$?
  if [ "${P2PAY_DEMO_KEEP:-}" = 1 ] && [ -f "$WORK/data/postmaster.pid" ]; then
    print_kept
  else
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
