# t/013_partman.pl: pg_partman manages a partitioned p2pay.payments.
#
# What a user relies on: with payments partitioned by p2pay.partition_payments()
# and handed to pg_partman (Debian's postgresql-NN-partman: 4.x beside 15,
# 5.x beside 17, native partitioning in both), payments spread over many partitions are scored exactly as
# on a plain payments, the p2pay stream carries the same events, partitions
# that pg_partman's maintenance creates get REPLICA IDENTITY FULL (which the
# stream needs and which neither PostgreSQL nor pg_partman copies), and old
# partitions that pg_partman's retention detaches or drops take their
# payments with them but leave the per-account state: a landlord paid every
# month for two years is no new payee once the first year is dropped.
#
# Two databases get the same users and the same payments, given in time
# order with fixed ids: "plain" keeps payments as the extension creates it,
# "parted" has it partitioned and managed by pg_partman.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/lib";

use P2payNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $BANK = '00000000-0000-4000-8000-000000000001';
sub uid { return sprintf('00000000-0000-4000-8000-%012d', $_[0]); }
sub txn { return sprintf('00000000-0000-4000-9000-%012d', $_[0]); }

my $node = P2payNode::new_node('partman', 'postgres_unused');

# Both databases from template0: make test's second run partitions
# payments after CREATE EXTENSION in databases made from template1, and
# this test does it itself.
for my $db (qw(plain parted))
{
	$node->safe_psql('postgres', "CREATE DATABASE $db TEMPLATE template0");
	$node->safe_psql($db, 'CREATE EXTENSION p2pay');
}

# The month the test runs in, and the months before it: the payments span
# two years back from now.
my $now = $node->safe_psql('parted', "SELECT date_trunc('hour', now())");
my $month0 = $node->safe_psql('parted', "SELECT date_trunc('month', now())");

# A partition's lower bound, from its FOR VALUES clause: pg_partman 4 and 5
# name the partitions they make differently (payments_p2026_12,
# payments_p20261201), where the bounds say the same.
my $from = q{(regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \(''([^'']+)''\)'))[1]::timestamptz};

# pg_partman takes over: p2pay's partitions for the past two years through
# the current month, pg_partman's for four months ahead and its default.
# Its partitioning type is "native" in 4.x and "range" from 5.0; it starts
# after p2pay's partitions, which pg_partman 5 would not know by their names
# and overlap.
$node->safe_psql(
	'parted', qq{
SELECT count(*) FROM p2pay.partition_payments(partition_interval => '1 month', premake => 0,
  default_partition => false, start_at => timestamptz '$month0' - interval '26 months');
CREATE SCHEMA partman;
CREATE EXTENSION pg_partman SCHEMA partman;
SELECT partman.create_parent(p_parent_table => 'p2pay.payments', p_control => 'created_at',
  p_type => CASE WHEN split_part(extversion, '.', 1)::int >= 5 THEN 'range' ELSE 'native' END,
  p_interval => '1 month', p_premake => 4,
  p_start_partition => (timestamptz '$month0' + interval '1 month')::text)
  FROM pg_extension WHERE extname = 'pg_partman';
});
is( $node->safe_psql(
		'parted', qq{
SELECT count(*) FILTER (WHERE pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'),
       count(*) FILTER (WHERE $from >= timestamptz '$month0' + interval '1 month'),
       count(*)
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = 'p2pay.payments'::regclass}),
	'1|4|32',
	'pg_partman added its default partition and four months ahead to the 27 months partition_payments() made'
);

# A logical slot with the p2pay plugin in each database, before the payments.
$node->safe_psql($_, "SELECT 'slot' FROM pg_create_logical_replication_slot('s_$_', 'p2pay')")
  for qw(plain parted);

# Users: 1 is a tenant who pays landlord 2 every month for two years; 3-12
# pay each other; 13 paid once, 20 months ago, and comes back.
my $sql = qq{
INSERT INTO p2pay.users (id, created_at)
  SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid, timestamptz '$month0' - interval '30 months'
    FROM generate_series(1, 13) n;
INSERT INTO p2pay.user_payment_methods (user_id, payment_method_id)
  SELECT id, '$BANK' FROM p2pay.users;
};
$node->safe_psql($_, $sql) for qw(plain parted);

# The payments, in time order: the rent on the 1st of each month at noon
# (the first month's is a new payee's high amount); among users 3-12, a
# few a month, some large (review), some just under 10000 (structuring);
# user 13 once, 20 months ago.
my @pay;
my $seed = 7;
sub rnd { $seed = ($seed * 1103515245 + 12345) % 2147483648; return $seed % $_[0]; }
for my $m (reverse 1 .. 24)
{
	push @pay, [ 1, 2, 2500, "timestamptz '$month0' - interval '$m months' + interval '12 hours'" ];
	push @pay, [ 13, 4, 1500, "timestamptz '$month0' - interval '$m months' + interval '13 hours'" ]
	  if $m == 20;
	for my $k (1 .. 4)
	{
		my $payer = 3 + rnd(10);
		my $payee = 3 + (($payer - 3 + 1 + rnd(9)) % 10);
		my $amount = (50, 9500, 12000, 300, 9800, 20)[ rnd(6) ];
		push @pay, [ $payer, $payee, $amount,
			"timestamptz '$month0' - interval '$m months' + interval '$k days 3 hours'" ];
	}
}
my $n = 0;
$sql = join('',
	map {
		$n++;
		"INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency,"
		  . " payment_method_id, created_at) VALUES ('"
		  . txn($n) . "', '"
		  . uid($_->[0]) . "', '"
		  . uid($_->[1])
		  . "', $_->[2], 'USD', '$BANK', $_->[3]);\n"
	} @pay);
$node->safe_psql($_, $sql) for qw(plain parted);

# The verdicts, the state and the stream, as a string to compare.
my $verdicts = q{
SELECT id, transaction_id, decision, round(risk_score::numeric, 6), reasons, shadow_reasons,
       amount_base, ruleset_version
  FROM p2pay.payments ORDER BY id};
my $state = q{
SELECT 'a', to_jsonb(a)::text FROM p2pay.account_stats a
UNION ALL SELECT 'p', to_jsonb(p)::text FROM p2pay.pair_stats p
UNION ALL SELECT 'd', to_jsonb(d)::text FROM p2pay.account_daily d
ORDER BY 1, 2};
my $stream = q{
SELECT data FROM pg_logical_slot_get_changes('s_%s', NULL, NULL, 'include-approved', 'true',
  'include-xids', 'false', 'include-lsn', 'false', 'include-timestamp', 'false')};

my $plain_verdicts = $node->safe_psql('plain', $verdicts);
is($node->safe_psql('parted', $verdicts),
	$plain_verdicts, scalar(@pay) . ' payments scored as on a plain payments');
like($plain_verdicts, qr/\|review\|/, 'some payments are held for review');
like($plain_verdicts, qr/new_payee_high_amount/, 'the first rent is a new payee\'s high amount');
is($node->safe_psql('parted', $state), $node->safe_psql('plain', $state),
	'the per-account state is the same');
is( $node->safe_psql(
		'parted',
		"SELECT count(DISTINCT tableoid) >= 24, count(*) FILTER (WHERE tableoid = 'p2pay.payments_default'::regclass)"
		  . ' FROM p2pay.payments'),
	't|0',
	'the payments lie in 24 monthly partitions or more, none in the default one');
my $plain_stream = $node->safe_psql('plain', sprintf($stream, 'plain'));
my $parted_stream = $node->safe_psql('parted', sprintf($stream, 'parted'));
is($parted_stream, $plain_stream, 'the p2pay stream carries the same events from the partitions');
like($plain_stream, qr/"event":"flagged"/, 'the stream has the flagged payments');

# Maintenance with more partitions ahead: pg_partman creates them, and the
# event trigger gives them REPLICA IDENTITY FULL.
$node->safe_psql(
	'parted', q{
UPDATE partman.part_config SET premake = 7, infinite_time_partitions = true
 WHERE parent_table = 'p2pay.payments';
SELECT partman.run_maintenance('p2pay.payments');
});
is( $node->safe_psql(
		'parted', qq{
SELECT count(*) FILTER (WHERE $from > timestamptz '$month0' + interval '4 months'),
       count(*) FILTER (WHERE c.relreplident <> 'f')
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = 'p2pay.payments'::regclass}),
	'3|0',
	'run_maintenance() added three partitions, and every partition has REPLICA IDENTITY FULL');

# A review resolved: an update of a payment in a partition, allowed under
# wal_level = logical since the partition logs whole old rows.
my $resolved = $node->safe_psql(
	'parted', qq{
SELECT p2pay.resolve(transaction_id, 'approve', 'checked')
  FROM p2pay.payments WHERE decision = 'review' ORDER BY id LIMIT 1;
SELECT count(*) FROM pg_logical_slot_get_changes('s_parted', NULL, NULL)
 WHERE data LIKE '%"event":"decision_changed"%'});
is($resolved, "\n1", 'a review resolved in a partition reaches the stream as a decision change');
$node->safe_psql('plain', qq{
SELECT p2pay.resolve(transaction_id, 'approve', 'checked')
  FROM p2pay.payments WHERE decision = 'review' ORDER BY id LIMIT 1;
SELECT count(*) FROM pg_logical_slot_get_changes('s_plain', NULL, NULL)});

# Retention: pg_partman first detaches the partitions older than 18 months
# (kept as tables), then drops those older than 12.
$node->safe_psql(
	'parted', q{
UPDATE partman.part_config SET retention = '18 months', retention_keep_table = true
 WHERE parent_table = 'p2pay.payments';
SELECT partman.run_maintenance('p2pay.payments');
});
my $kept = $node->safe_psql(
	'parted', q{
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'p2pay' AND c.relname LIKE 'payments_p%' AND c.relkind = 'r' AND NOT c.relispartition});
ok($kept >= 6, "retention detached the partitions older than 18 months and kept them as tables ($kept)");
$node->safe_psql(
	'parted', q{
UPDATE partman.part_config SET retention = '12 months', retention_keep_table = false
 WHERE parent_table = 'p2pay.payments';
SELECT partman.run_maintenance('p2pay.payments');
});
is( $node->safe_psql(
		'parted', qq{
SELECT min(created_at) >= timestamptz '$month0' - interval '13 months', count(*) < $n
  FROM p2pay.payments}),
	't|t',
	'retention dropped the partitions older than 12 months with their payments');
is($node->safe_psql('parted', $state), $node->safe_psql('plain', $state),
	'the per-account state is untouched by retention');

# The next rent: the landlord is no new payee, though the first year of
# rent is gone; user 13, whose only payment was dropped, comes back after
# 20 months with a large one.  Both scored as on the plain payments.
$sql = qq{
INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency, payment_method_id, created_at)
VALUES ('@{[txn(9001)]}', '@{[uid(1)]}', '@{[uid(2)]}', 2500, 'USD', '$BANK', timestamptz '$now'),
       ('@{[txn(9002)]}', '@{[uid(13)]}', '@{[uid(5)]}', 5000, 'USD', '$BANK', timestamptz '$now');
SELECT transaction_id, decision, round(risk_score::numeric, 6), reasons
  FROM p2pay.payments WHERE transaction_id IN ('@{[txn(9001)]}', '@{[txn(9002)]}') ORDER BY 1};
my $plain_next = $node->safe_psql('plain', $sql);
is($node->safe_psql('parted', $sql), $plain_next,
	'after retention, new payments are scored as on the plain payments');
unlike((split /\n/, $plain_next)[0], qr/new_payee_high_amount/,
	'the landlord is no new payee');
like((split /\n/, $plain_next)[1], qr/dormant_reactivation/,
	'user 13 is dormant and reactivated');

# A partition dropped by hand behaves as retention does.
my $dropped = $node->safe_psql(
	'parted', qq{
SELECT c.oid::regclass FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = 'p2pay.payments'::regclass AND $from = timestamptz '$month0' - interval '11 months'});
like($dropped, qr/^p2pay\.payments_p\w+$/, 'the partition of 11 months ago is there to drop');
$node->safe_psql('parted', "DROP TABLE $dropped");
is($node->safe_psql('parted', $state), $node->safe_psql('plain', $state),
	'a partition dropped by hand leaves the state too');

done_testing();
