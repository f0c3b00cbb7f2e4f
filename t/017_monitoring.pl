# t/017_monitoring.pl: monitoring/queries.yaml, run by Debian's
# prometheus-postgres-exporter (0.11.1) as a least-privileged role.
#
# What a user relies on:
# - make install puts the queries file in $(pg_config --sharedir)/p2pay;
# - the queries file loads and every query runs as a role that is only in
#   pg_monitor and was given p2pay.grant_monitoring(): the exporter reports
#   no scrape error, and that role reads no payment;
# - each series is in /metrics with the value the database holds: the review
#   queue's size and the age of its oldest payment, the decisions of
#   committed payments per decision (a rolled-back payment is not counted),
#   per-rule evaluations and fires, whether the statistics are shared
#   (overflow), the p2pay slot's lag in bytes (and in time once a consumer
#   is connected), and the size of p2pay's tables.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/lib";

use IPC::Run;
use P2payNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $exporter = '/usr/bin/prometheus-postgres-exporter';
my $queries  = "$FindBin::RealBin/../monitoring/queries.yaml";
my $db       = 'p2pay_monitoring';
my $BANK     = '00000000-0000-4000-8000-000000000001';
my $CARD     = '00000000-0000-4000-8000-000000000002';

ok(-x $exporter, "$exporter is installed (make test installs it)")
  or BAIL_OUT("no $exporter: apt-get install prometheus-postgres-exporter");

my $node = P2payNode::new_node('monitoring', $db);

# make install puts the file where README says.
my $installed = $node->config_data('--sharedir') . '/p2pay/queries.yaml';
ok(-f $installed && slurp_file($installed) eq slurp_file($queries),
	"make install puts monitoring/queries.yaml in $installed");
sub query { return $node->safe_psql($db, $_[0]); }

# Rules under which a payment's decision follows from its row alone: above
# 10000 is review, an unregistered method decline.
P2payNode::seed_row_decided($node, $db, 6);

# The monitoring role: pg_monitor, and what grant_monitoring() gives.
$node->safe_psql('postgres', 'CREATE ROLE p2pay_monitor LOGIN IN ROLE pg_monitor');
query("SELECT p2pay.grant_monitoring('p2pay_monitor')");
my ($ret, $out, $err) = $node->psql($db, 'SELECT count(*) FROM p2pay.payments',
	extra_params => [ '-U', 'p2pay_monitor' ]);
like($err, qr/permission denied for table payments/,
	'the monitoring role cannot read payments');

# A slot of p2pay's, created before the payments: it holds them back.
query("SELECT 'slot' FROM pg_create_logical_replication_slot('p2pay_monitored', 'p2pay')");

# Three approved, two reviewed (one of them an hour old), one declined;
# and one rolled back.
query(
	"INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
	 VALUES (uid(1), uid(2), 10, 'USD', '$BANK', now()),
	        (uid(2), uid(3), 20, 'USD', '$BANK', now()),
	        (uid(3), uid(4), 30, 'USD', '$BANK', now()),
	        (uid(4), uid(5), 15000, 'USD', '$BANK', now() - interval '1 hour'),
	        (uid(5), uid(6), 16000, 'USD', '$BANK', now()),
	        (uid(6), uid(1), 40, 'USD', '$CARD', now())");
query(
	"BEGIN;
	 INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
	 VALUES (uid(1), uid(3), 15000, 'USD', '$BANK');
	 ROLLBACK;");
is( query(
		"SELECT string_agg(decision || ' ' || n, ', ' ORDER BY decision)
		   FROM (SELECT decision, count(*) n FROM p2pay.payments GROUP BY decision) d"),
	'approve 3, review 2, decline 1',
	'the payments landed in each decision');

# The exporter, on a free port, as the monitoring role.
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $dsn =
	'host=' . $node->host . ' port=' . $node->port
  . " user=p2pay_monitor dbname=$db sslmode=disable";
my ($eout, $eerr) = ('', '');
my $h = IPC::Run::start(
	[
		$exporter, "--extend.query-path=$queries",
		"--web.listen-address=127.0.0.1:$port"
	],
	'>', \$eout, '2>', \$eerr,
	init => sub { $ENV{DATA_SOURCE_NAME} = $dsn; });

# scrape(): /metrics as a hash of series (name and labels) to value, once
# the exporter answers.
sub scrape
{
	my $text = '';
	for (my $i = 0; $i < 10 * $PostgreSQL::Test::Utils::timeout_default; $i++)
	{
		$text = `curl -s --max-time 10 http://127.0.0.1:$port/metrics`;
		last if $? == 0 && $text =~ /^pg_up /m;
		usleep(100_000);
	}
	my %m;
	for my $line (split /\n/, $text)
	{
		next if $line =~ /^#/;
		next unless $line =~ /^(\w+)(?:\{(.*)\})? (\S+)$/;
		my ($name, $labels, $value) = ($1, $2 // '', $3);
		# the exporter's own label server varies with the node
		my @l = sort grep { !/^server=/ } split /,(?=\w+=")/, $labels;
		$m{ $name . '{' . join(',', @l) . '}' } = $value;
	}
	return %m;
}

my %m = scrape();
ok(%m, 'the exporter serves /metrics') or diag("exporter stderr:\n$eerr");
is($m{'pg_up{}'}, 1, 'the exporter reaches the server');
my ($load) = grep { /^pg_exporter_user_queries_load_error\{/ } keys %m;
ok(defined $load && $load =~ /filename="\Q$queries\E"/ && $m{$load} == 0, 'the queries file loads');
is($m{'pg_exporter_last_scrape_error{}'}, 0, 'every query runs as the monitoring role')
  or diag("exporter stderr:\n$eerr");

my $d = qq{datname="$db"};
is($m{qq(p2pay_review_queue_payments{$d})}, 2, 'p2pay_review_queue_payments: 2 under review');
my $age = $m{qq(p2pay_review_queue_oldest_age_seconds{$d})};
ok(defined $age && $age >= 3600 && $age < 86400,
	'p2pay_review_queue_oldest_age_seconds: the hour-old review')
  or diag("age: " . ($age // 'absent'));

is($m{qq(p2pay_decisions_total{$d,decision="approve"})}, 3, 'p2pay_decisions_total approve: 3');
is($m{qq(p2pay_decisions_total{$d,decision="review"})},  2, 'review: 2 (the rolled-back one not counted)');
is($m{qq(p2pay_decisions_total{$d,decision="decline"})}, 1, 'decline: 1');

is($m{qq(p2pay_rule_evaluations{$d,rule="facts"})}, 7,
	'p2pay_rule_evaluations: the facts were read for every scoring, the rolled-back one too');
is($m{qq(p2pay_rule_fires{$d,rule="amount_limit"})}, 3, 'p2pay_rule_fires: amount_limit fired 3 times');
is($m{qq(p2pay_rule_fires{$d,rule="unregistered_method"})}, 1, 'unregistered_method once');
ok($m{qq(p2pay_rule_seconds_total{$d,rule="facts"})} > 0, 'p2pay_rule_seconds_total: time was measured');
ok( $m{qq(p2pay_rule_max_seconds{$d,rule="facts"})} > 0
	  && $m{qq(p2pay_rule_max_seconds{$d,rule="facts"})} * 7 >= $m{qq(p2pay_rule_seconds_total{$d,rule="facts"})},
	'p2pay_rule_max_seconds: at least the mean');
is($m{qq(p2pay_stats_overflow{$d})}, 0, 'p2pay_stats_overflow: the database has its own statistics');

my $slot = qq{$d,slot_name="p2pay_monitored"};
is($m{qq(p2pay_slot_active{$slot})}, 0, 'p2pay_slot_active: no consumer');
ok($m{qq(p2pay_slot_lag_bytes{$slot})} > 0, 'p2pay_slot_lag_bytes: the slot holds the payments back');
is($m{qq(p2pay_slot_lag_seconds{$slot})}, 'NaN', 'p2pay_slot_lag_seconds: unknown without a consumer');

my $payments_bytes = query(
	"SELECT coalesce((SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('p2pay.payments')),
	                 pg_total_relation_size('p2pay.payments'))");
is($m{qq(p2pay_table_bytes{$d,table="payments"})} + 0, $payments_bytes,
	'p2pay_table_bytes: the size of payments');
for my $t (qw(account_stats pair_stats account_daily))
{
	ok($m{qq(p2pay_table_bytes{$d,table="$t"})} > 0, "p2pay_table_bytes: $t");
}

# A consumer connects: the slot is active and its time lag known.
my $recv = IPC::Run::start(
	[
		$node->installed_command('pg_recvlogical'), '-d', $node->connstr($db),
		'-S', 'p2pay_monitored', '--start', '-f', '/dev/null', '-s', '1', '-F', '1'
	],
	'>', \my $rout, '2>', \my $rerr);
$node->poll_query_until($db,
	"SELECT active AND confirmed_flush_lsn >= pg_current_wal_lsn() FROM pg_replication_slots
	  WHERE slot_name = 'p2pay_monitored'")
  or diag("pg_recvlogical: $rerr");
%m = scrape();
is($m{qq(p2pay_slot_active{$slot})}, 1, 'p2pay_slot_active: a consumer is connected');
my $lag = $m{qq(p2pay_slot_lag_seconds{$slot})};
ok(defined $lag && $lag ne 'NaN' && $lag >= 0, 'p2pay_slot_lag_seconds: a time once connected')
  or diag('lag_seconds: ' . ($lag // 'absent'));
$recv->kill_kill;

$h->kill_kill;
$node->stop;
done_testing();
