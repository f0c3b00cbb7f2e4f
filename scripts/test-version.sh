#!/usr/bin/env bash
# test-version.sh MAJOR: run make test (scripts/test.sh) against PostgreSQL
# MAJOR as Debian packages it, inside a Debian root of the suite that ships
# that version, so that this machine's own packages are never touched.
#
#   scripts/test-version.sh 17        (make test-pg17)
#
#   MAJOR  Debian suite  root
#   15     bookworm (12) the machine's own version: make test runs it directly
#   17     trixie (13)
#   18     forky (14)    testing; needs no change here when forky is released
#   16     -             no Debian suite ships postgresql-16
#
# The root is made once with debootstrap into P2PAY_ROOTS (default
# /var/cache/p2pay-roots/SUITE) and reused; a root whose creation did not
# finish is made again.  Each run copies the project tree (without .git and
# build products) into the root's /usr/src/p2pay and runs scripts/test.sh
# there as root, with PG_MAJOR=MAJOR; the first run installs the packages
# test.sh asks for.  /proc, /dev and /dev/pts are bound into the root for
# the run and unbound at exit, whatever happens.
#
# By default the run is lean: P2PAY_RUNS=plain (set P2PAY_RUNS="plain
# partitioned" for both halves) and P2PAY_SERVER_SUITES_ONLY=1, which skips
# the browser and OpenAPI suites: they test the pages and the API document,
# whose result no server version changes (set it to 0 to run them too).
# Needs root, debootstrap (installed if missing) and deb.debian.org.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

major=${1:-}
case $major in
  17) suite=trixie ;;
  18) suite=forky ;;
  15) echo "test-version: 15 is this machine's version: run make test" >&2; exit 2 ;;
  16) echo "test-version: no Debian suite ships postgresql-16" >&2; exit 2 ;;
  *) echo "usage: $0 17|18" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "test-version: must run as root (debootstrap, chroot, mount)" >&2; exit 2; }
mirror=${P2PAY_DEBIAN_MIRROR:-http://deb.debian.org/debian}
roots=${P2PAY_ROOTS:-/var/cache/p2pay-roots}
root=$roots/$suite
start=$SECONDS

mkdir -p "$roots"
# One run per root at a time: the mounts and the copied tree are shared.
exec 9>"$root.lock"
flock -n 9 || { echo "test-version: $root is in use by another run" >&2; exit 1; }

mounted=()
unmount_all() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" || true
  done
  mounted=()
}
trap unmount_all EXIT
mount_root() {
  local d
  for d in proc dev dev/pts; do
    mount --bind "/$d" "$1/$d"
    mounted+=("$1/$d")
  done
}

# The root, unless a finished one is there.  debootstrap has no script named
# forky before the one that knows it: sid's serves every later suite.
if [ ! -f "$root/.p2pay-root-ready" ]; then
  ensure_packages debootstrap
  # Never delete through a mount a killed run may have left: it would reach
  # the machine's own /dev.
  if grep -q " $root/" /proc/mounts; then
    echo "test-version: something is mounted under $root; unmount it first" >&2
    exit 1
  fi
  rm -rf --one-file-system "$root"
  script=/usr/share/debootstrap/scripts/$suite
  [ -e "$script" ] || script=/usr/share/debootstrap/scripts/sid
  echo "== debootstrap $suite into $root"
  debootstrap --variant=minbase "$suite" "$root" "$mirror" "$script" >"$roots/$suite.debootstrap.log" 2>&1 ||
    { tail -n 30 "$roots/$suite.debootstrap.log"; exit 1; }
  # Packages must not start services in the root.
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod 755 "$root/usr/sbin/policy-rc.d"
  touch "$root/.p2pay-root-ready"
  echo "== root made in $((SECONDS - start)) s"
fi
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
# A testing suite's Release file is valid for a week only: apt in the root
# takes an older one (a mirror that lags, a clock ahead) rather than refuse
# to install.  The root is a throwaway test bed, not a system to keep safe.
echo 'Acquire::Check-Valid-Until "false";' >"$root/etc/apt/apt.conf.d/99p2pay-test-root"

# The project as it is in this checkout, committed or not, where the
# root's postgres user can read it; without what a build or a test run left
# (objects built for this machine's PostgreSQL would not be rebuilt).
rm -rf "$root/usr/src/p2pay"
mkdir -p "$root/usr/src/p2pay"
tar --exclude=.git --exclude=node_modules --exclude=tmp_check --exclude=./results \
  --exclude=output_iso --exclude=./log --exclude=test-artifacts --exclude='*.o' \
  --exclude='*.so' --exclude='*.bc' --exclude=.build-mode --exclude=tools/p2pay-stream \
  --exclude=tools/p2pay-forward --exclude=tools/p2pay-http -cf - . |
  tar -C "$root/usr/src/p2pay" -xf -

mount_root "$root"
echo "== make test on PostgreSQL $major (Debian $suite root $root)"
rc=0
chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
  PG_MAJOR="$major" P2PAY_RUNS="${P2PAY_RUNS:-plain}" \
  P2PAY_SERVER_SUITES_ONLY="${P2PAY_SERVER_SUITES_ONLY:-1}" \
  bash -c 'cd /usr/src/p2pay && bash scripts/test.sh' || rc=$?
echo "== PostgreSQL $major: make test exited $rc after $((SECONDS - start)) s in all"
exit $rc
