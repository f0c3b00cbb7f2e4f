#!/usr/bin/env bash
# scripts/check-docker.sh (make check-docker): build docker/Dockerfile and
# run what the compose file runs, without a Docker engine.  As root.
#
# 1. The base: a Debian 12 (bookworm) root made with debootstrap, with
#    Debian's postgresql-$PG_MAJOR installed the way the official postgres
#    image installs PGDG's (no main cluster, no service started), and the
#    image's PG_MAJOR, PATH and PGDATA.  It stands in for the FROM image,
#    whose name is checked to be postgres:<major>.<minor>-bookworm.
# 2. The Dockerfile's own lines, read from the file, in a copy of that root
#    per stage: ARG, ENV, WORKDIR, COPY (from the build context, filtered as
#    git and Dockerfile.dockerignore filter it, or --from a stage) and RUN
#    (with /bin/sh -c, in a chroot).  So the check runs exactly what
#    `docker build` would run, and can't drift from it.
# 3. In the final stage's root: what the postgres image's entrypoint does on
#    an empty data directory (initdb, POSTGRES_DB, then every file of
#    /docker-entrypoint-initdb.d in order: .sql through psql with
#    ON_ERROR_STOP, .sh sourced), with the secrets the compose file names
#    in /run/secrets and the db service's command-line settings read from
#    docker-compose.yml; then the server as the db service starts it.
#    Checked: the extension is installed; an insert is scored; the three
#    programs run from PATH (--help); p2pay-forward, run as the compose file
#    runs it (p2pay-with-passfile, role p2pay_forward, slot p2pay_kafka,
#    --to stdout in place of Kafka), delivers a flagged payment; p2pay-http's
#    live feed, as role p2pay_feed on slot p2pay_http, streams.
#
# Not checked: the official image itself (PGDG's packages, its entrypoint
# script, gosu), BuildKit's handling of the context, the Kafka containers,
# and anything about containers (networks, volumes, health checks, restart
# policies): no Docker engine runs here.  Needs network access to the
# Debian archive and to npm's registry.  Mounts (/proc, /dev) are undone
# and the roots deleted at exit; P2PAY_KEEP=1 keeps the roots.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

if [ "$(id -u)" != 0 ]; then
  echo "check-docker: run as root (debootstrap, chroot and mounts need it)" >&2
  exit 2
fi
ensure_packages debootstrap python3-yaml curl

MIRROR=${P2PAY_DEBIAN_MIRROR:-http://deb.debian.org/debian}
DOCKERFILE=docker/Dockerfile
COMPOSE=docker/docker-compose.yml
WORK=$(mktemp -d /tmp/p2pay-check-docker.XXXXXX)
chmod 755 "$WORK"
START=$SECONDS
MOUNTED=()
SERVER_ROOT=

step() { echo "== check-docker: $* ($((SECONDS - START)) s)"; }

# Unmount everything under WORK, and delete WORK only if nothing is still
# mounted there (a /dev bind mount must never meet rm -rf).
cleanup() {
  local status=$? root
  if [ -n "$SERVER_ROOT" ]; then
    chroot "$SERVER_ROOT" runuser -u postgres -- pg_ctl -D /var/lib/postgresql/data -m fast -w stop \
      >/dev/null 2>&1 || true
  fi
  for root in "${MOUNTED[@]}"; do
    umount -R "$root/dev" 2>/dev/null || umount -R -l "$root/dev" 2>/dev/null || true
    umount "$root/proc" 2>/dev/null || umount -l "$root/proc" 2>/dev/null || true
  done
  if findmnt -rn -o TARGET | grep -q "^$WORK"; then
    echo "check-docker: still mounted under $WORK, not deleted:" >&2
    findmnt -rn -o TARGET | grep "^$WORK" >&2
  elif [ -n "${P2PAY_KEEP:-}" ]; then
    echo "check-docker: kept $WORK"
  else
    rm -rf "$WORK"
  fi
  exit $status
}
trap cleanup EXIT

# mount_root ROOT: /proc and /dev for commands run in ROOT (once).
mount_root() {
  local root=$1 r
  for r in "${MOUNTED[@]}"; do [ "$r" = "$root" ] && return 0; done
  mount -t proc proc "$root/proc"
  MOUNTED+=("$root")
  mount --rbind /dev "$root/dev"
  mount --make-rslave "$root/dev"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  [ -z "$LOCAL_CA" ] || cat /usr/local/share/ca-certificates/*.crt > "$root$LOCAL_CA"
}

# in_root ROOT DIR COMMAND: COMMAND with /bin/sh -c in ROOT, in DIR, with
# the stage's environment (ENVS) only, as RUN runs it.
in_root() {
  local root=$1 dir=$2
  shift 2
  mount_root "$root"
  chroot "$root" /usr/bin/env -i "${ENVS[@]}" /bin/sh -c "cd \"\$1\" && $*" sh "$dir"
}

###########################################################################
# The base, standing in for the FROM image.
###########################################################################
PG_MAJOR=$(sed -n 's/^ARG PG_IMAGE=postgres:\([0-9]*\)\.[0-9]*-bookworm$/\1/p' "$DOCKERFILE")
if [ -z "$PG_MAJOR" ]; then
  echo "check-docker: $DOCKERFILE: ARG PG_IMAGE is not postgres:<major>.<minor>-bookworm" >&2
  exit 1
fi
IMAGE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/postgresql/$PG_MAJOR/bin
BASE_ENVS=(PATH="$IMAGE_PATH" PG_MAJOR="$PG_MAJOR" PGDATA=/var/lib/postgresql/data LANG=C.UTF-8 HOME=/root)
# A host that reaches npm's registry through a proxy of its own trusts that
# proxy's CA (in /usr/local/share/ca-certificates): so does npm in the
# chroot (NODE_EXTRA_CA_CERTS), as a Docker build on that host would need.
LOCAL_CA=
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  LOCAL_CA=/etc/p2pay-check-local-ca.pem
  BASE_ENVS+=(NODE_EXTRA_CA_CERTS="$LOCAL_CA")
fi

ENVS=("${BASE_ENVS[@]}")
# P2PAY_DOCKER_BASE=FILE.tar keeps the base between runs (made if missing).
if [ -n "${P2PAY_DOCKER_BASE:-}" ] && [ -f "$P2PAY_DOCKER_BASE" ]; then
  step "the base from $P2PAY_DOCKER_BASE"
  mkdir "$WORK/base"
  tar -C "$WORK/base" -xf "$P2PAY_DOCKER_BASE"
else
step "debootstrap bookworm (minbase) from $MIRROR"
debootstrap --variant=minbase bookworm "$WORK/base" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
  tail -n 30 "$WORK/debootstrap.log" >&2
  exit 1
}
step "the base: postgresql-$PG_MAJOR as the postgres image installs it"
# With the updates and security suites, as the image's Debian has them:
# bookworm alone holds an older PostgreSQL minor release.
cat > "$WORK/base/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb ${P2PAY_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security} bookworm-security main
EOF
printf '#!/bin/sh\nexit 101\n' > "$WORK/base/usr/sbin/policy-rc.d"
chmod 755 "$WORK/base/usr/sbin/policy-rc.d"
mkdir -p "$WORK/base/etc/postgresql-common/createcluster.d"
echo 'create_main_cluster = false' > "$WORK/base/etc/postgresql-common/createcluster.d/p2pay-check.conf"
in_root "$WORK/base" / "set -e; apt-get update -q >/dev/null;
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql-$PG_MAJOR >/dev/null;
  rm -rf /var/lib/apt/lists/*; mkdir -p /docker-entrypoint-initdb.d /var/lib/postgresql/data;
  chown postgres: /var/lib/postgresql/data; chmod 700 /var/lib/postgresql/data"
umount -R "$WORK/base/dev"; umount "$WORK/base/proc"; MOUNTED=()
[ -z "${P2PAY_DOCKER_BASE:-}" ] || tar -C "$WORK/base" -cf "$P2PAY_DOCKER_BASE" .
fi
PG_VERSION=$(chroot "$WORK/base" "/usr/lib/postgresql/$PG_MAJOR/bin/postgres" --version)
echo "base server: $PG_VERSION (the Dockerfile names $(sed -n 's/^ARG PG_IMAGE=//p' "$DOCKERFILE"))"

# The build context: the files git knows of (tracked, or untracked and not
# ignored), less what Dockerfile.dockerignore leaves out.
step "the build context"
mkdir "$WORK/context"
excludes=()
while IFS= read -r pattern; do
  case $pattern in ''|'#'*) continue ;; esac
  excludes+=(--exclude="${pattern#\*\*/}")
done < "${DOCKERFILE}.dockerignore"
git ls-files -co --exclude-standard -z | tar "${excludes[@]}" --null -T - -cf - | tar -C "$WORK/context" -xf -

###########################################################################
# The Dockerfile's lines.
###########################################################################
declare -A ARGS STAGES
stage=-1 root= dir=/ line=
# Each instruction on one line: continuations joined, comments dropped.
mapfile -t INSTRUCTIONS < <(sed -e '/^[[:space:]]*#/d' "$DOCKERFILE" | sed -e ':a' -e '/\\$/{N; s/\\\n//; ba}' |
  grep -v '^[[:space:]]*$')
expand() { local s=$1 k; for k in "${!ARGS[@]}"; do s=${s//\$\{$k\}/${ARGS[$k]}}; s=${s//\$$k/${ARGS[$k]}}; done; echo "$s"; }
for line in "${INSTRUCTIONS[@]}"; do
  read -r op rest <<<"$line"
  case ${op^^} in
    ARG)
      name=${rest%%=*}
      [ "$name" != "$rest" ] && ARGS[$name]=${rest#*=}
      ;;
    FROM)
      read -r image _as name <<<"$rest"
      image=$(expand "$image")
      case $image in
        postgres:"$PG_MAJOR".*-bookworm) ;;
        *) echo "check-docker: FROM $image: only postgres:$PG_MAJOR.<minor>-bookworm is emulated" >&2; exit 1 ;;
      esac
      stage=$((stage + 1)) dir=/
      root=$WORK/stage$stage
      ENVS=("${BASE_ENVS[@]}")
      step "FROM $image${name:+ AS $name} (stage $stage)"
      cp -a "$WORK/base" "$root"
      [ -n "${name:-}" ] && STAGES[$name]=$root
      name=
      ;;
    ENV)
      ENVS+=("${rest%% *}=${rest#* }")
      ;;
    WORKDIR)
      dir=$rest
      mkdir -p "$root$dir"
      ;;
    COPY)
      from=$WORK/context
      if [[ $rest == --from=* ]]; then
        from=${STAGES[$(sed 's/^--from=\([^ ]*\).*/\1/' <<<"$rest")]}
        rest=${rest#* }
      fi
      read -r src dest <<<"$rest"
      case $dest in /*) ;; *) dest=$dir/$dest ;; esac
      step "COPY $src -> $dest"
      if [ -d "$from/$src" ]; then
        mkdir -p "$root$dest"
        cp -a "$from/$src/." "$root$dest/"
      else
        case $dest in */) mkdir -p "$root$dest" ;; *) mkdir -p "$(dirname "$root$dest")" ;; esac
        cp -a "$from/$src" "$root$dest"
      fi
      ;;
    RUN)
      step "RUN in stage $stage: ${rest:0:70}..."
      if ! in_root "$root" "$dir" "$rest" >"$WORK/run.log" 2>&1; then
        tail -n 40 "$WORK/run.log" >&2
        echo "check-docker: RUN failed in stage $stage" >&2
        exit 1
      fi
      tail -n 25 "$WORK/run.log"
      ;;
    *)
      echo "check-docker: $DOCKERFILE: $op is not emulated" >&2
      exit 1
      ;;
  esac
done
FINAL=$root

###########################################################################
# The final image, run as the compose file runs it.
###########################################################################
step "the entrypoint's first start, with the compose file's secrets and settings"
mount_root "$FINAL"
# Passwords with a colon and a backslash, which a pgpass line must escape.
mkdir -p "$FINAL/run/secrets"
for s in postgres_password p2pay_forward_password p2pay_feed_password; do
  printf '%s:x\\y\n' "$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$FINAL/run/secrets/$s"
done
chmod 644 "$FINAL"/run/secrets/*
# The db service's settings, from the compose file.
mapfile -t SETTINGS < <(python3 - "$COMPOSE" <<'PY'
import sys, yaml
command = yaml.safe_load(open(sys.argv[1]))["services"]["db"]["command"]
assert command[0] == "postgres", command
print("\n".join(command[1:]))
PY
)
PORT=$(free_port)
pg() { chroot "$FINAL" /usr/bin/env -i "${BASE_ENVS[@]}" runuser -u postgres -- "$@"; }
psql_in() { pg psql -X -q -v ON_ERROR_STOP=1 -h /tmp -p "$PORT" -U postgres "$@"; }

pg initdb -D /var/lib/postgresql/data -U postgres --pwfile=/run/secrets/postgres_password \
  --auth-local=trust --auth-host=scram-sha-256 >/dev/null
echo "host all all all scram-sha-256" >> "$FINAL/var/lib/postgresql/data/pg_hba.conf"
SERVER_ROOT=$FINAL
# The entrypoint's temporary server: socket only.
pg pg_ctl -D /var/lib/postgresql/data -w -o "$(printf '%q ' "${SETTINGS[@]}") -c listen_addresses='' -p $PORT -k /tmp" \
  -l /var/lib/postgresql/init.log start >/dev/null
psql_in -d postgres -c 'CREATE DATABASE p2pay'
for f in $(cd "$FINAL/docker-entrypoint-initdb.d" && ls); do
  echo "running /docker-entrypoint-initdb.d/$f"
  case $f in
    *.sql) psql_in -d p2pay -f "/docker-entrypoint-initdb.d/$f" ;;
    *.sh)
      # The entrypoint runs an executable one, without its functions, and
      # sources the others.
      pg bash -c "set -e; PGPORT=$PORT PGHOST=/tmp; export PGPORT PGHOST
        docker_process_sql() { psql -X -v ON_ERROR_STOP=1 --username postgres --no-password --dbname p2pay \"\$@\"; }
        if [ -x /docker-entrypoint-initdb.d/$f ]; then /docker-entrypoint-initdb.d/$f
        else . /docker-entrypoint-initdb.d/$f; fi"
      ;;
    *) echo "check-docker: $f: not run by the entrypoint" >&2; exit 1 ;;
  esac
done
pg pg_ctl -D /var/lib/postgresql/data -m fast -w stop >/dev/null

step "the server as the db service starts it"
pg pg_ctl -D /var/lib/postgresql/data -w \
  -o "$(printf '%q ' "${SETTINGS[@]}") -c listen_addresses=127.0.0.1 -p $PORT -k /tmp" \
  -l /var/lib/postgresql/server.log start >/dev/null
HTTP_PORT=$(free_port)

failures=0
check() {
  local what=$1; shift
  if "$@"; then echo "ok: $what"; else echo "FAILED: $what"; failures=$((failures + 1)); fi
}
equals() { [ "$1" = "$2" ] || { echo "  got: $1"; echo "  expected: $2"; return 1; }; }

check "CREATE EXTENSION p2pay ran at the first start" \
  equals "$(psql_in -d p2pay -Atc "SELECT extversion FROM pg_extension WHERE extname = 'p2pay'")" \
  "$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" p2pay.control)"
check "the roles: p2pay_app, p2pay_analyst, p2pay_admin; p2pay_forward and p2pay_feed can log in and replicate, nothing more" \
  equals "$(psql_in -d p2pay -Atc "SELECT string_agg(format('%s login=%s replication=%s superuser=%s createrole=%s createdb=%s bypassrls=%s',
      rolname, rolcanlogin, rolreplication, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls), '; ' ORDER BY rolname)
    FROM pg_roles WHERE rolname LIKE 'p2pay%'")" \
  "$(for r in p2pay_admin p2pay_analyst p2pay_app; do
       printf '%s login=f replication=f superuser=f createrole=f createdb=f bypassrls=f; ' $r
     done
     for r in p2pay_feed p2pay_forward; do
       printf '%s login=t replication=t superuser=f createrole=f createdb=f bypassrls=f; ' $r
     done | sed 's/; $//')"
check "the slots p2pay_http and p2pay_kafka exist, with plugin p2pay" \
  equals "$(psql_in -d p2pay -Atc "SELECT string_agg(slot_name || ' ' || plugin, ', ' ORDER BY slot_name) FROM pg_replication_slots")" \
  "p2pay_http p2pay, p2pay_kafka p2pay"
for p in p2pay-stream p2pay-forward p2pay-http p2pay-with-passfile; do
  check "$p is on PATH (/usr/local/bin)" \
    equals "$(chroot "$FINAL" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin sh -c "command -v $p")" \
    "/usr/local/bin/$p"
done
for p in p2pay-stream p2pay-forward p2pay-http; do
  check "$p --help runs" pg sh -c "$p --help >/dev/null"
done

# The forwarder as the compose file runs it, with --to stdout for Kafka.
# Each writes its pid (kept through the execs) for the stop at the end.
pg sh -c "echo \$\$ >/tmp/forward.pid; P2PAY_DSN='host=127.0.0.1 port=$PORT dbname=p2pay user=p2pay_forward' \
  P2PAY_SLOT=p2pay_kafka exec p2pay-with-passfile /run/secrets/p2pay_forward_password p2pay-forward --to stdout -o min-decision=review \
  >/tmp/forward.out 2>/tmp/forward.err" &
forward_pid=$!
pg sh -c "echo \$\$ >/tmp/http.pid; P2PAY_DSN='host=127.0.0.1 port=$PORT dbname=p2pay' P2PAY_HTTP_LISTEN=127.0.0.1:$HTTP_PORT \
  P2PAY_FEED_DSN='host=127.0.0.1 port=$PORT dbname=p2pay user=p2pay_feed' \
  exec p2pay-with-passfile /run/secrets/p2pay_feed_password p2pay-http --slot p2pay_http \
  >/tmp/http.out 2>/tmp/http.err" &
http_pid=$!
psql_in -d p2pay <<'SQL'
UPDATE p2pay.rules SET enabled = name IN ('amount_limit', 'unregistered_method');
INSERT INTO p2pay.users (id, first_name) VALUES
  ('00000000-0000-4000-8000-0000000000a1', 'payer'), ('00000000-0000-4000-8000-0000000000a2', 'payee');
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
  VALUES ('00000000-0000-4000-8000-0000000000a1', '00000000-0000-4000-8000-0000000000a2', 15000, 'USD',
          '00000000-0000-4000-8000-000000000001');
SQL
txid=$(psql_in -d p2pay -Atc "SELECT transaction_id FROM p2pay.payments")
check "an insert is scored (decision $(psql_in -d p2pay -Atc "SELECT decision FROM p2pay.payments"))" \
  equals "$(psql_in -d p2pay -Atc "SELECT decision <> 'approve' AND risk_score IS NOT NULL FROM p2pay.payments")" t
for _ in $(seq 1 60); do
  grep -q "$txid" "$FINAL/tmp/forward.out" 2>/dev/null && break
  sleep 0.5
done
check "p2pay-forward, as p2pay_forward with its password file, delivers the flagged payment from slot p2pay_kafka" \
  grep -q "\"transaction_id\": *\"$txid\"" "$FINAL/tmp/forward.out"
health=
for _ in $(seq 1 60); do
  health=$(curl -s "http://127.0.0.1:$HTTP_PORT/api/v1/health" || true)
  case $health in *streaming*) break ;; esac
  sleep 0.5
done
check "p2pay-http's live feed, as p2pay_feed with its password file, streams slot p2pay_http" \
  equals "$(tr -d ' \n' <<<"$health")" '{"status":"ok","feed":"streaming"}'
kill -TERM "$(cat "$FINAL/tmp/forward.pid")" "$(cat "$FINAL/tmp/http.pid")" 2>/dev/null || true
wait "$forward_pid" "$http_pid" 2>/dev/null || true
if [ "$failures" -gt 0 ]; then
  for f in tmp/forward.err tmp/http.err var/lib/postgresql/server.log; do
    echo "--- $f"; tail -n 20 "$FINAL/$f" 2>/dev/null || true
  done
fi

step "done: $failures failed"
[ "$failures" -eq 0 ]
