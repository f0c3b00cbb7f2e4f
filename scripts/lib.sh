# scripts/lib.sh: shared by test.sh, demo.sh and the benchmarks
# (scripts/bench.sh, bench/floor.sh).
# Installs packages, builds and installs p2pay, and runs throwaway clusters
# as an unprivileged user (PostgreSQL refuses to run as root).

PG_MAJOR=${PG_MAJOR:-15}
# PG_BIN may point at another installation's programs (a relocated copy, or
# another major version); builds and clusters then use its pg_config.
PG_BIN=${PG_BIN:-/usr/lib/postgresql/$PG_MAJOR/bin}
export PATH="$PG_BIN:$PATH"
# This file's directory, wherever the script that sources it runs from.
P2PAY_SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# Run a command as root: directly when root, through sudo otherwise.
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# The user clusters run as: postgres when we are root, ourselves otherwise.
pg_user() {
  if [ "$(id -u)" = 0 ]; then echo postgres; else id -un; fi
}

# Run a command as the cluster user, keeping the environment we need.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    local vars=(PATH="$PATH") v
    for v in PGHOST PGPORT PGUSER PGDATABASE PERL5LIB PGOPTIONS ASAN_OPTIONS UBSAN_OPTIONS; do
      [ -n "${!v:-}" ] && vars+=("$v=${!v}")
    done
    runuser -u postgres -- env "${vars[@]}" "$@"
  else
    "$@"
  fi
}

# Install the Debian packages given unless they are all installed already.
ensure_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "Installing: ${missing[*]}"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  fi
}

# ensure_packages_no_service PACKAGE...: ensure_packages for packages that
# ship a service (prometheus-postgres-exporter), which the tests run
# themselves: their maintainer scripts are kept from starting it (through
# invoke-rc.d and deb-systemd-invoke, which both ask /usr/sbin/policy-rc.d;
# one that denies is put there for the install unless the machine has its
# own).  The service stays enabled for the next boot, as Debian installs it.
ensure_packages_no_service() {
  local policy=/usr/sbin/policy-rc.d added=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# p2pay make test: no service starts while it installs packages\nexit 101\n' |
      as_root tee "$policy" >/dev/null
    as_root chmod 755 "$policy"
    added=1
  fi
  local rc=0
  ensure_packages "$@" || rc=$?
  if [ -n "$added" ]; then as_root rm -f "$policy"; fi
  return $rc
}

# install_package_extension PACKAGE: Debian installs an extension package
# (postgresql-15-partman) into the system's PostgreSQL; when PG_BIN is
# another installation, copy the package's extension scripts and libraries
# into it too, unless they are there already.
install_package_extension() {
  local sharedir pkglibdir f dest
  sharedir=$("$PG_BIN/pg_config" --sharedir)
  pkglibdir=$("$PG_BIN/pg_config" --pkglibdir)
  [ "$sharedir" = "/usr/share/postgresql/$PG_MAJOR" ] && return 0
  for f in $(dpkg -L "$1"); do
    case $f in
      /usr/share/postgresql/$PG_MAJOR/extension/*) dest=$sharedir/extension ;;
      /usr/lib/postgresql/$PG_MAJOR/lib/*.so) dest=$pkglibdir ;;
      *) continue ;;
    esac
    [ -f "$f" ] && ! cmp -s "$f" "$dest/${f##*/}" && as_root cp "$f" "$dest/"
  done
  return 0
}

# Build p2pay with warnings as errors and install it into PostgreSQL.  make
# builds each program whose library it finds; the packages of all three are
# installed here, so every script that builds gets them, whatever its own
# package list says, and make builds the tools too.  The build is the
# plain one even under make test SANITIZE=1 or ASSERT=1 (which builds its
# copy elsewhere): SANITIZE= and ASSERT= override what make passes down.
build_and_install() {
  ensure_packages librdkafka-dev libmicrohttpd-dev
  make -s PG_CONFIG="$PG_BIN/pg_config" SANITIZE= ASSERT=
  as_root make -s install PG_CONFIG="$PG_BIN/pg_config" SANITIZE= ASSERT=
}

# A TCP port nobody listens on, tried in a random order: two runs that start
# at once (other checkouts' make test on the same machine) would otherwise
# both find the first free one, and the second server would fail to bind it.
free_port() {
  local port
  for port in $(shuf -i 54320-54400); do
    if ! (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then echo "$port"; return; fi
  done
  echo "no free port in 54320-54400" >&2; return 1
}

# A directory the cluster user can write.
make_workdir() {
  local dir
  dir=$(mktemp -d /tmp/p2pay-"$1".XXXXXX)
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  chmod 755 "$dir"
  echo "$dir"
}

# start_cluster DIR PORT: initdb and start a cluster whose data, socket and
# log live in DIR, configured as make installcheck configures its own
# instance (test/instance.conf, through scripts/instance-conf.sh: p2pay
# preloaded, logical decoding); sets PGHOST, PGPORT, PGUSER, PGDATABASE.
# OUTPUT_PLUGINS lists the output plugins the server accepts (pgoutput,
# test_decoding, p2pay); CLUSTER_CONF, settings to add, one per line;
# POSTGRES_PROGRAM, a program pg_ctl runs in place of postgres (a wrapper
# that runs it under valgrind), and PG_CTL_TIMEOUT, how many seconds pg_ctl
# waits for the server to start or stop (60).
start_cluster() {
  local dir=$1 port=$2 conf
  conf=$(bash "$P2PAY_SCRIPTS/instance-conf.sh" "$PG_BIN") || return 1
  as_pg initdb -D "$dir/data" -U postgres -A trust --no-sync >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log"; return 1; }
  {
    echo "port = $port"
    echo "listen_addresses = '127.0.0.1'"
    echo "unix_socket_directories = '$dir'"
    echo "$conf"
    if [ -n "${CLUSTER_CONF:-}" ]; then echo "$CLUSTER_CONF"; fi
  } | as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
  as_pg pg_ctl -D "$dir/data" -l "$dir/server.log" ${POSTGRES_PROGRAM:+-p "$POSTGRES_PROGRAM"} \
    -t "${PG_CTL_TIMEOUT:-60}" -w start >/dev/null ||
    { cat "$dir/server.log"; return 1; }
  export PGHOST=$dir PGPORT=$port PGUSER=postgres PGDATABASE=postgres
}

# psql as the cluster user: stop at the first error, no pager, no psqlrc.
pg_psql() {
  as_pg psql -X -q -v ON_ERROR_STOP=1 -P pager=off "$@"
}

# stop_cluster DIR
stop_cluster() {
  as_pg pg_ctl -D "$1/data" -m fast -t "${PG_CTL_TIMEOUT:-60}" -w stop >/dev/null 2>&1 || true
}

# What the benchmarks (scripts/bench.sh, bench/*.sh) share.

# bench_part_out ARG...: a part of make bench that runs as a script of its
# own (bench/stream.sh OUT.md) takes one argument, the file its report goes
# to: prints it as an absolute path, or the usage and fails.
bench_part_out() {
  if [ $# -ne 1 ]; then echo "usage: bash bench/${0##*/} OUT.md" >&2; return 2; fi
  realpath -m "$1"
}

# require_counts NAME...: each variable NAME holds a positive integer, or
# the script stops (status 2).
require_counts() {
  local v
  for v in "$@"; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "${0##*/}: $v must be a positive integer, not '${!v}'" >&2; exit 2; }
  done
}

# bench_accounts_sql N METHOD: the SQL that makes a benchmark's accounts in
# a database where p2pay is installed: bench.uid(n), account n's id, and
# accounts 1 .. N, opened ten years ago, each with payment method METHOD
# registered.
bench_accounts_sql() {
  cat <<SQL
CREATE SCHEMA bench;
-- account n's id
CREATE FUNCTION bench.uid(n bigint) RETURNS uuid LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS \$\$ SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid \$\$;
INSERT INTO p2pay.users (id, first_name, created_at)
  SELECT bench.uid(n), 'user ' || n, now() - interval '10 years' FROM generate_series(1, $1) n;
INSERT INTO p2pay.user_payment_methods (user_id, payment_method_id)
  SELECT id, '$2' FROM p2pay.users;
SQL
}

# 1234567 -> 1,234,567
commas() { sed -e ':a' -e 's/\([0-9]\)\([0-9]\{3\}\)\($\|[,.]\)/\1,\2\3/' -e 'ta' <<<"$1"; }
# calc EXPRESSION [DECIMALS]: arithmetic on decimals (2 decimals).
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }

# wait_file FILE: wait (10 s at most) until a helper we started has said it
# is ready by creating FILE.
wait_file() {
  for _ in $(seq 100); do
    if [ -e "$1" ]; then return; fi
    sleep 0.1
  done
  echo "${0##*/}: the helper never got ready ($1)" >&2; return 1
}

# sample_rss PID FILE STOPFILE [SECONDS]: every SECONDS (0.1), append "time
# VmRSS RssAnon" (kB) of process PID to FILE, until STOPFILE exists or PID
# is gone.
sample_rss() {
  local pid=$1 file=$2 stop=$3 every=${4:-0.1} key value rest rss anon
  while [ ! -e "$stop" ]; do
    rss='' anon=''
    while read -r key value rest; do
      case $key in
        VmRSS:) rss=$value ;;
        RssAnon:) anon=$value ;;
      esac
    done 2>/dev/null <"/proc/$pid/status" || break
    echo "$EPOCHREALTIME $rss $anon" >>"$file"
    sleep "$every"
  done
}

# Sanitizer mode (make test SANITIZE=1).  A p2pay.so built with ASan loads
# only into a process whose first library is the ASan runtime, and Debian's
# PostgreSQL is not built with it: servers get the runtime through
# LD_PRELOAD.  PostgreSQL's test modules start servers with the pg_ctl they
# find first on PATH, so a directory holding the installation's programs,
# with pg_ctl replaced by a script that sets the preload and the sanitizers'
# options, goes first on PATH (and is the bindir given to the TAP suite).
# Only servers get the runtime that way: psql, perl and the rest run as
# usual; the tools, built with the sanitizers, carry it themselves.  Every
# report goes to a file of DIR/sanitizer/logs, one per process, which
# sanitizer_reports checks.

# sanitizer_setup DIR: make DIR/sanitizer/{logs,bin}, put bin first on PATH
# (SANITIZER_BIN names it) and export the options the tools read.
sanitizer_setup() {
  local dir=$1/sanitizer prog asan
  asan=$(realpath "$(gcc -print-file-name=libasan.so)")
  [ -f "$asan" ] || { echo "sanitizer_setup: gcc has no libasan.so" >&2; return 1; }
  mkdir -p "$dir/logs" "$dir/bin"
  [ "$(id -u)" = 0 ] && chown "$(pg_user):" "$dir/logs"
  # scripts/sanitizer-preload.c says why the runtimes need a companion.
  gcc -shared -fPIC -O2 -Wall -Wextra -Werror -Wno-unused-parameter \
    -DP2PAY_UBSAN_OPTIONS="\"print_stacktrace=1:log_path=$dir/logs/server\"" \
    -o "$dir/preload.so" scripts/sanitizer-preload.c
  for prog in "$PG_BIN"/*; do ln -sf "$prog" "$dir/bin/"; done
  rm -f "$dir/bin/pg_ctl"
  # detect_leaks=0 for servers: a backend frees by memory context, and much
  # of what it holds at exit is meant to live as long as the process.
  {
    echo '#!/bin/sh'
    echo '# A server under the sanitizers'"'"' runtime (scripts/lib.sh).'
    echo "unset UBSAN_OPTIONS"
    echo "LD_PRELOAD='$asan $dir/preload.so' \\"
    echo "ASAN_OPTIONS='detect_leaks=0:log_path=$dir/logs/server' \\"
    echo "exec '$PG_BIN/pg_ctl' \"\$@\""
  } >"$dir/bin/pg_ctl"
  chmod 755 "$dir/bin/pg_ctl"
  export PATH="$dir/bin:$PATH"
  export ASAN_OPTIONS="log_path=$dir/logs/tool"
  export UBSAN_OPTIONS="print_stacktrace=1:log_path=$dir/logs/tool"
  SANITIZER_BIN=$dir/bin
}

# sanitizer_check_server DIR: the running server of DIR has the ASan runtime
# and a p2pay.so that needs it (which brings in the UBSan runtime).
sanitizer_check_server() {
  local pid maps
  pid=$(as_pg head -n 1 "$1/data/postmaster.pid")
  maps=$(as_pg cat "/proc/$pid/maps")
  if [[ $maps != */libasan.so* || $maps != */libubsan.so* || $maps != */p2pay.so* ]]; then
    echo "the server (pid $pid) runs without the sanitizers' runtime or p2pay" >&2
    return 1
  fi
}

# sanitizer_reports DIR: print every report the sanitizers wrote, to their
# files or (had a runtime lost its options) to a server's log under DIR;
# fails if there is one.
sanitizer_reports() {
  local f found=0
  for f in "$1"/sanitizer/logs/*; do
    [ -s "$f" ] || continue
    found=$((found + 1))
    echo "--- $f"
    head -n 100 "$f"
  done
  # UBSan: "file:line:col: runtime error: ..."; ASan and LSan: "==pid==ERROR: ..."
  for f in $(grep -rlE ': runtime error: |^==[0-9]+==ERROR: ' "$1"/server.log "$1"/src/tmp_check/log 2>/dev/null); do
    found=$((found + 1))
    echo "--- $f"
    grep -E -A 20 ': runtime error: |^==[0-9]+==ERROR: ' "$f" | head -n 100
  done
  if [ "$found" -gt 0 ]; then
    echo "$found files hold sanitizer reports" >&2
    return 1
  fi
  echo "no sanitizer reports"
}

# The benchmarks' database (scripts/bench.sh, bench/floor.sh): BENCH_DB,
# which the caller names, on the cluster start_cluster started; users
# 1..USERS + 2 (user n's id is bench.uid(n)), each with the method
# BENCH_BANK registered; a history of payments among users 1..USERS, which
# bench_grow_history loads; and the per-account state it leaves, which
# bench_forget_since gives back after each run.
BENCH_BANK=00000000-0000-4000-8000-000000000001

# The settings the counting and comparing benchmarks (bench/floor.sh,
# bench/ab.sh, bench/rebuild_state.sh) give their cluster, beside fsync and
# synchronous_commit: room for the history in memory, no checkpoint during
# a run, and no autovacuum worker moving a counter or a page meanwhile.
BENCH_QUIET_CONF="shared_buffers = 2GB
max_wal_size = 16GB
checkpoint_timeout = 30min
autovacuum = off"

# A line of progress, on stderr.
say() { echo "== $*" >&2; }

# psql on BENCH_DB: stop at the first error, warnings and worse only.
bench_psql() { PGOPTIONS='-c client_min_messages=warning' as_pg psql -X -q -v ON_ERROR_STOP=1 -d "$BENCH_DB" "$@"; }
# The value of one query on BENCH_DB, unaligned.
bench_value() { as_pg psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$BENCH_DB" -c "$1"; }

# bench_create_db USERS: create BENCH_DB with p2pay, schema bench and the
# users; sets BENCH_T0, the instant the history is measured back from.
bench_create_db() {
  as_pg createdb "$BENCH_DB"
  { echo "CREATE EXTENSION p2pay;"; bench_accounts_sql $(($1 + 2)) "$BENCH_BANK"; } | bench_psql
  BENCH_T0=$(bench_value "SELECT now()")
  BENCH_LOADED=0
}

# The state of the payments loaded (with the triggers off), counted and
# pruned as a daily prune would leave it, and saved for bench_restore_state.
bench_count_state() {
  bench_psql -c "SET work_mem = '1GB'" -c "SET maintenance_work_mem = '1GB'" \
    -c "SELECT p2pay.rebuild_state()" -c "SELECT * FROM p2pay.prune_state()" \
    -c "VACUUM ANALYZE" >/dev/null
  bench_save_state
}

# bench_load_payments USERS FROM TO: payments FROM..TO - 1 of the history
# among users 1..USERS, loaded pre-scored with the triggers off.  Payment
# i (0 = the newest) was made i * 25.92 s before BENCH_T0, so that the
# last 30 days always hold the first 100,000 and a larger history reaches
# further back, as an older one would: the windows the rules read look the
# same at every size.  Payers, payees and amounts are random (seeded by
# FROM), transaction ids in time order (as UUIDv7 would be): four payments
# in five go to one of the payer's 20 usual payees, the rest to anyone;
# amounts mostly small, about one in ten over 1,000.
bench_load_payments() {
  local users=$1
  bench_psql >/dev/null <<SQL
SET work_mem = '1GB';
SET maintenance_work_mem = '1GB';
SET session_replication_role = replica;
SELECT setseed(0.$2);
INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency, payment_method_id,
                            created_at, risk_score, decision, is_approved, reasons, amount_base)
SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(i), 12, '0'))::uuid,
       bench.uid(payer), bench.uid(1 + (payer - 1 + off) % $users), amount, 'USD', '$BENCH_BANK',
       '$BENCH_T0'::timestamptz - i * interval '25.92 seconds', 0, 'approve', true, '{}', amount
  FROM (SELECT i, payer,
               CASE WHEN random() < 0.8
                    THEN 1 + (payer * 131 + floor(random() * 20)::bigint * 7919) % ($users - 1)
                    ELSE 1 + floor(random() * ($users - 1))::bigint END AS off,
               round((5 + 2000 * random() ^ 6)::numeric, 2) AS amount
          FROM (SELECT i, 1 + floor(random() * $users)::bigint AS payer
                  FROM generate_series($2, $3 - 1) i) r) g;
RESET session_replication_role;
SQL
}

# bench_grow_history USERS TARGET: the history grown to TARGET payments
# (bench_load_payments), and its state counted (bench_count_state).
bench_grow_history() {
  local t
  [ "$2" -gt "$BENCH_LOADED" ] || return 0
  say "history: loading payments $BENCH_LOADED..$2"
  t=$(date +%s)
  bench_load_payments "$1" "$BENCH_LOADED" "$2"
  bench_count_state
  BENCH_LOADED=$2
  say "history: $BENCH_LOADED payments, $(( $(date +%s) - t )) s"
}

# The per-account state as the history left it, so that every run starts
# from it: a run's payments are deleted afterwards with the triggers off,
# and bench_restore_state takes what they added to the state out again, or
# later runs would score against the earlier runs' activity.  A run
# touches the pairs it pays (their last_at moves to the run's time), every
# account's totals, and the rows of the current day and hour.
bench_save_state() {
  bench_psql <<SQL
DROP TABLE IF EXISTS bench.pair_saved, bench.account_saved, bench.daily_saved, bench.hourly_saved;
CREATE TABLE bench.pair_saved AS SELECT * FROM p2pay.pair_stats;
ALTER TABLE bench.pair_saved ADD PRIMARY KEY (payer_id, payee_id);
CREATE TABLE bench.account_saved AS SELECT * FROM p2pay.account_stats;
CREATE TABLE bench.daily_saved AS
  SELECT * FROM p2pay.account_daily WHERE day >= current_date - 1;
CREATE TABLE IF NOT EXISTS bench.saved_at (day date, hour timestamptz, at timestamptz);
TRUNCATE bench.saved_at;
INSERT INTO bench.saved_at VALUES (current_date - 1, date_trunc('hour', now()) - interval '1 hour', now());
SQL
  # vacuumed now, so that autovacuum has no reason to visit the copies
  # during a run
  bench_psql -c "VACUUM ANALYZE bench.pair_saved, bench.account_saved, bench.daily_saved"
}
bench_restore_state() {
  bench_psql <<SQL
WITH gone AS (DELETE FROM p2pay.pair_stats s USING bench.saved_at b
               WHERE s.last_at >= b.at RETURNING s.payer_id, s.payee_id)
INSERT INTO p2pay.pair_stats SELECT k.* FROM bench.pair_saved k JOIN gone USING (payer_id, payee_id);
DELETE FROM p2pay.account_stats;
INSERT INTO p2pay.account_stats SELECT * FROM bench.account_saved;
DELETE FROM p2pay.account_daily d USING p2pay.users u, bench.saved_at b
 WHERE d.user_id = u.id AND d.day >= b.day;
INSERT INTO p2pay.account_daily SELECT * FROM bench.daily_saved;
VACUUM p2pay.pair_stats, p2pay.account_stats, p2pay.account_daily;
SQL
}

# bench_forget_since MAXID: the payments after id MAXID deleted with the
# triggers off, and the state restored, so that the next run starts from
# the same history.
bench_forget_since() {
  bench_psql -c "SET session_replication_role = replica" \
    -c "DELETE FROM p2pay.payments WHERE id > $1" -c "RESET session_replication_role" \
    -c "VACUUM p2pay.payments" >/dev/null
  bench_restore_state
}

# bench_pay_script USERS FILE: the pgbench script of one payment per
# transaction: a random payer of users 1..USERS pays one of its usual
# payees or (one in five) anyone, an amount like the history's.
bench_pay_script() {
  local users=$1
  cat >"$2" <<PGBENCH
\\set payer random(1, $users)
\\set k random(0, 19)
\\set off case when random(1, 100) <= 80 then 1 + (:payer * 131 + :k * 7919) % ($users - 1) else random(1, $users - 1) end
\\set payee 1 + (:payer - 1 + :off) % $users
\\set cents random_exponential(500, 2000000, 46)
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
VALUES (bench.uid(:payer), bench.uid(:payee), :cents / 100.0, 'USD', '$BENCH_BANK');
PGBENCH
  if [ "$(id -u)" = 0 ]; then chown postgres: "$2"; fi
}
