# scripts/lib.sh: shared by test.sh, demo.sh and bench scripts.
# Installs packages, builds and installs p2pay, and runs throwaway clusters
# as an unprivileged user (PostgreSQL refuses to run as root).

PG_MAJOR=${PG_MAJOR:-15}
# PG_BIN may point at another installation's programs (a relocated copy, or
# another major version); builds and clusters then use its pg_config.
PG_BIN=${PG_BIN:-/usr/lib/postgresql/$PG_MAJOR/bin}
export PATH="$PG_BIN:$PATH"

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
    for v in PGHOST PGPORT PGUSER PGDATABASE PERL5LIB PGOPTIONS; do
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

# Build p2pay with warnings as errors and install it into PostgreSQL.  make
# also builds tools/p2pay-forward, which links librdkafka: every script that
# builds gets it here, whatever its own package list says.
build_and_install() {
  ensure_packages librdkafka-dev
  make -s PG_CONFIG="$PG_BIN/pg_config"
  as_root make -s install PG_CONFIG="$PG_BIN/pg_config"
}

# A TCP port nobody listens on.
free_port() {
  local port
  for port in $(seq 54320 54400); do
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

# Whether this server knows the output_plugin_libraries setting (15.19+).
has_output_plugin_libraries() {
  local settings
  settings=$("$PG_BIN/postgres" --describe-config 2>/dev/null)
  [[ $settings == *$'\n'output_plugin_libraries$'\t'* ]]
}

# start_cluster DIR PORT: initdb and start a cluster whose data, socket and
# log live in DIR, with p2pay preloaded; sets PGHOST, PGPORT, PGUSER,
# PGDATABASE.  OUTPUT_PLUGINS lists the output plugins the server accepts
# (pgoutput, test_decoding, p2pay); CLUSTER_CONF, settings to add, one per
# line.
start_cluster() {
  local dir=$1 port=$2
  as_pg initdb -D "$dir/data" -U postgres -A trust --no-sync >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log"; return 1; }
  {
    echo "port = $port"
    echo "listen_addresses = '127.0.0.1'"
    echo "unix_socket_directories = '$dir'"
    echo "wal_level = logical"
    echo "max_replication_slots = 10"
    echo "max_wal_senders = 10"
    echo "fsync = off"
    # p2pay.rule_stats keeps its counters in shared memory, reserved at start.
    echo "shared_preload_libraries = 'p2pay'"
    if has_output_plugin_libraries; then
      echo "output_plugin_libraries = '${OUTPUT_PLUGINS:-pgoutput, test_decoding, p2pay}'"
    fi
    if [ -n "${CLUSTER_CONF:-}" ]; then echo "$CLUSTER_CONF"; fi
  } | as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
  as_pg pg_ctl -D "$dir/data" -l "$dir/server.log" -w start >/dev/null ||
    { cat "$dir/server.log"; return 1; }
  export PGHOST=$dir PGPORT=$port PGUSER=postgres PGDATABASE=postgres
}

# psql as the cluster user: stop at the first error, no pager, no psqlrc.
pg_psql() {
  as_pg psql -X -q -v ON_ERROR_STOP=1 -P pager=off "$@"
}

# stop_cluster DIR
stop_cluster() {
  as_pg pg_ctl -D "$1/data" -m fast -w stop >/dev/null 2>&1 || true
}
