#!/usr/bin/env bash
# make test: install what is needed, build and install p2pay, then run every
# suite (pg_regress, isolation, TAP, pgTAP) against throwaway clusters,
# twice: once on a plain p2pay.payments, once with payments partitioned
# after each CREATE EXTENSION p2pay and managed by pg_partman
# (scripts/partition-on-create.sql).  Exits non-zero on any failure.  The
# clusters are configured as make installcheck configures its own instance
# (test/instance.conf), and the first run's pg_regress and isolation suites
# are that make installcheck.
# P2PAY_RUNS=plain or P2PAY_RUNS=partitioned runs one of the two.
# P2PAY_TAP_RUNS names the runs whose TAP suite runs (default: every run),
# e.g. P2PAY_TAP_RUNS=plain: the partitioned run then runs its pg_regress,
# isolation and pgTAP suites only, and says so.
#
# make test SANITIZE=1 (or SANITIZE=1 bash scripts/test.sh): the same suites
# with p2pay.so and the tools built with ASan and UBSan, every server started
# with the sanitizers' runtime, and one more check at the end: that no
# process wrote a sanitizer report.  The sanitized build is made in the
# suites' copy of the tree, and the plain build is installed again at exit.
#
# make test ASSERT=1: the same suites with p2pay.so built with PostgreSQL's
# assertions on (make ASSERT=1), made and installed like the sanitized build
# (with which it combines: make test SANITIZE=1 ASSERT=1, as CI runs it), and
# the plain build installed again at exit.
#
# P2PAY_SERVER_SUITES_ONLY=1: only the suites whose result can depend on the
# PostgreSQL version (pg_regress, isolation, TAP, pgTAP); the browser and
# OpenAPI suites, the compose file's and make install's links, and the
# chromium, Node.js and docker-compose they need, are skipped, and the
# run says so.  scripts/test-version.sh sets it for a second version's run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_packages build-essential postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR \
  postgresql-$PG_MAJOR-pgtap libtap-parser-sourcehandler-pgtap-perl libipc-run-perl python3-psycopg2 \
  librdkafka-dev libmicrohttpd-dev postgresql-$PG_MAJOR-partman curl openssl
install_package_extension postgresql-$PG_MAJOR-partman
# t/017_monitoring.pl runs the exporter itself, on a port of its own.
ensure_packages_no_service prometheus-postgres-exporter
server_suites_only=
case ${P2PAY_SERVER_SUITES_ONLY:-} in
  ''|0) ;;
  1) server_suites_only=1 ;;
  *) echo "make test: P2PAY_SERVER_SUITES_ONLY must be 1, 0 or empty, not '$P2PAY_SERVER_SUITES_ONLY'" >&2; exit 2 ;;
esac
if [ -z "$server_suites_only" ]; then
  ensure_packages chromium
  # Node.js and npm: the OpenAPI validator, Swagger UI and the browser tests'
  # driver (http/package.json).  A machine that has them from elsewhere keeps
  # them.
  command -v npm >/dev/null || ensure_packages nodejs npm
  # Debian 12's docker-compose (1.29) validates docker/docker-compose.yml
  # without an engine; the engine it recommends (docker.io) is not needed.
  if ! dpkg-query -W -f='${Status}' docker-compose 2>/dev/null | grep -q 'install ok installed'; then
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker-compose
  fi
fi
case ${SANITIZE:-} in
  ''|0) SANITIZE= ;;
  1) ;;
  *) echo "make test: SANITIZE must be 1 or empty, not '$SANITIZE'" >&2; exit 2 ;;
esac
case ${ASSERT:-} in
  ''|0) ASSERT= ;;
  1) ;;
  *) echo "make test: ASSERT must be 1 or empty, not '$ASSERT'" >&2; exit 2 ;;
esac
runs=${P2PAY_RUNS:-plain partitioned}
tap_runs=${P2PAY_TAP_RUNS-$runs}
# Both lists checked before anything is built.
check_runs() {
  local run
  for run in $2; do
    case $run in
      plain|partitioned) ;;
      *) echo "make test: $1 takes plain and partitioned, not '$run'" >&2; exit 2 ;;
    esac
  done
}
check_runs P2PAY_RUNS "$runs"
check_runs P2PAY_TAP_RUNS "$tap_runs"
build_and_install
# The programs, which make builds only when it finds their libraries (the
# packages above): built here whatever make found, so that a missing one
# fails the run; and p2pay-forward's test build, which t/007 runs.
make -s PG_CONFIG="$PG_BIN/pg_config" SANITIZE= tools tools-test

WORK=$(make_workdir test)
cleanup() {
  stop_cluster "$WORK"
  # A sanitized p2pay.so cannot load into a server without the runtime, and
  # one with assertions is not the build for use.
  if [ -n "$SANITIZE$ASSERT" ]; then
    as_root make -s install PG_CONFIG="$PG_BIN/pg_config" SANITIZE= ASSERT=
  fi
  [ -n "${P2PAY_KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

# The suites write results into the tree: run them in a copy the cluster
# user owns.
mkdir "$WORK/src"
tar --exclude=.git --exclude=tmp_check --exclude=tmp_check_iso --exclude=results --exclude=log -cf - . | tar -C "$WORK/src" -xf -
bindir=()
if [ -n "$SANITIZE$ASSERT" ]; then
  make -C "$WORK/src" -s PG_CONFIG="$PG_BIN/pg_config" SANITIZE="$SANITIZE" ASSERT="$ASSERT" all tools tools-test
  as_root make -C "$WORK/src" -s install PG_CONFIG="$PG_BIN/pg_config" SANITIZE="$SANITIZE" ASSERT="$ASSERT"
fi
if [ -n "$ASSERT" ]; then
  # Only a p2pay.so built with assertions calls ExceptionalCondition().
  symbols=$(nm -D --undefined-only "$("$PG_BIN/pg_config" --pkglibdir)/p2pay.so")
  if [[ $symbols != *' ExceptionalCondition'* ]]; then
    echo "make test ASSERT=1: the installed p2pay.so was built without assertions" >&2
    exit 1
  fi
fi
if [ -n "$SANITIZE" ]; then
  sanitizer_setup "$WORK"
  bindir=(bindir="$SANITIZER_BIN")
fi
[ "$(id -u)" = 0 ] && chown -R postgres: "$WORK/src"

start_cluster "$WORK" "$(free_port)"
if [ -n "$SANITIZE" ]; then sanitizer_check_server "$WORK"; fi
export PERL5LIB=$("$PG_BIN/pg_config" --pkglibdir)/pgxs/src/test/perl

# Screenshots and logs the browser tests keep, in the checkout.
ARTIFACTS=$PWD/test-artifacts
rm -rf "$ARTIFACTS"; mkdir -p "$ARTIFACTS"
[ "$(id -u)" = 0 ] && chown postgres: "$ARTIFACTS"

passed=0 failed=0
# run_suite NAME COMMAND...: run one suite, count it, keep going on failure.
run_suite() {
  local name="$run: $1" start=$SECONDS; shift
  echo "== $name"
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "== $name: FAILED"; fi
  echo "== $name: $((SECONDS - start)) s"
}
show_failures() {
  cat "$WORK/src/regression.diffs" 2>/dev/null || true
  tail -n 60 "$WORK"/src/tmp_check*/log/postmaster.log 2>/dev/null || true
  cat "$WORK/src/output_iso/regression.diffs" 2>/dev/null || true
  for f in "$WORK"/src/tmp_check/log/regress_log_*; do [ -f "$f" ] && tail -n 60 "$f"; done
  return 1
}
# check MAKE_ARGS...: make installcheck in the copy.  The plain run's
# pg_regress and isolation suites run on the instance make installcheck
# starts itself; the partitioned run's on the cluster, whose template1 holds
# the event trigger (USE_RUNNING=1), and so do the sanitized run's, whose
# servers need the runtime that only pg_ctl (in SANITIZER_BIN) gives them.
check() {
  local running=
  if [ -n "$P2PAY_PARTITIONED" ] || [ -n "$SANITIZE" ]; then running=1; fi
  as_pg env ${P2PAY_PARTITIONED:+P2PAY_PARTITIONED=1} make -C "$WORK/src" -s installcheck \
    PG_CONFIG="$PG_BIN/pg_config" USE_RUNNING=$running \
    ${P2PAY_PARTITIONED:+EXTRA_REGRESS_OPTS=--use-existing} "$@" ||
    show_failures
}

# regress_database NAME: a database made from template1 (which holds the
# second run's event trigger) with the settings pg_regress gives the
# databases it makes itself, for pg_regress --use-existing.
regress_database() {
  local s
  pg_psql -d postgres -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null
  for s in "lc_messages TO 'C'" "lc_monetary TO 'C'" "lc_numeric TO 'C'" "lc_time TO 'C'" \
    "bytea_output TO 'hex'" "timezone_abbreviations TO 'Default'"; do
    pg_psql -d postgres -c "ALTER DATABASE $1 SET $s" >/dev/null
  done
}

# run_suites: the four suites, against the running cluster.
run_suites() {
  local start=$SECONDS
  run_suite "pg_regress (sql/)" check ISOLATION= TAP_TESTS=
  run_suite "isolation (specs/)" check REGRESS= TAP_TESTS=
  if [[ " $tap_runs " == *" $run "* ]]; then
    run_suite "TAP (t/)" check REGRESS= ISOLATION= "${bindir[@]}"
  else
    echo "== $run: TAP (t/): skipped (P2PAY_TAP_RUNS=$tap_runs)"
  fi
  pg_psql -d postgres -c "DROP DATABASE IF EXISTS p2pay_pgtap" -c "CREATE DATABASE p2pay_pgtap" >/dev/null
  run_suite "pgTAP (test/pgtap/)" as_pg env PGDATABASE=p2pay_pgtap pg_prove --ext .sql -r "$WORK/src/test/pgtap"
  # The pages in a real browser, once (the payments' layout does not change
  # what a page shows).
  if [ "$run" = plain ] && [ -z "$server_suites_only" ]; then
    run_suite "browser (test/browser/)" as_pg env P2PAY_BROWSER_ARTIFACTS="$ARTIFACTS" \
      bash "$WORK/src/test/browser/run.sh"
  fi
  echo "== $run: every suite in $((SECONDS - start)) s"
}

run=once
if [ -z "$server_suites_only" ]; then
  run_suite "OpenAPI (http/openapi.json)" node "$WORK/src/test/http/validate-openapi.mjs"
  # The compose file, against the Compose schema and p2pay's rules for it
  # (no Docker engine needed).
  run_suite "compose file (docker/)" bash "$WORK/src/scripts/check-compose.sh"

  # make install links the programs into /usr/local/bin, under DESTDIR, to
  # where it installed them; make uninstall removes those links.
  install_links() {
    local dest="$WORK/destdir" bin p status=0
    local mk=(make -C "$WORK/src" -s PG_CONFIG="$PG_BIN/pg_config" DESTDIR="$dest")
    bin=$("$PG_BIN/pg_config" --bindir)
    as_pg "${mk[@]}" install >/dev/null || return 1
    for p in p2pay-stream p2pay-forward p2pay-http; do
      if [ "$(readlink "$dest/usr/local/bin/$p")" != "$bin/$p" ] || [ ! -x "$dest$bin/$p" ]; then
        echo "make install: $dest/usr/local/bin/$p is not a link to the installed $bin/$p"
        status=1
      fi
    done
    as_pg "${mk[@]}" uninstall >/dev/null || return 1
    for p in p2pay-stream p2pay-forward p2pay-http; do
      if [ -L "$dest/usr/local/bin/$p" ]; then echo "make uninstall: left $dest/usr/local/bin/$p"; status=1; fi
    done
    rm -rf "$dest"
    return $status
  }
  run_suite "install links (make install DESTDIR=...)" install_links

  # Without librdkafka and libmicrohttpd (as if their headers were missing:
  # HAVE_RDKAFKA=no HAVE_MICROHTTPD=no), make builds the extension and
  # p2pay-stream, says what it skipped, and make install installs and links
  # only what was built; make tools says which library is missing.
  without_tool_libraries() {
    local tree="$WORK/nolibs" dest="$WORK/nolibs-dest" bin out p status=0
    local mk=(make -C "$tree" PG_CONFIG="$PG_BIN/pg_config" HAVE_RDKAFKA=no HAVE_MICROHTTPD=no HAVE_NPM=)
    bin=$("$PG_BIN/pg_config" --bindir)
    mkdir "$tree"
    tar -C "$WORK/src" --exclude=tmp_check --exclude=results --exclude=log --exclude='*.o' \
      --exclude='*.so' --exclude='*.bc' --exclude=.build-mode --exclude=http/node_modules \
      --exclude=tools/p2pay-stream --exclude=tools/p2pay-forward --exclude=tools/p2pay-forward-test \
      --exclude=tools/p2pay-http -cf - . | tar -C "$tree" -xf -
    out=$("${mk[@]}" -s 2>&1) || { echo "$out"; echo "make failed without the tools' libraries"; return 1; }
    [ -f "$tree/p2pay.so" ] || { echo "make built no p2pay.so"; status=1; }
    [ -x "$tree/tools/p2pay-stream" ] || { echo "make built no tools/p2pay-stream"; status=1; }
    for p in p2pay-forward p2pay-http; do
      [ ! -e "$tree/tools/$p" ] || { echo "make built tools/$p without its library"; status=1; }
    done
    grep -qx 'make: skipped p2pay-forward (no librdkafka-dev) p2pay-http (no libmicrohttpd-dev): install those Debian packages, then make tools' <<<"$out" ||
      { echo "make did not say what it skipped: $out"; status=1; }
    "${mk[@]}" -s install DESTDIR="$dest" >/dev/null 2>&1 || { echo "make install failed"; status=1; }
    [ -x "$dest$bin/p2pay-stream" ] && [ -L "$dest/usr/local/bin/p2pay-stream" ] ||
      { echo "make install did not install and link p2pay-stream"; status=1; }
    for p in p2pay-forward p2pay-http; do
      [ ! -e "$dest$bin/$p" ] && [ ! -L "$dest/usr/local/bin/$p" ] ||
        { echo "make install installed $p, which was not built"; status=1; }
    done
    out=$("${mk[@]}" -s tools 2>&1) && { echo "make tools succeeded without librdkafka"; status=1; }
    grep -q 'make: tools/p2pay-forward needs librdkafka (Debian: librdkafka-dev)' <<<"$out" ||
      { echo "make tools did not name the missing library: $out"; status=1; }
    rm -rf "$tree" "$dest"
    return $status
  }
  run_suite "make without librdkafka and libmicrohttpd" without_tool_libraries
else
  echo "== skipped (P2PAY_SERVER_SUITES_ONLY=1): OpenAPI (http/openapi.json), compose file (docker/), install links, browser (test/browser/)"
fi

for run in $runs; do
  case $run in
    plain) P2PAY_PARTITIONED= ;;
    partitioned)
      # TAP nodes load the event trigger themselves (t/lib/P2payNode.pm);
      # pg_regress and pg_isolation_regress use databases made here.
      P2PAY_PARTITIONED=1
      pg_psql -d template1 -f "$WORK/src/scripts/partition-on-create.sql" >/dev/null
      regress_database contrib_regression
      regress_database isolation_regression
      ;;
  esac
  run_suites
done

if [ -n "$SANITIZE" ]; then
  stop_cluster "$WORK"
  run_suite "sanitizer reports" sanitizer_reports "$WORK"
fi

echo "make test suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
