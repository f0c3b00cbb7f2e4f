#!/usr/bin/env bash
# make valgrind: the pg_regress suite (sql/) against a server that runs
# under valgrind's memcheck, with PostgreSQL's own suppressions; fails if
# any error valgrind reports has a frame of p2pay in its stack.  Slow (see
# docs/testing.md, "Testing under sanitizers and valgrind").
#
# The suppressions are src/tools/valgrind.supp of the installed PostgreSQL's
# Debian source package, downloaded for the run through a private apt state
# (the system's apt configuration is left alone), or VALGRIND_SUPP=FILE,
# and scripts/valgrind-uninstrumented.supp.
# VALGRIND_TESTS="schema rules" runs only those pg_regress tests; with
# P2PAY_KEEP=1 the work directory, with valgrind's logs, is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_packages build-essential postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR \
  valgrind librdkafka-dev
build_and_install

WORK=$(make_workdir valgrind)
# Under valgrind the server starts and stops tens of times slower.
export PG_CTL_TIMEOUT=1200
cleanup() { stop_cluster "$WORK"; [ -n "${P2PAY_KEEP:-}" ] || rm -rf "$WORK"; }
trap cleanup EXIT

# fetch_suppressions DIR: print valgrind.supp of the source package of the
# installed PostgreSQL, fetched into DIR: the exact version if the archives
# still have it, else the newest of the same major version that they have.
fetch_suppressions() {
  local dir=$1 want versions v orig
  local apt=(-q -o Dir::Etc::SourceList="$dir/sources.list" -o Dir::Etc::SourceParts="$dir/none"
    -o Dir::State::Lists="$dir/lists" -o Dir::Cache="$dir/cache" -o APT::Sandbox::User="$(id -un)")
  mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
  # "PostgreSQL 15.20 (Debian 15.20-0+deb12u1)": the package's version
  want=$("$PG_BIN/pg_config" --version | sed -n 's/.*(Debian \(.*\))$/\1/p')
  [ -n "$want" ] || want=$(dpkg-query -W -f='${Version}' "postgresql-$PG_MAJOR")
  # The archives that carry the server's binary package carry its source.
  apt-cache policy "postgresql-$PG_MAJOR" |
    awk '$1 ~ /^[0-9]+$/ && $2 ~ /^https?:/ { split($3, s, "/"); print "deb-src " $2 " " s[1] " " s[2] }' |
    sort -u >"$dir/sources.list"
  [ -s "$dir/sources.list" ] || { echo "no archive carries postgresql-$PG_MAJOR" >&2; return 1; }
  apt-get "${apt[@]}" update >"$dir/apt.log" 2>&1 || { cat "$dir/apt.log" >&2; return 1; }
  versions=$(apt-cache "${apt[@]}" showsrc "postgresql-$PG_MAJOR" 2>/dev/null |
    sed -n 's/^Version: //p' | sort -u | sort -r -V)
  for v in $want $(grep -vxF "$want" <<<"$versions"); do
    grep -qxF "$v" <<<"$versions" || continue
    if (cd "$dir" && apt-get "${apt[@]}" source --download-only "postgresql-$PG_MAJOR=$v") >>"$dir/apt.log" 2>&1; then
      orig=$(ls "$dir"/postgresql-"$PG_MAJOR"_*.orig.tar.*)
      [ "$v" = "$want" ] || echo "valgrind: the suppressions come from PostgreSQL $v, as $want's source is not in the archives" >&2
      tar -xOf "$orig" --wildcards '*/src/tools/valgrind.supp'
      return
    fi
  done
  cat "$dir/apt.log" >&2
  echo "valgrind: could not download a postgresql-$PG_MAJOR source package" >&2
  return 1
}

if [ -n "${VALGRIND_SUPP:-}" ]; then
  cp "$VALGRIND_SUPP" "$WORK/valgrind.supp"
else
  fetch_suppressions "$WORK/apt" >"$WORK/valgrind.supp"
  rm -rf "$WORK/apt"
fi
grep -q '^{' "$WORK/valgrind.supp" || { echo "valgrind: $WORK/valgrind.supp holds no suppression" >&2; exit 1; }
cat scripts/valgrind-uninstrumented.supp >>"$WORK/valgrind.supp"

# The suites write results into the tree: run them in a copy the cluster
# user owns.
mkdir "$WORK/src" "$WORK/valgrind"
tar --exclude=.git --exclude=tmp_check --exclude=results --exclude=log -cf - . | tar -C "$WORK/src" -xf -
[ "$(id -u)" = 0 ] && chown -R postgres: "$WORK/src" "$WORK/valgrind"

# pg_ctl starts this in place of postgres: the postmaster and every process
# it forks run under memcheck, each logging to its own file, each error
# between markers.  Leaks are not looked for: a backend frees by memory
# context, and what it holds at exit is meant to live as long as it.
cat >"$WORK/postgres-valgrind" <<EOF
#!/bin/sh
exec valgrind --tool=memcheck --trace-children=yes --leak-check=no \\
  --num-callers=40 --suppressions='$WORK/valgrind.supp' \\
  --error-markers=VALGRINDERROR-BEGIN,VALGRINDERROR-END \\
  --log-file='$WORK/valgrind/%p.log' '$PG_BIN/postgres' "\$@"
EOF
chmod 755 "$WORK/postgres-valgrind"

started=$(date +%s)
# JIT compiling under valgrind would only add time.
POSTGRES_PROGRAM=$WORK/postgres-valgrind CLUSTER_CONF="jit = off" start_cluster "$WORK" "$(free_port)"
echo "valgrind: server started in $(($(date +%s) - started)) s"

suite=0
regress=()
if [ -n "${VALGRIND_TESTS:-}" ]; then regress=(REGRESS="$VALGRIND_TESTS"); fi
as_pg make -C "$WORK/src" -s installcheck PG_CONFIG="$PG_BIN/pg_config" USE_RUNNING=1 ISOLATION= TAP_TESTS= "${regress[@]}" ||
  { cat "$WORK/src/regression.diffs" 2>/dev/null || true; suite=1; }
stop_cluster "$WORK"
echo "valgrind: pg_regress and server stop took $(($(date +%s) - started)) s"

# The functions of p2pay.so: a frame is p2pay's if its object is p2pay.so,
# or if it names one of them and no other object.
nm --defined-only "$("$PG_BIN/pg_config" --pkglibdir)/p2pay.so" |
  awk '$2 ~ /^[tTwW]$/ { print $3 }' >"$WORK/p2pay-functions"
perl -e '
  my %ours = map { chomp; ($_ => 1) } do { open my $f, "<", shift or die; <$f> };
  my ($all, $hits) = (0, 0);
  for my $log (@ARGV) {
    open my $f, "<", $log or die "$log: $!";
    my ($in, $block, $ours);
    while (<$f>) {
      if (/VALGRINDERROR-BEGIN/) { ($in, $block, $ours) = (1, "", 0); next; }
      if (/VALGRINDERROR-END/) {
        $all++;
        if ($ours) { $hits++; print "--- $log\n$block"; }
        $in = 0;
        next;
      }
      next unless $in;
      $block .= $_;
      $ours = 1 if /p2pay\.so/
        || (/(?:at|by) 0x[0-9A-Fa-f]+: (\S+) / && $ours{$1} && !/\(in \//);
    }
  }
  print "valgrind: $all error reports, $hits with a frame of p2pay\n";
  exit($hits > 0);
' "$WORK/p2pay-functions" "$WORK"/valgrind/*.log || suite=1
[ "$suite" -eq 0 ] || { echo "make valgrind: FAILED" >&2; exit 1; }
echo "make valgrind: passed"
