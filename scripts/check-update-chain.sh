#!/usr/bin/env bash
# check-update-chain.sh DIR EXTENSION DEFAULT_VERSION: the extension's SQL
# scripts in DIR let every installation reach DEFAULT_VERSION.  Run by make
# (the Makefile's check-update-chain, before the build).
#
# Install scripts are EXTENSION--V.sql, update scripts EXTENSION--A--B.sql.
# Fails, naming what is missing, unless:
# - every script's name is one of those two forms;
# - DEFAULT_VERSION can be installed: it has an install script, or update
#   scripts lead to it from a version that has one;
# - every version a script names that sorts before DEFAULT_VERSION (sort -V)
#   has update scripts leading from it to DEFAULT_VERSION, so that ALTER
#   EXTENSION ... UPDATE works on any installation of a released version.
# PostgreSQL follows update scripts by the same rules
# (pg_extension_update_paths); t/011_upgrade.pl then installs every one of
# these older versions and updates it.
set -euo pipefail

if [ $# -ne 3 ] || [ -z "$3" ]; then
	echo "usage: $0 DIR EXTENSION DEFAULT_VERSION" >&2
	exit 2
fi
dir=$1 ext=$2 default=$3
declare -A install=() versions=() next=()
fail=0

shopt -s nullglob
for path in "$dir/$ext"--*.sql; do
	file=${path##*/}
	name=${file#"$ext"--}
	name=${name%.sql}
	case $name in
	'' | --* | *-- | *--*--*)
		echo "$file: not $ext--VERSION.sql nor $ext--FROM--TO.sql" >&2
		fail=1
		;;
	*--*)
		from=${name%%--*} to=${name#*--}
		next[$from]+=" $to"
		versions[$from]=1 versions[$to]=1
		;;
	*)
		install[$name]=1 versions[$name]=1
		;;
	esac
done

# reaches FROM TO: update scripts lead from FROM to TO (FROM = TO included).
reaches() {
	local seen=" $1 " queue=("$1") v n
	while [ ${#queue[@]} -gt 0 ]; do
		v=${queue[0]} queue=("${queue[@]:1}")
		[ "$v" = "$2" ] && return 0
		for n in ${next[$v]:-}; do
			case $seen in
			*" $n "*) ;;
			*) seen+="$n " queue+=("$n") ;;
			esac
		done
	done
	return 1
}

installable=0
for v in "${!install[@]}"; do
	if reaches "$v" "$default"; then installable=1; fi
done
if [ $installable = 0 ]; then
	echo "default_version $default can't be installed: add $ext--$default.sql, or update scripts to it from a version with an install script" >&2
	fail=1
fi

for v in "${!versions[@]}"; do
	[ "$v" = "$default" ] && continue
	# only versions older than the default
	[ "$(printf '%s\n%s\n' "$v" "$default" | sort -V | head -n 1)" = "$v" ] || continue
	if ! reaches "$v" "$default"; then
		echo "no update path from $v to default_version $default: add $ext--$v--$default.sql (or a chain of update scripts)" >&2
		fail=1
	fi
done
exit $fail
