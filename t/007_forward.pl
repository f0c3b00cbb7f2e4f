# t/007_forward.pl: tools/p2pay-forward delivers every flagged payment to a
# Kafka topic (or a file), at least once, across a SIGKILL of the forwarder,
# an immediate stop of PostgreSQL, a broker outage and a failed delivery.
#
# What stands in for Kafka.  No broker runs here: the forwarder is started
# with -X test.mock.num.brokers=3, which makes librdkafka start a mock
# cluster of three brokers inside the forwarder's own process, speaking the
# Kafka protocol on local sockets.  The producer talks to it as to a real
# cluster (idempotent producer, acks=all, retries), and the mock API
# (rdkafka_mock.h) takes its brokers down (--mock-outage) or makes produce
# requests fail (--mock-fail).  These options exist only in the test build,
# tools/p2pay-forward-test (make tools-test), which is the program run
# here; the installed tools/p2pay-forward is checked to have none of them.
# The test-only option --mock-dump FILE makes
# the forwarder append each message the mock brokers acknowledged (its
# partition, offset, key and value, from the delivery report) to FILE, and
# fsync FILE before it confirms any position past that message to
# PostgreSQL.
#
# What that proves, and what it does not.  A restarted forwarder starts a
# new, empty mock cluster, so "nothing lost" is checked on the union of the
# dump files of every run: every flagged payment in the table appears in
# the union.  Since each run records an acknowledgement before it confirms
# the position, an event missing from the union would be one whose position
# was confirmed without an acknowledgement, or one the restarted stream did
# not resend: exactly the faults of the forwarder (and of its use of the
# replication protocol) that at-least-once delivery rules out.  It does not
# prove anything about Kafka itself: that a real cluster keeps an
# acknowledged message (acks=all with min.insync.replicas, replication,
# unclean leader election) is the brokers' promise, and the mock's
# acknowledgements are not durable.  It also uses the mock's notion of an
# outage (connections refused) and of a permanent error, not a network
# partition.
#
# The runs, on one slot, with a pgbench workload (approved, review and
# decline payments; some transactions rolled back):
#  1. killed with SIGKILL mid-stream; 2. started again, then PostgreSQL is
#  stopped in immediate mode and started while it runs (it reconnects by
#  itself); 3. all brokers down after some deliveries: it stops confirming
#  (the slot keeps the WAL) and at most --max-in-flight events wait, then the
#  brokers come back and everything arrives; 4. produce requests fail with a
#  permanent error: the producer stops (gapless guarantee), and the
#  forwarder starts again from the confirmed position; 5. SIGTERM while the
#  brokers are down: after --drain-timeout it exits 1, having confirmed
#  nothing past the undelivered events, and run 6 delivers them; 7. a
#  truncate, which has no payer, goes out with the empty key; 8. with
#  -o key=payee_id, messages are keyed by their payee.  The other
#  runs end with SIGTERM, which drains, confirms and exits 0.  The --to FILE
#  sink gets a SIGKILL and a restart of its own, on a second slot.
#  Duplicates are allowed, counted and reported with note().  First of all,
#  the errors: --help, a bad DSN, a missing slot, a bad option, bad Kafka
#  settings, unreachable brokers.  Last, a slot dropped while the forwarder
#  reconnects, and an invalidated one, stop it (never a new slot).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/lib";

use IPC::Run;
use JSON::PP;
use P2payNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $forwarder = "$FindBin::RealBin/../tools/p2pay-forward-test";
my $shipped   = "$FindBin::RealBin/../tools/p2pay-forward";
if (!-x $forwarder || !-x $shipped)
{
	fail('tools/p2pay-forward and tools/p2pay-forward-test are built (make tools tools-test)');
	done_testing();
	exit;
}

# The installed program has no test-only code: no symbol of the mock
# cluster's API or of mock.c, no option or message that names it (strings
# of its loaded data, not of its debug information).
{
	my %mock;
	for my $program ($shipped, $forwarder)
	{
		my $symbols = `nm $program`;
		my $strings = `strings -d $program`;
		die "nm or strings failed on $program" if $? != 0 || $symbols eq '';
		$mock{$program} = scalar(() = ($symbols . $strings) =~ /mock/gi);
	}
	is($mock{$shipped}, 0, 'tools/p2pay-forward has no mock symbol or text');
	ok($mock{$forwarder} > 0, 'tools/p2pay-forward-test has the mock code (the check can see it)');
	my ($out, $err) = ('', '');
	IPC::Run::run([ $shipped, '-S', 'x', '-t', 'flagged', '-X', 'test.mock.num.brokers=3',
			'--mock-dump', '/dev/null' ], '>', \$out, '2>', \$err);
	is($? >> 8, 2, 'tools/p2pay-forward refuses --mock-dump: exit 2');
	like($err, qr/unrecognized option '--mock-dump'/, 'tools/p2pay-forward: --mock-dump is no option of it');
}

my $db   = 'p2pay_forward';
my $node = P2payNode::new_node('forward', $db);
P2payNode::seed_row_decided($node, $db, 40);
my $basedir = $node->basedir;

my $BANK = '00000000-0000-4000-8000-000000000001';    # registered by everyone

sub query { return $node->safe_psql($db, $_[0]); }

sub lsn_le
{
	my ($left, $right) = @_;
	return query("SELECT '$left'::pg_lsn <= '$right'::pg_lsn") eq 't';
}

sub slot_field
{
	my ($slot, $field) = @_;
	return query("SELECT $field FROM pg_replication_slots WHERE slot_name = '$slot'");
}

# Which of the transaction ids given a restart from the slot, as it stands,
# would not send: decodes a copy of it.  (Its confirmed position may pass
# the WAL of a payment whose transaction had not committed when a
# keepalive came, as a slot's may: what matters is that the commit of an
# undelivered payment is never confirmed, so that a restart sends it.)
sub missing_from_slot
{
	my ($slot, @txids) = @_;
	query("SELECT pg_copy_logical_replication_slot('$slot', 'probe')");
	my $out = query("SELECT string_agg(data, E'\\n') FROM pg_logical_slot_peek_changes('probe', NULL, NULL)");
	query("SELECT pg_drop_replication_slot('probe')");
	return grep { index($out, $_) < 0 } @txids;
}

# The workload: see P2payNode::write_pair_workload.
my $script = "$basedir/workload.sql";
P2payNode::write_pair_workload($script);

# pgbench with the workload, N transactions per client, in the background;
# with RATE, at most that many transactions a second (so that it lasts).
sub start_pgbench
{
	my ($transactions, $rate) = @_;
	my %run = (out => '', err => '');
	$run{h} = IPC::Run::start(
		[
			$node->installed_command('pgbench'), '-n', '-c', '2', '-j', '2',
			'-t', $transactions, ($rate ? ('-R', $rate) : ()),
			'-f', $script, $node->connstr($db)
		],
		'>', \$run{out}, '2>', \$run{err},
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return \%run;
}

# The forwarder in the background, its stderr in a file (appended across
# runs, so that a failure shows every run's log).
my $log = "$basedir/forward.log";
my @forwarders;

sub start_forwarder
{
	my ($name, @args) = @_;
	my %f = (name => $name, out => '');
	append_to_file($log, "=== $name\n");
	$f{logstart} = -s $log;
	$f{h} = IPC::Run::start(
		[ $forwarder, '-d', $node->connstr($db), '-s', '1', @args ],
		'>', \$f{out}, '2>>', $log,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	push @forwarders, \%f;
	return \%f;
}

# A test that dies leaves no forwarder behind, retrying a server that is gone.
END
{
	for my $f (@forwarders)
	{
		eval { $f->{h}->kill_kill if $f->{h}->pumpable; };
	}
}

# What run f has logged so far.
sub log_of
{
	my ($f) = @_;
	my $all = slurp_file($log);
	return substr($all, $f->{logstart});
}

# Poll until the code returns true; dies after the default timeout.
sub wait_until
{
	my ($what, $code) = @_;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (!$code->())
	{
		die "timed out waiting for $what\n" . slurp_file($log) if time > $deadline;
		select(undef, undef, undef, 0.1);
	}
	return;
}

# Kill run f with SIGKILL (IPC::Run's kill_kill would try SIGTERM first).
sub kill_forwarder
{
	my ($f) = @_;
	$f->{h}->signal('KILL');
	$f->{h}->finish;
	return;
}

# Stop run f with SIGTERM: returns its exit status.
sub stop_forwarder
{
	my ($f) = @_;
	$f->{h}->signal('TERM');
	$f->{h}->finish;
	return $f->{h}->result(0);
}

# The lines of the mock dump: [partition, offset, key, event].  A line
# that doesn't parse (none should: the forwarder ends a line cut by a kill
# before it appends) is counted.
my $dump = "$basedir/topic.dump";
my $bad_lines = 0;

sub dumped
{
	return () unless -e $dump;
	my @rows;
	for my $line (split /\n/, slurp_file($dump))
	{
		my @f = split /\t/, $line, 4;
		my $event = @f == 4 ? eval { decode_json($f[3]) } : undef;
		if (!defined $event) { $bad_lines++; next; }
		push @rows, [ @f[ 0 .. 2 ], $event ];
	}
	return @rows;
}

# The flagged payments the table holds: transaction_id => payer_id.
sub flagged_in_table
{
	my %flagged;
	for my $row (split /\n/,
		query(
			"SELECT transaction_id || ' ' || payer_id FROM p2pay.payments WHERE decision <> 'approve'"
		))
	{
		my ($tx, $payer) = split / /, $row;
		$flagged{$tx} = $payer;
	}
	return %flagged;
}

# Compare a list of events with the table: every flagged payment at least
# once, nothing else (no approved or rolled-back payment).
sub check_delivery
{
	my ($name, @events) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my %flagged = flagged_in_table();
	my %seen;
	$seen{ $_->{transaction_id} }++ for grep { $_->{event} eq 'flagged' } @events;
	my @missing = grep { !$seen{$_} } sort keys %flagged;
	my @extra   = grep { !exists $flagged{$_} } sort keys %seen;
	my $dups    = 0;
	$dups += $_ - 1 for values %seen;
	ok(scalar(keys %flagged) > 0, "$name: the workload made flagged payments");
	is(scalar(@missing), 0,
		"$name: all " . scalar(keys %flagged) . ' flagged payments delivered')
	  or diag("missing: @missing[0 .. ($#missing < 9 ? $#missing : 9)]");
	is(scalar(@extra), 0, "$name: nothing delivered that is not a flagged payment")
	  or diag("extra: @extra");
	note("$name: " . scalar(@events) . ' events delivered, '
		  . scalar(keys %seen) . " distinct flagged payments, $dups duplicates");
	return $dups;
}

sub workload_done
{
	my ($run) = @_;
	$run->{h}->finish;
	return;
}

my $slot = 'fwd';
query("SELECT 'created' FROM pg_create_logical_replication_slot('$slot', 'p2pay')");
my @KAFKA = ('-S', $slot, '-t', 'flagged', '-X', 'test.mock.num.brokers=3',
	'--mock-dump', $dump);

###########################################################################
# Errors, before anything runs.
###########################################################################
my $slot_start = slot_field($slot, 'confirmed_flush_lsn');
{
	my ($out, $err) = ('', '');
	IPC::Run::run([ $forwarder, '--help' ], '>', \$out, '2>', \$err);
	is($? >> 8, 0, '--help: exits 0');
	like($out, qr/^p2pay-forward delivers the p2pay stream/, '--help: describes the program');
	like($out, qr/--brokers HOSTS.*--topic TOPIC.*-X KEY=VALUE.*--to stdout\|FILE/s,
		'--help: lists the sink options');
	unlike($out, qr/mock/, '--help: the test-only options are not shown');

	my $run = sub {
		my @args = @_;
		($out, $err) = ('', '');
		IPC::Run::run([ $forwarder, @args ], '>', \$out, '2>', \$err,
			IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
		return $? >> 8;
	};

	is($run->('-d', $node->connstr($db) . ' port=1', '-S', $slot, '--to', 'stdout'),
		1, 'bad DSN: exit 1');
	like($err, qr/^p2pay-forward: error: could not connect to PostgreSQL: /,
		'bad DSN: says it could not connect, with libpq\'s reason');

	is($run->('-d', $node->connstr($db), '-S', 'no_such_slot', '--to', 'stdout'),
		1, 'missing slot: exit 1');
	like($err, qr/replication slot "no_such_slot" does not exist\nCreate it with --create-slot/,
		'missing slot: says so, and how to create it');
	is(query("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'no_such_slot'"),
		0, 'missing slot: not created without --create-slot');

	is($run->('-d', $node->connstr($db), '-S', $slot, '--to', 'stdout', '-o', 'min-decision=high'),
		1, 'bad plugin option: exit 1');
	like($err, qr/option "min-decision" of output plugin p2pay must be "review" or "decline"/,
		'bad plugin option: the plugin\'s error');

	is($run->('-S', $slot, '-t', 'flagged', '-X', 'no.such.property=1'),
		2, 'unknown -X property: exit 2');
	like($err, qr/invalid Kafka setting no\.such\.property=1: No such configuration property/,
		'unknown -X property: librdkafka\'s reason');
	is($run->('-S', $slot, '-t', 'flagged', '-b', 'localhost:1', '-X', 'enable.idempotence=false'),
		2, 'idempotence off: refused, exit 2');
	is($run->('-S', $slot, '-t', 'flagged'), 2, 'no brokers: exit 2');
	like($err, qr/no brokers given/, 'no brokers: says so');
	is($run->('-S', $slot, '-b', 'localhost:1'), 2, 'no topic: exit 2');
	is($run->('-t', 'flagged', '-b', 'localhost:1'), 2, 'no slot: exit 2');
	is($run->('-S', $slot, '-t', 'flagged', '-b', 'localhost:1', '--mock-dump', "$basedir/x"),
		2, 'test-only options without the mock cluster: exit 2');

	# Port 1 on the loopback: nothing listens, the connection is refused.
	is($run->('-d', $node->connstr($db), '-S', $slot, '-t', 'flagged',
			'-b', '127.0.0.1:1', '--connect-timeout', '1'),
		1, 'unreachable brokers: exit 1');
	like($err, qr/error: could not reach the Kafka brokers at 127\.0\.0\.1:1 within 1 s/,
		'unreachable brokers: says so');
	is(slot_field($slot, 'confirmed_flush_lsn'), $slot_start,
		'the failed starts left the slot where it was');
}

###########################################################################
# The file sink: --create-slot, SIGKILL mid-stream, restart, SIGTERM.
###########################################################################
{
	my $file = "$basedir/events.jsonl";
	my @args = ('-S', 'fwd_file', '--create-slot', '--to', $file);
	my $count = sub { return -e $file ? scalar(() = slurp_file($file) =~ /\n/g) : 0 };

	my $f1 = start_forwarder('file 1', @args);
	wait_until('the file sink to create its slot',
		sub { query("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'fwd_file'") });
	is(slot_field('fwd_file', 'plugin'), 'p2pay', '--create-slot: the slot uses the p2pay plugin');
	my $before = query('SELECT count(*) FROM p2pay.payments');
	my $load = start_pgbench(60);
	wait_until('some lines in the file', sub { $count->() >= 10 });
	kill_forwarder($f1);
	workload_done($load);
	like(log_of($f1), qr/created replication slot "fwd_file" with output plugin p2pay/,
		'--create-slot: logs the creation');

	my $f2 = start_forwarder('file 2', @args);
	my $end = query('SELECT pg_current_wal_lsn()');
	wait_until('the file sink to confirm the whole workload',
		sub { lsn_le($end, slot_field('fwd_file', 'confirmed_flush_lsn')) });
	is(stop_forwarder($f2), 0, 'file sink: SIGTERM exits 0');
	like(log_of($f2), qr/streaming slot "fwd_file" from its confirmed position/,
		'file sink: the restart found the slot (no second creation)');
	my @events = map { decode_json($_) } grep { /^\{/ } split /\n/, slurp_file($file);
	check_delivery('file sink, killed and restarted', @events);
	is(scalar(grep { !/^\{.*\}$/ } split /\n/, slurp_file($file)),
		0, 'file sink: every line is a whole JSON object');
	query("SELECT pg_drop_replication_slot('fwd_file')");
}

###########################################################################
# Run 1: SIGKILL mid-stream.
###########################################################################
# Slowed down (at most 5 messages in flight, each batch lingering 50 ms),
# so that the kill lands with most of the workload still to deliver.
my $f1 = start_forwarder('kafka 1', @KAFKA, '--max-in-flight', '5', '-X', 'linger.ms=50');
my $load = start_pgbench(300);
wait_until('run 1 to deliver 30 messages', sub { scalar(dumped()) >= 30 });
kill_forwarder($f1);
my $killed_at = scalar(dumped());
workload_done($load);
my $flagged_now = query("SELECT count(*) FROM p2pay.payments WHERE decision <> 'approve'");
ok($killed_at < $flagged_now,
	"run 1 was killed mid-stream ($killed_at of $flagged_now flagged payments delivered)");

###########################################################################
# Run 2: PostgreSQL stopped in immediate mode under it, and started again.
###########################################################################
my $f2 = start_forwarder('kafka 2', @KAFKA);
$load = start_pgbench(300, 200);
my $base = scalar(dumped());
wait_until('run 2 to deliver 20 more messages', sub { scalar(dumped()) >= $base + 20 });
$node->stop('immediate');
$load->{h}->finish;    # its clients lost the server: pgbench fails, as it should
$node->start;
wait_until('run 2 to reconnect',
	sub { (() = log_of($f2) =~ /streaming slot "fwd" from/g) >= 2 });
like(log_of($f2), qr/lost the connection to PostgreSQL|the server ended the stream/,
	'run 2: logs the lost connection');
$load = start_pgbench(50);
workload_done($load);
my $end = query('SELECT pg_current_wal_lsn()');
wait_until('run 2 to confirm everything',
	sub { lsn_le($end, slot_field($slot, 'confirmed_flush_lsn')) });
is(stop_forwarder($f2), 0, 'run 2: SIGTERM exits 0');
like(log_of($f2), qr/stopped: \d+ events received, \d+ delivered, confirmed [0-9A-F]+\/[0-9A-F]+\n/,
	'run 2: logs the position it confirmed');
like(log_of($f2), qr/progress: \d+ events received, \d+ delivered, \d+ in flight, confirmed [0-9A-F]+\/[0-9A-F]+, lag \d+ bytes/,
	'run 2: logs progress lines');
check_delivery('after a SIGKILL and an immediate stop of PostgreSQL', map { $_->[3] } dumped());

###########################################################################
# Run 3: every broker down after 5 deliveries, until the file "up" exists.
###########################################################################
my $up = "$basedir/up";
my $run3_start = scalar(dumped());
my $f3 = start_forwarder('kafka 3', @KAFKA, '--max-in-flight', '4', '--mock-outage', "5:$up");
# Five flagged payments, one at a time, so that the first five deliveries
# are these.
my $seq = 0;

sub pay_flagged
{
	my ($n) = @_;
	for (1 .. $n)
	{
		$seq++;
		my $payer = 1 + $seq % 3;
		query("INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
		       VALUES (uid($payer), uid(40), 15000, 'USD', '$BANK')");
	}
	return;
}
pay_flagged(5);
wait_until('the outage', sub { log_of($f3) =~ /mock: all 3 brokers down after/ });
my $dumped_at_outage = scalar(dumped());
my $before = query('SELECT pg_current_wal_lsn()');
pay_flagged(10);
my $after = query('SELECT pg_current_wal_lsn()');
my @paid = map { [ split / / ] } split /\n/,
  query('SELECT payer_id || \' \' || transaction_id FROM
           (SELECT * FROM p2pay.payments ORDER BY id DESC LIMIT 15) p ORDER BY id');
# The forwarder's walsender, by the slot it holds.
my $walsender = "FROM pg_stat_replication WHERE pid =
  (SELECT active_pid FROM pg_replication_slots WHERE slot_name = '$slot')";
# Wait until the forwarder holds its limit of unacknowledged events, the
# server has sent everything, and the forwarder has reported its position
# since.
wait_until('4 events in flight', sub { log_of($f3) =~ /\b4 in flight/ });
wait_until('the walsender to send everything',
	sub { query("SELECT sent_lsn >= '$after' $walsender") eq 't' });
my $t = query('SELECT now()');
wait_until('a status update after that',
	sub { query("SELECT reply_time > '$t' $walsender") eq 't' });
ok(!-e $up, 'the brokers are still down');
my @undelivered = map { $_->[1] } @paid[5 .. 14];
is(join(' ', missing_from_slot($slot, @undelivered)), '',
	'outage: a restart from the slot would send every undelivered payment');
ok(lsn_le(slot_field($slot, 'restart_lsn'), $before),
	'outage: the slot keeps the WAL of the undelivered payments');
is(scalar(dumped()), $dumped_at_outage, 'outage: nothing delivered while the brokers are down');
my @inflight = log_of($f3) =~ /(\d+) in flight/g;
ok(!grep({ $_ > 4 } @inflight), 'outage: never more than --max-in-flight events in flight');
append_to_file($up, '');
$end = query('SELECT pg_current_wal_lsn()');
wait_until('run 3 to confirm everything after the outage',
	sub { lsn_le($end, slot_field($slot, 'confirmed_flush_lsn')) });
like(log_of($f3), qr/mock: brokers up again/, 'outage: the brokers came back');
is(stop_forwarder($f3), 0, 'run 3: SIGTERM exits 0');
my @run3 = map { $_->[3] } dumped();
check_delivery('after a broker outage', @run3);

# One session paid these 15 in order, across the outage: each payer's must
# be on the topic in that order (within the payer's partition, by offset,
# in run 3's cluster; first occurrences count).
{
	my (%want, %got, %mine);
	for my $p (@paid)
	{
		push @{ $want{ $p->[0] } }, $p->[1];
		$mine{ $p->[1] } = 1;
	}
	my @rows = grep { $mine{ $_->[3]{transaction_id} } } (dumped())[ $run3_start .. scalar(dumped()) - 1 ];
	my %seen;
	for my $r (sort { $a->[0] <=> $b->[0] || $a->[1] <=> $b->[1] } @rows)
	{
		push @{ $got{ $r->[2] } }, $r->[3]{transaction_id}
		  unless $seen{ $r->[3]{transaction_id} }++;
	}
	is_deeply(\%got, \%want,
		'outage: each payer\'s events are on the topic in the order they were paid');
}

###########################################################################
# Run 4: produce requests fail with a permanent error after 3 deliveries.
###########################################################################
my $f4 = start_forwarder('kafka 4', @KAFKA, '--mock-fail', '2@3');
pay_flagged(12);
# The failure is armed once 3 deliveries are reported; librdkafka may report
# all 12 at once, after their requests went out: more payments after the
# arming make the requests that fail.
wait_until('the failure to be armed',
	sub { log_of($f4) =~ /mock: the next 2 produce requests fail/ });
pay_flagged(12);
$end = query('SELECT pg_current_wal_lsn()');
wait_until('run 4 to confirm everything after the failure',
	sub { lsn_le($end, slot_field($slot, 'confirmed_flush_lsn')) });
like(log_of($f4), qr/mock: the next 2 produce requests fail/, 'failure: injected');
like(log_of($f4),
	qr/delivery of the event at [0-9A-F]+\/[0-9A-F]+ failed: .*; starting again from the confirmed position/,
	'failure: the failed delivery is logged, and the stream starts again');
is(stop_forwarder($f4), 0, 'run 4: SIGTERM exits 0');

###########################################################################
# Everything, over the four runs.
###########################################################################
my @all = dumped();
my $dups = check_delivery('all runs', map { $_->[3] } @all);
note("duplicates over the four runs: $dups (at least once, not exactly once)");
is($bad_lines, 0, 'every line of the dump is whole');
is(scalar(grep { $_->[2] ne ($_->[3]{payer_id} // '') } @all),
	0, 'every message is keyed by its payer_id');
{
	# the partition is a function of the key (murmur2, six partitions, in
	# every run's mock cluster alike)
	my %partitions;
	$partitions{ $_->[2] }{ $_->[0] } = 1 for @all;
	is(scalar(grep { keys %{ $partitions{$_} } > 1 } keys %partitions),
		0, 'each payer\'s events are in one partition');
}

###########################################################################
# SIGTERM while the brokers are down: what Kafka has not acknowledged is
# not confirmed, and the exit status says so.
###########################################################################
unlink $up;
my $f5 = start_forwarder('kafka 5', @KAFKA, '--drain-timeout', '1', '--mock-outage', "1:$up");
pay_flagged(1);
wait_until('the outage', sub { log_of($f5) =~ /mock: all 3 brokers down after/ });
$before = query('SELECT pg_current_wal_lsn()');
pay_flagged(2);
wait_until('2 events in flight', sub { log_of($f5) =~ /\b2 in flight/ });
is(stop_forwarder($f5), 1, 'SIGTERM with undelivered events: exit 1 after the drain timeout');
like(log_of($f5), qr/stopped with 2 events not acknowledged by Kafka; they are not confirmed/,
	'SIGTERM with undelivered events: says so');
@undelivered = split /\n/, query('SELECT transaction_id FROM p2pay.payments ORDER BY id DESC LIMIT 2');
is(join(' ', missing_from_slot($slot, @undelivered)), '',
	'SIGTERM with undelivered events: a restart from the slot would send them');
my $f6 = start_forwarder('kafka 6', @KAFKA);
$end = query('SELECT pg_current_wal_lsn()');
wait_until('the next run to confirm everything',
	sub { lsn_le($end, slot_field($slot, 'confirmed_flush_lsn')) });
is(stop_forwarder($f6), 0, 'run 6: SIGTERM exits 0');
check_delivery('after a stop during an outage', map { $_->[3] } dumped());

# A truncate has no payer: it goes out with the empty key.
my $f7 = start_forwarder('kafka 7', @KAFKA);
query('TRUNCATE p2pay.payments');
$end = query('SELECT pg_current_wal_lsn()');
wait_until('the truncate to be confirmed',
	sub { lsn_le($end, slot_field($slot, 'confirmed_flush_lsn')) });
is(stop_forwarder($f7), 0, 'run 7: SIGTERM exits 0');
my ($truncate) = grep { $_->[3]{event} eq 'truncated' } dumped();
ok(defined $truncate && $truncate->[2] eq '', 'a truncate is delivered with the empty key');
ok(!grep({ exists $_->[3]{key} } dumped()),
	'the values are the lines without the key option: no "key" field');

# Run 8: the plugin's key option chooses the key: -o key=payee_id.
my $dumped_before = scalar(dumped());
my $f8k = start_forwarder('kafka 8', @KAFKA, '-o', 'key=payee_id');
pay_flagged(3);
$end = query('SELECT pg_current_wal_lsn()');
wait_until('the payee-keyed events to be confirmed',
	sub { lsn_le($end, slot_field($slot, 'confirmed_flush_lsn')) });
is(stop_forwarder($f8k), 0, 'run 8: SIGTERM exits 0');
my @by_payee = (dumped())[ $dumped_before .. scalar(dumped()) - 1 ];
is(scalar(@by_payee), 3, 'run 8: the three payments are delivered');
is(scalar(grep { $_->[2] ne $_->[3]{payee_id} || $_->[2] eq $_->[3]{payer_id} } @by_payee),
	0, '-o key=payee_id: each message is keyed by its payee_id');
my ($bad_key_out, $bad_key_err) = ('', '');
IPC::Run::run([ $forwarder, '-d', $node->connstr($db), '-S', $slot, '--to', 'stdout',
		'-o', 'key=nonsense' ], '>', \$bad_key_out, '2>', \$bad_key_err,
	IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
is($? >> 8, 1, '-o key=nonsense: exit 1');
like($bad_key_err, qr/option "key" of output plugin p2pay must be "payer_id", "payee_id" or "transaction_id"/,
	'-o key=nonsense: the plugin\'s error');

###########################################################################
# A slot that goes away is never replaced.  The forwarder logs in as a role
# with REPLICATION and nothing else (as docker/ runs it), and was started
# with --create-slot; the slot is dropped while it reconnects: it must stop
# with exit 1 and say so, not create a new slot at the current position
# (which would skip every event in between).  An invalidated slot
# (max_slot_wal_keep_size) stops it the same way, even at a first start
# with --create-slot.
###########################################################################
query('CREATE ROLE fwd_login LOGIN REPLICATION');
my $as_login = $node->connstr($db) . ' user=fwd_login';
my $gone_file = "$basedir/gone.jsonl";
my $f8 = start_forwarder('slot dropped', '-d', $as_login, '-S', 'fwd_gone', '--create-slot',
	'--to', $gone_file);
wait_until('the slot to be created and streamed',
	sub { log_of($f8) =~ /streaming slot "fwd_gone"/ });
pay_flagged(1);
wait_until('the event in the file', sub { -s $gone_file });
pass('a REPLICATION role without superuser creates the slot and streams it');

query('ALTER ROLE fwd_login NOLOGIN');
query("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'fwd_gone'");
wait_until('the forwarder to fail to log in again',
	sub { log_of($f8) =~ /not permitted to log in; trying again/ });
wait_until('the slot to be released',
	sub { slot_field('fwd_gone', 'active') eq 'f' });
query("SELECT pg_drop_replication_slot('fwd_gone')");
query('ALTER ROLE fwd_login LOGIN');
$f8->{h}->finish;
is($f8->{h}->result(0), 1, 'slot dropped while reconnecting: exit 1');
like(log_of($f8), qr/error: replication slot "fwd_gone" no longer exists\nIt was dropped while/,
	'slot dropped while reconnecting: says so');
is(query("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'fwd_gone'"),
	0, 'slot dropped while reconnecting: not created again despite --create-slot');

query("SELECT pg_create_logical_replication_slot('fwd_lost', 'p2pay')");
$node->append_conf('postgresql.conf', "max_slot_wal_keep_size = 1MB");
$node->reload;
wait_until('the slot to be invalidated', sub {
	query('CREATE TABLE IF NOT EXISTS wal_filler (x int); INSERT INTO wal_filler VALUES (1);'
		  . ' SELECT pg_switch_wal(); CHECKPOINT;');
	return slot_field('fwd_lost', 'wal_status') eq 'lost';
});
my $f9 = start_forwarder('slot invalidated', '-d', $as_login, '-S', 'fwd_lost', '--create-slot',
	'--to', "$basedir/lost.jsonl");
$f9->{h}->finish;
is($f9->{h}->result(0), 1, 'invalidated slot: exit 1');
like(log_of($f9), qr/error: replication slot "fwd_lost" has been invalidated\nThe server removed WAL/,
	'invalidated slot: says so');
is(slot_field('fwd_lost', 'wal_status'), 'lost', 'invalidated slot: left as it is, not replaced');

$node->stop;
done_testing();
