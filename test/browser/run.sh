#!/usr/bin/env bash
# test/browser/run.sh: the browser tests of p2pay-http's pages (http/).
# Against a running cluster (PGHOST and PGPORT as scripts/lib.sh's
# start_cluster sets them, with p2pay installed and preloaded), or, with
# PGPORT unset, a throwaway cluster of its own: makes database
# p2pay_browser with the extension, README's grants (scripts/roles.sql),
# login roles with passwords that the server checks (scram-sha-256 over
# TCP; test/browser/roles.sql) and a little data (test/browser/setup.sql);
# starts tools/p2pay-http on a free port, serving this tree's pages, its
# live feed on a slot of its own; runs test/browser/*.test.mjs in Debian's
# chromium through playwright-core (http/node_modules); stops the daemon.
# Exits non-zero on any failure.
#
# P2PAY_BROWSER_ARTIFACTS: where the screenshots go (default: a new
# directory under /tmp, printed at the end).  P2PAY_HTTP: the daemon's
# command (default tools/p2pay-http), given the options that one takes.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh

DB=p2pay_browser
SLOT=p2pay_browser
APP_PASSWORD=app-$RANDOM$RANDOM
ANALYST_PASSWORD=analyst-$RANDOM$RANDOM
FEED_PASSWORD=feed-$RANDOM$RANDOM
ARTIFACTS=${P2PAY_BROWSER_ARTIFACTS:-$(mktemp -d /tmp/p2pay-browser-artifacts.XXXXXX)}
mkdir -p "$ARTIFACTS"

ensure_packages chromium libmicrohttpd-dev
for prog in node npm; do
  command -v "$prog" >/dev/null || { echo "run.sh: the browser tests need $prog (Node.js 20 or later)" >&2; exit 1; }
done
if [ ! -f http/node_modules/playwright-core/package.json ]; then
  (cd http && npm ci --ignore-scripts --no-audit --no-fund)
fi
# Always built anew: a checkout can leave an old binary newer than its source.
make -s -W tools/p2pay-http.c tools/p2pay-http PG_CONFIG="$PG_BIN/pg_config" SANITIZE=

WORK=$(make_workdir browser)
own_cluster=
made_roles=
made_groups=
daemon_pid=
hba_saved=
cleanup() {
  if [ -n "$daemon_pid" ]; then kill "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true; fi
  # A slot left behind would hold WAL on a cluster that outlives the tests.
  drop_slot 2>/dev/null || true
  if [ -n "$hba_saved" ]; then
    as_pg cp "$WORK/pg_hba.conf.saved" "$hba_saved"
    pg_psql -d postgres -c 'SELECT pg_reload_conf()' >/dev/null 2>&1 || true
  fi
  # The roles are the cluster's: the suites run after this one create the
  # README's roles themselves, so what this run made goes again.
  if [ -z "$own_cluster" ] && [ -n "$made_roles" ]; then
    pg_psql -d postgres -c 'SET client_min_messages = warning' -c "DROP DATABASE IF EXISTS $DB" \
      -c "DROP ROLE IF EXISTS p2pay_browser_app, p2pay_browser_analyst, p2pay_browser_analyst2, p2pay_browser_feed${made_groups:+, $made_groups}" \
      >/dev/null 2>&1 || true
  fi
  [ -n "$own_cluster" ] && stop_cluster "$WORK"
  [ -n "${P2PAY_KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
drop_slot() {
  pg_psql -d postgres -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
                          WHERE slot_name = '$SLOT'" >/dev/null
}

if [ -z "${PGPORT:-}" ]; then
  own_cluster=1
  start_cluster "$WORK" "$(free_port)"
fi
export PGUSER=${PGUSER:-postgres}

drop_slot
pg_psql -d postgres -c 'SET client_min_messages = warning' -c "DROP DATABASE IF EXISTS $DB" \
  -c 'DROP ROLE IF EXISTS p2pay_browser_app, p2pay_browser_analyst, p2pay_browser_analyst2, p2pay_browser_feed' >/dev/null
# the README's group roles this run makes, to drop them again at exit
made_groups=$(pg_psql -d postgres -At -c "SELECT string_agg(r, ', ') FROM unnest(ARRAY['p2pay_admin', 'p2pay_analyst', 'p2pay_app']) r
                                            WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r)")
made_roles=1
pg_psql -d postgres -c "CREATE DATABASE $DB" >/dev/null
pg_psql -d "$DB" -c 'CREATE EXTENSION p2pay' >/dev/null
pg_psql -d "$DB" -v app_password="$APP_PASSWORD" -v analyst_password="$ANALYST_PASSWORD" \
  -v feed_password="$FEED_PASSWORD" -f test/browser/roles.sql >/dev/null
sed '/^CREATE ROLE /d' scripts/roles.sql | pg_psql -d "$DB" >/dev/null
pg_psql -d "$DB" -f test/browser/setup.sql >/dev/null

# The login roles' passwords are checked over TCP, whatever the rest of
# pg_hba.conf trusts; the original file is put back at exit.
hba=$(pg_psql -d postgres -At -c 'SHOW hba_file')
as_pg cp "$hba" "$WORK/pg_hba.conf.saved"
{
  echo "host $DB p2pay_browser_app,p2pay_browser_analyst,p2pay_browser_analyst2,p2pay_browser_feed 127.0.0.1/32 scram-sha-256"
  echo "host replication p2pay_browser_feed 127.0.0.1/32 scram-sha-256"
  as_pg cat "$WORK/pg_hba.conf.saved"
} | as_pg tee "$hba" >/dev/null
hba_saved=$hba
pg_psql -d postgres -c 'SELECT pg_reload_conf()' >/dev/null

HTTP_PORT=$(free_port)
BASE=http://127.0.0.1:$HTTP_PORT
# The pages from this tree's http/; the feed from a slot of its own.
${P2PAY_HTTP:-tools/p2pay-http} --dsn "host=127.0.0.1 port=$PGPORT dbname=$DB" \
  --listen "127.0.0.1:$HTTP_PORT" --static-dir http \
  --feed-dsn "host=127.0.0.1 port=$PGPORT dbname=$DB user=p2pay_browser_feed password=$FEED_PASSWORD" \
  --slot "$SLOT" --create-slot >"$WORK/p2pay-http.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 1 100); do
  curl -s -o /dev/null "$BASE/api/v1/health" && break
  kill -0 "$daemon_pid" 2>/dev/null || { cat "$WORK/p2pay-http.log"; exit 1; }
  sleep 0.1
done

status=0
env P2PAY_HTTP_URL="$BASE" P2PAY_BROWSER_ARTIFACTS="$ARTIFACTS" PGDATABASE="$DB" \
  P2PAY_APP_USER=p2pay_browser_app P2PAY_APP_PASSWORD="$APP_PASSWORD" \
  P2PAY_ANALYST_USER=p2pay_browser_analyst P2PAY_ANALYST2_USER=p2pay_browser_analyst2 \
  P2PAY_ANALYST_PASSWORD="$ANALYST_PASSWORD" \
  node --test --test-concurrency=1 test/browser/ || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- p2pay-http's log"
  tail -n 50 "$WORK/p2pay-http.log"
fi
echo "screenshots: $ARTIFACTS"
exit "$status"
