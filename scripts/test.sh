#!/usr/bin/env bash
# make test: install what is needed, build and install p2pay, then run every
# suite (pg_regress, pgTAP, TAP) against throwaway clusters.  Exits non-zero
# on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_packages build-essential postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR \
  postgresql-$PG_MAJOR-pgtap libtap-parser-sourcehandler-pgtap-perl libipc-run-perl \
  librdkafka-dev
build_and_install

WORK=$(make_workdir test)
cleanup() { stop_cluster "$WORK"; [ -n "${P2PAY_KEEP:-}" ] || rm -rf "$WORK"; }
trap cleanup EXIT

# The suites write results into the tree: run them in a copy the cluster
# user owns.
mkdir "$WORK/src"
tar --exclude=.git --exclude=tmp_check --exclude=results --exclude=log -cf - . | tar -C "$WORK/src" -xf -
[ "$(id -u)" = 0 ] && chown -R postgres: "$WORK/src"

start_cluster "$WORK" "$(free_port)"
export PERL5LIB=$("$PG_BIN/pg_config" --pkglibdir)/pgxs/src/test/perl

passed=0 failed=0
# run_suite NAME COMMAND...: run one suite, count it, keep going on failure.
run_suite() {
  local name=$1; shift
  echo "== $name"
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "== $name: FAILED"; fi
}
show_failures() {
  cat "$WORK/src/regression.diffs" 2>/dev/null || true
  cat "$WORK/src/output_iso/regression.diffs" 2>/dev/null || true
  for f in "$WORK"/src/tmp_check/log/regress_log_*; do [ -f "$f" ] && tail -n 60 "$f"; done
  return 1
}
check() { as_pg make -C "$WORK/src" -s installcheck PG_CONFIG="$PG_BIN/pg_config" "$@" || show_failures; }

run_suite "pg_regress (sql/)" check ISOLATION= TAP_TESTS=
run_suite "isolation (specs/)" check REGRESS= TAP_TESTS=
run_suite "TAP (t/)" check REGRESS= ISOLATION=
as_pg psql -q -X -c 'CREATE DATABASE p2pay_pgtap' >/dev/null
run_suite "pgTAP (test/pgtap/)" as_pg env PGDATABASE=p2pay_pgtap pg_prove --ext .sql -r "$WORK/src/test/pgtap"

echo "make test suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
