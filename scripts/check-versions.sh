#!/usr/bin/env bash
# check-versions.sh: compile every src/*.c against the server headers of each
# PostgreSQL major version p2pay supports (13 to 17), with the warning flags
# PGXS would use for that version plus the Makefile's PG_CFLAGS (-Werror).
#
# A compile check only: the suites run against 15 (make test) and 17
# (make test-pg17, in CI) and, where Debian ships it, 18 (make test-pg18),
# through scripts/test-version.sh.  This script remains the check for the
# versions no Debian suite ships a server of (13, 14, 16).
#
# NOT part of `make test`: it needs a git mirror of PostgreSQL's source
# (a bare git dir holding the REL_NN_STABLE branches or REL_NN_x tags), and
# gcc, make, perl, bison and flex to configure each tree and generate the
# headers a backend build would (fmgroids.h, errcodes.h, catalog *_d.h ...).
#
#   scripts/check-versions.sh MIRROR_GIT_DIR [VERSION ...]
#   scripts/check-versions.sh [VERSION ...]   (every tree from HEADERS_NN/SRC_NN)
#
# VERSION defaults to "13 14 15 16 17".  For each one the tree is, in order:
#   HEADERS_NN=/dir   installed server headers (what `pg_config
#                     --includedir-server` prints, e.g. a Debian
#                     postgresql-server-dev-NN unpacked with dpkg -x); no build
#   SRC_NN=GITDIR@REV another git dir and revision holding a NN source tree
#   MIRROR_GIT_DIR    branch REL_NN_STABLE, else its newest REL_NN_x tag
# Trees are exported and configured under WORK (default /tmp/pgsrc/NN) and
# reused while the revision is unchanged; objects go to WORK/obj/NN.  Nothing
# is written into the project.  Exit status 0 only if every version compiles.
set -u

here=$(cd "$(dirname "$0")/.." && pwd)
mirror=""
case ${1-} in
'') [ $# -gt 0 ] && shift ;;		# "" : no mirror (all HEADERS_NN/SRC_NN)
[0-9]*) ;;						# versions only
*) mirror=$1; shift ;;
esac
versions=${*:-13 14 15 16 17}
WORK=${WORK:-/tmp/pgsrc}
CC=${CC:-gcc}
# The project's own flags, as the Makefile adds them.
pg_cflags=$(sed -n 's/^PG_CFLAGS *+= *//p' "$here/Makefile")
# gcc flags PostgreSQL's configure picks (16 added -Wshadow=compatible-local);
# used only with HEADERS_NN, where no configured Makefile.global is at hand.
default_cflags="-Wall -Wmissing-prototypes -Wpointer-arith -Wdeclaration-after-statement -Werror=vla -Wendif-labels -Wmissing-format-attribute -Wimplicit-fallthrough=3 -Wcast-function-type -Wformat-security -fno-strict-aliasing -fwrapv -fexcess-precision=standard -Wno-format-truncation -Wno-stringop-truncation -O2"

die() { echo "check-versions: $*" >&2; exit 2; }

# prepare_tree NN GITDIR REV: export, configure, generate headers (cached).
prepare_tree() {
	local v=$1 git=$2 rev=$3 dir=$WORK/$1 sha
	sha=$(git --git-dir="$git" rev-parse --verify -q "$rev^{commit}") ||
		die "$v: no revision $rev in $git"
	if [ "$(cat "$dir/.p2pay-check-rev" 2>/dev/null)" = "$sha" ]; then
		return 0
	fi
	echo "== $v: exporting $rev ($sha) to $dir"
	rm -rf "$dir" && mkdir -p "$dir" || die "$v: cannot create $dir"
	# Only what configure and the header generation read (skips doc/, and
	# anything large a fork may keep beside the source).
	git --git-dir="$git" archive "$sha" -- configure configure.ac config src GNUmakefile.in Makefile |
		tar -x -C "$dir" || die "$v: export failed"
	echo "== $v: configure + generated headers (log in $dir/.p2pay-check.log)"
	( cd "$dir" &&
	  ./configure --without-readline --without-zlib --without-icu \
		--without-openssl --without-libxml &&
	  make -C src/backend generated-headers ) >"$dir/.p2pay-check.log" 2>&1 ||
		die "$v: configure/generated-headers failed, see $dir/.p2pay-check.log"
	echo "$sha" >"$dir/.p2pay-check-rev"
}

overall=0
summary=""
for v in $versions; do
	hdr_var=HEADERS_$v src_var=SRC_$v
	if [ -n "${!hdr_var:-}" ]; then
		inc=${!hdr_var}
		[ -f "$inc/pg_config.h" ] || die "$v: no pg_config.h in $inc"
		cflags=$default_cflags
		[ "$v" -ge 16 ] && cflags="$cflags -Wshadow=compatible-local"
		cppflags="-D_GNU_SOURCE"
		origin="headers $inc"
	else
		if [ -n "${!src_var:-}" ]; then
			git=${!src_var%@*} rev=${!src_var##*@}
		else
			[ -n "$mirror" ] || die "usage: $0 MIRROR_GIT_DIR [VERSION ...]"
			git=$mirror
			if git --git-dir="$git" rev-parse -q --verify "REL_${v}_STABLE^{commit}" >/dev/null; then
				rev=REL_${v}_STABLE
			else
				rev=$(git --git-dir="$git" tag -l "REL_${v}_*" |
					grep -E "^REL_${v}_[0-9]+$" | sort -t_ -k3 -n | tail -1)
				[ -n "$rev" ] || die "$v: neither REL_${v}_STABLE nor a REL_${v}_x tag in $git"
			fi
		fi
		prepare_tree "$v" "$git" "$rev"
		inc=$WORK/$v/src/include
		cflags=$(sed -n 's/^CFLAGS = //p' "$WORK/$v/src/Makefile.global")
		cppflags=$(sed -n 's/^CPPFLAGS = //p' "$WORK/$v/src/Makefile.global")
		origin="$rev of $git"
	fi
	vnum=$(sed -n 's/^#define PG_VERSION_NUM //p' "$inc/pg_config.h")
	case $vnum in "$v"????) ;; *) die "$v: $inc is PG_VERSION_NUM $vnum" ;; esac

	echo "== $v ($vnum, $origin)"
	obj=$WORK/obj/$v
	mkdir -p "$obj"
	failed=""
	for f in "$here"/src/*.c; do
		b=$(basename "$f" .c)
		# shellcheck disable=SC2086 # flag lists are meant to split
		if ! $CC $cflags $pg_cflags -fPIC -I"$here" -I"$here/src" $cppflags \
			-I"$inc" -c "$f" -o "$obj/$b.o" 2>"$obj/$b.err"; then
			failed="$failed $b.c"
		fi
		[ -s "$obj/$b.err" ] && sed 's/^/    /' "$obj/$b.err"
	done
	if [ -n "$failed" ]; then
		summary="$summary$v: FAIL ($failed )\n"
		overall=1
	else
		summary="$summary$v: ok\n"
	fi
done
printf '\n%b' "$summary"
exit $overall
