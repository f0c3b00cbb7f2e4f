#!/usr/bin/env bash
# make test: install what is needed, build and install p2pay, then run every
# suite (pg_regress, pgTAP, TAP) against throwaway clusters.  Exits non-zero
# on any failure.
#
# make test SANITIZE=1 (or SANITIZE=1 bash scripts/test.sh): the same suites
# with p2pay.so and the tools built with ASan and UBSan, every server started
# with the sanitizers' runtime, and one more check at the end: that no
# process wrote a sanitizer report.  The sanitized build is made in the
# suites' copy of the tree, and the plain build is installed again at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_packages build-essential postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR \
  postgresql-$PG_MAJOR-pgtap libtap-parser-sourcehandler-pgtap-perl libipc-run-perl python3-psycopg2 \
  librdkafka-dev
case ${SANITIZE:-} in
  ''|0) SANITIZE= ;;
  1) ;;
  *) echo "make test: SANITIZE must be 1 or empty, not '$SANITIZE'" >&2; exit 2 ;;
esac
build_and_install

WORK=$(make_workdir test)
cleanup() {
  stop_cluster "$WORK"
  # A sanitized p2pay.so cannot load into a server without the runtime.
  if [ -n "$SANITIZE" ]; then as_root make -s install PG_CONFIG="$PG_BIN/pg_config" SANITIZE=; fi
  [ -n "${P2PAY_KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

# The suites write results into the tree: run them in a copy the cluster
# user owns.
mkdir "$WORK/src"
tar --exclude=.git --exclude=tmp_check --exclude=results --exclude=log -cf - . | tar -C "$WORK/src" -xf -
bindir=()
if [ -n "$SANITIZE" ]; then
  make -C "$WORK/src" -s PG_CONFIG="$PG_BIN/pg_config" SANITIZE=1
  as_root make -C "$WORK/src" -s install PG_CONFIG="$PG_BIN/pg_config" SANITIZE=1
  sanitizer_setup "$WORK"
  bindir=(bindir="$SANITIZER_BIN")
fi
[ "$(id -u)" = 0 ] && chown -R postgres: "$WORK/src"

start_cluster "$WORK" "$(free_port)"
if [ -n "$SANITIZE" ]; then sanitizer_check_server "$WORK"; fi
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
run_suite "TAP (t/)" check REGRESS= ISOLATION= "${bindir[@]}"
as_pg psql -q -X -c 'CREATE DATABASE p2pay_pgtap' >/dev/null
run_suite "pgTAP (test/pgtap/)" as_pg env PGDATABASE=p2pay_pgtap pg_prove --ext .sql -r "$WORK/src/test/pgtap"

if [ -n "$SANITIZE" ]; then
  stop_cluster "$WORK"
  run_suite "sanitizer reports" sanitizer_reports "$WORK"
fi

echo "make test suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
