# t/lib/P2payNode.pm: a PostgreSQL::Test::Cluster set up for p2pay's TAP
# tests: configured as make installcheck configures its own instance
# (test/instance.conf, through scripts/instance-conf.sh: p2pay preloaded,
# logical decoding on, commit timestamps, the p2pay output plugin allowed
# where the server knows output_plugin_libraries), databases with the
# extension created at its default version or at an older one.  In make
# test's second run (P2PAY_PARTITIONED=1 in the environment),
# p2pay.payments is partitioned and managed by pg_partman right after each
# CREATE EXTENSION p2pay (scripts/partition-on-create.sql).
package P2payNode;

use strict;
use warnings;

use File::Basename qw(dirname);
use File::Spec;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $scripts = File::Spec->catdir(dirname(__FILE__), '..', '..', 'scripts');

# The second run's event trigger, read once.
my $partition_sql = slurp_file(File::Spec->catfile($scripts, 'partition-on-create.sql'));

# Whether this is make test's second run, on a partitioned payments.
sub partitioned
{
	return ($ENV{P2PAY_PARTITIONED} // '') eq '1';
}

# partition_on_create(NODE): in the second run, every database NODE makes
# afterwards from template1 partitions payments after CREATE EXTENSION
# p2pay; nothing otherwise.
sub partition_on_create
{
	my ($node) = @_;
	$node->safe_psql('template1', $partition_sql) if partitioned();
	return;
}

# instance_conf(NODE): the settings of make installcheck's instance for
# the server NODE runs (scripts/instance-conf.sh asks that server which
# settings it knows).
sub instance_conf
{
	my ($node) = @_;
	my ($out, $err);
	IPC::Run::run([ 'bash', File::Spec->catfile($scripts, 'instance-conf.sh'),
			$node->config_data('--bindir') ],
		'>', \$out, '2>', \$err)
	  or die "scripts/instance-conf.sh failed: $err";
	return $out;
}

# start_node(NAME, EXTRA_CONF): a started node set up as above, with no
# database of p2pay's yet.  Besides the instance's settings, it allows
# replication connections and standbys (allows_streaming), as
# PostgreSQL::Test::Cluster sets them up.  EXTRA_CONF is appended to
# postgresql.conf after the instance's settings, so it can override them
# (shared_preload_libraries = '', track_commit_timestamp = off).
sub start_node
{
	my ($name, $extra) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(allows_streaming => 'logical');
	$node->append_conf('postgresql.conf', instance_conf($node));
	$node->append_conf('postgresql.conf', $extra) if defined $extra;
	$node->start;
	partition_on_create($node);
	return $node;
}

# create_db(NODE, DB, VERSION): database DB holding the extension at
# VERSION (CREATE EXTENSION ... VERSION), or at the control file's
# default_version when VERSION is undef.
sub create_db
{
	my ($node, $db, $version) = @_;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db,
		defined $version
		? 'CREATE EXTENSION p2pay VERSION ' . quote_literal($version)
		: 'CREATE EXTENSION p2pay');
	return;
}

# new_node(NAME, DB, EXTRA_CONF): start_node, and database DB holding the
# extension at its default version.
sub new_node
{
	my ($name, $db, $extra) = @_;
	my $node = start_node($name, $extra);
	create_db($node, $db);
	return $node;
}

# default_version(): default_version of p2pay.control in the tree the tests
# run from (the version CREATE EXTENSION p2pay installs).
sub default_version
{
	my $control = slurp_file('p2pay.control');
	$control =~ /^default_version\s*=\s*'([^']*)'/m
	  or die "p2pay.control: no default_version";
	return $1;
}

# quote_literal(TEXT): TEXT as an SQL string literal.
sub quote_literal
{
	my ($text) = @_;
	$text =~ s/'/''/g;
	return "'$text'";
}

# seed_users(NODE, DB, N): users 1..N (public.uid(n) gives user n's id),
# opened long ago, each with the bank transfer registered.
sub seed_users
{
	my ($node, $db, $n) = @_;
	$node->safe_psql(
		$db, qq{
CREATE FUNCTION public.uid(integer) RETURNS uuid
  LANGUAGE sql IMMUTABLE STRICT
  AS \$\$ SELECT ('00000000-0000-4000-8000-' || lpad(\$1::text, 12, '0'))::uuid \$\$;
INSERT INTO p2pay.users (id, first_name, created_at)
  SELECT public.uid(n), 'user ' || n, '2020-01-01' FROM generate_series(1, $n) n;
INSERT INTO p2pay.user_payment_methods (user_id, payment_method_id)
  SELECT id, '00000000-0000-4000-8000-000000000001' FROM p2pay.users;
});
	return;
}

# seed_row_decided(NODE, DB, N): seed_users, and rules under which a
# payment's decision depends on its row alone: above 10000 in the base
# currency is review (amount_limit, 0.5), a method the payer has not
# registered is decline (unregistered_method at 0.9), the blocklist declines.
sub seed_row_decided
{
	my ($node, $db, $n) = @_;
	seed_users($node, $db, $n);
	$node->safe_psql(
		$db, qq{
UPDATE p2pay.rules SET enabled = name IN ('amount_limit', 'unregistered_method', 'blocklist');
UPDATE p2pay.rules SET weight = 0.9 WHERE name = 'unregistered_method';
});
	return;
}

# write_pair_workload(PATH, EXTRA_SQL): a pgbench script for a node seeded
# with seed_row_decided: each client pays among its own ten users (a
# transaction locks the accounts of its payments, so disjoint clients never
# deadlock), two payments per transaction, EXTRA_SQL (if any) after them;
# one transaction in ten rolls back.  Amounts over 10000 are review, the
# card (registered by no one) is decline.
sub write_pair_workload
{
	my ($path, $extra) = @_;
	my $bank = '00000000-0000-4000-8000-000000000001';
	my $card = '00000000-0000-4000-8000-000000000002';
	$extra = defined $extra ? "$extra\n" : '';
	append_to_file(
		$path, qq{
\\set k random(0, 9)
\\set a random(1, 9)
BEGIN;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id) VALUES
  (uid(:client_id * 10 + :a), uid(:client_id * 10 + :a + 1),
   CASE WHEN :k < 4 THEN 20 WHEN :k < 7 THEN 15000 ELSE 35 END, 'USD',
   CASE WHEN :k < 7 THEN '$bank'::uuid ELSE '$card'::uuid END),
  (uid(:client_id * 10 + :a + 1), uid(:client_id * 10 + :a),
   CASE WHEN :k % 2 = 0 THEN 18000 ELSE 12 END, 'EUR', '$bank');
$extra\\if :k = 9
ROLLBACK;
\\else
COMMIT;
\\endif
});
	return;
}

# The per-account state tables, which rebuild_state() counts from the payments;
# before 1.2, a payer's amounts per hour were in payer_hourly.
our @STATE_TABLES = qw(account_stats pair_stats account_daily);
our @STATE_TABLES_1_1 = qw(account_stats pair_stats payer_hourly account_daily);

# Whether DB's p2pay is still at the 1.0/1.1 layout.
sub legacy_layout
{
	my ($node, $db) = @_;
	my $v = $node->safe_psql($db, "SELECT extversion FROM pg_extension WHERE extname = 'p2pay'");
	return $v eq '1.0' || $v eq '1.1';
}

# The state tables of DB's layout.
sub state_tables
{
	my ($node, $db) = @_;
	return legacy_layout($node, $db) ? @STATE_TABLES_1_1 : @STATE_TABLES;
}

# The state tables counted from the payments in set-based SQL: what the
# state must hold, derived apart from the C that records each payment, so
# that comparing with it is not comparing that code with itself
# (test/recount.sql: a temporary view recount_<table> per state table).
my $recount_sql = slurp_file(File::Spec->catfile(dirname(__FILE__), '..', '..', 'test', 'recount.sql'));
my $recount_1_1_sql =
  slurp_file(File::Spec->catfile(dirname(__FILE__), '..', '..', 'test', 'recount_1_1.sql'));

# The SQL that lists, as lines "TAG|table LEFT only: row", the rows of each
# state table that only one of two sets of tables holds, row for row both
# ways; LEFT and RIGHT map a state table's name to a table.
sub _state_diff
{
	my ($tables, $tag, $lname, $left, $rname, $right) = @_;
	return join(
		"\nUNION ALL ",
		map {
			my ($l, $r) = ($left->($_), $right->($_));
			"SELECT '$tag|$_ $lname only: ' || x::text FROM (TABLE $l EXCEPT ALL TABLE $r) x "
			  . "UNION ALL SELECT '$tag|$_ $rname only: ' || x::text FROM (TABLE $r EXCEPT ALL TABLE $l) x"
		} @$tables);
}

# state_vs_recount(NODE, DB, NAME, BEFORE): three checks: that the
# per-account state as the trigger kept it has rows, that it equals what
# test/recount.sql counts from the payments, and that so does what
# rebuild_state() counts, row for row both ways.  BEFORE, if given, is SQL run between
# taking the copy and rebuild_state(); its output lines are returned.  The
# state kept is put back, so that later checks see the trigger's own.
sub state_vs_recount
{
	my ($node, $db, $name, $before) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $legacy = legacy_layout($node, $db);
	my @tables = $legacy ? @STATE_TABLES_1_1 : @STATE_TABLES;
	my $copy = join('', map { "CREATE TEMP TABLE kept_$_ AS TABLE p2pay.$_;\n" } @tables);
	my $recount = ($legacy ? $recount_1_1_sql : $recount_sql)
	  . join('', map { "CREATE TEMP TABLE counted_$_ AS TABLE recount_$_;\n" } @tables);
	my $kept =
	  _state_diff(\@tables, 'diff', 'kept', sub { "kept_$_[0]" }, 'recounted', sub { "counted_$_[0]" });
	my $rebuilt = _state_diff(\@tables, 'rebuilt', 'rebuilt', sub { "p2pay.$_[0]" },
		'recounted', sub { "counted_$_[0]" });
	my $restore = join('', map { "INSERT INTO p2pay.$_ SELECT * FROM kept_$_;\n" } @tables);
	my $drop = join(', ', map { ("kept_$_", "counted_$_") } @tables);
	my $out = $node->safe_psql(
		$db, qq{
$copy
SELECT 'rows|' || (SELECT count(*) FROM kept_account_stats) + (SELECT count(*) FROM kept_pair_stats);
$recount
$kept;
@{[ defined $before ? $before : '' ]}
DO \$\$ BEGIN PERFORM p2pay.rebuild_state(); END \$\$;
$rebuilt;
TRUNCATE @{[ join(', ', map { "p2pay.$_" } @tables) ]};
$restore
DROP TABLE $drop;});
	my @lines = split /\n/, $out;
	my ($count) = map { /^rows\|(\d+)$/ ? $1 : () } @lines;
	ok($count > 0, "$name: the state has rows");
	is(join("\n", map { /^diff\|(.*)/ ? $1 : () } @lines), '', "$name: the state equals a recount");
	is(join("\n", map { /^rebuilt\|(.*)/ ? $1 : () } @lines),
		'', "$name: rebuild_state() counts what the recount counts");
	return grep { !/^(rows|diff|rebuilt)\|/ } @lines;
}

# pgbench_mix(NODE, DB, SCRIPTS, WEIGHTS, ORDER, CLIENTS, SECONDS): run the
# pgbench scripts SCRIPTS (name => text) with their WEIGHTS from CLIENTS
# clients for SECONDS against DB; checks that no client got an error other
# than 40001 or 40P01 (those are counted per script and don't stop a
# client) and that pgbench reports every script of ORDER, and returns, per
# script, { ok, failed, serialization, deadlock }: transactions that
# succeeded, failed, failed with 40001, with 40P01.
sub pgbench_mix
{
	my ($node, $db, $scripts, $weights, $order, $clients, $seconds) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my @files;
	for my $name (@$order)
	{
		my $file = $node->basedir . "/$name.sql";
		PostgreSQL::Test::Utils::append_to_file($file, $scripts->{$name});
		push @files, '-f', "$file\@$weights->{$name}";
	}
	my @cmd = (
		'pgbench', '-n', '-c', $clients, '-j', 2, '-T', $seconds,
		'--failures-detailed', '-r', @files, $node->connstr($db));
	note "running: @cmd";
	my ($stdout, $stderr) = ('', '');
	IPC::Run::run(\@cmd, '>', \$stdout, '2>', \$stderr,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default))
	  or diag("pgbench failed:\n$stderr");
	note $stdout;
	unlike($stderr, qr/aborted|ERROR/, 'mix: no client got an error other than 40001 or 40P01');

	# pgbench 18 counts every transaction on the first line and those that
	# succeeded on a line of their own; before 18 the first line counts
	# only those that succeeded.
	my %runs;
	while ($stdout =~ m{SQL\ script\ \d+:\ \S+/(\w+)\.sql\n
		 \ -\ weight:[^\n]*\n
		 \ -\ (\d+)\ transactions[^\n]*\n
		 (?:\ -\ number\ of\ transactions\ actually\ processed:\ (\d+)[^\n]*\n)?
		 \ -\ number\ of\ failed\ transactions:\ (\d+)[^\n]*\n
		 \ -\ number\ of\ serialization\ failures:\ (\d+)[^\n]*\n
		 \ -\ number\ of\ deadlock\ failures:\ (\d+)}gx)
	{
		$runs{$1} = { ok => $3 // $2, failed => $4, serialization => $5, deadlock => $6 };
	}
	is_deeply([ sort keys %runs ], [ sort @$order ], 'mix: pgbench reports every script')
	  or diag($stdout);
	for my $name (@$order)
	{
		my $r = $runs{$name} or next;
		diag(sprintf('%-9s %6d committed, %5d failed: %5d with 40001, %5d with 40P01',
				$name, $r->{ok}, $r->{failed}, $r->{serialization}, $r->{deadlock}));
	}
	return \%runs;
}

1;
