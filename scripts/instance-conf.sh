#!/usr/bin/env bash
# scripts/instance-conf.sh BINDIR: print the configuration of a server for
# p2pay's suites: test/instance.conf, then, when the server of BINDIR knows
# output_plugin_libraries (15.19 and later), that setting, listing the
# output plugins of OUTPUT_PLUGINS (pgoutput, test_decoding and p2pay
# unless told otherwise).  An older server refuses to start with a setting
# it does not know, so the server itself is asked (postgres
# --describe-config runs as any user, root included, and needs no data
# directory).  Used by make installcheck, scripts/lib.sh's start_cluster and
# the TAP tests' nodes (t/lib/P2payNode.pm).
set -euo pipefail
bindir=${1:?usage: instance-conf.sh BINDIR}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
settings=$("$bindir/postgres" --describe-config) ||
  { echo "instance-conf.sh: $bindir/postgres --describe-config failed" >&2; exit 1; }
cat "$here/../test/instance.conf"
if [[ $settings == *$'\n'output_plugin_libraries$'\t'* || $settings == output_plugin_libraries$'\t'* ]]; then
  echo "# Output plugins this server lets logical decoding load."
  echo "output_plugin_libraries = '${OUTPUT_PLUGINS:-pgoutput, test_decoding, p2pay}'"
fi
