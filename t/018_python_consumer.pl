# t/018_python_consumer.pl: examples/consumer.py writes every flagged
# payment exactly once, across kill -9s of the server and of itself.
#
# The consumer reads a p2pay slot with psycopg2 while pgbench inserts
# payments (approved, review, decline; some transactions rolled back).  The
# server is killed with SIGKILL three times under it (the postmaster; its
# children exit when they see it gone, and the next start recovers), each
# time in the middle of the workload, and restarted; the consumer reconnects
# by itself.  Between the first and the second crash the consumer itself is
# killed with SIGKILL and started again.  After a last batch the consumer
# confirms the end of the WAL and stops on SIGTERM.  Its output then holds
# each flagged payment of the table once: the resends that at-least-once
# delivery makes after each crash (counted and reported) were skipped by
# the keys in its state file, and any line a killed consumer wrote without
# recording its key is cut at its next start (checked on its own below).
#
# Then the whole stream again: a second slot, made before the first payment
# and never read, delivers every event a second time to a consumer with the
# same state file, which must write nothing and count every event as a
# duplicate.  SIGTERM stops a consumer waiting for a server that is down.
# Last, a missing slot is an error, and --create-slot does not make a new
# one once the state file has recorded events.
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

# Debian's python3-psycopg2 run by Debian's /usr/bin/python3 (make test
# installs it), or the interpreter P2PAY_PYTHON names.
my $python   = $ENV{P2PAY_PYTHON} // '/usr/bin/python3';
my $consumer = "$FindBin::RealBin/../examples/consumer.py";
if (system($python, '-c', 'import psycopg2.extras') != 0)
{
	fail("$python imports psycopg2 (Debian: python3-psycopg2)");
	done_testing();
	exit;
}

my $db   = 'p2pay_python';
my $node = P2payNode::new_node('python', $db);
P2payNode::seed_row_decided($node, $db, 40);
my $basedir = $node->basedir;
my $state   = "$basedir/state.sqlite";
my $output  = "$basedir/flagged.jsonl";

sub query { return $node->safe_psql($db, $_[0]); }

sub slot_field
{
	my ($slot, $field) = @_;
	return query("SELECT $field FROM pg_replication_slots WHERE slot_name = '$slot'");
}

my $script = "$basedir/workload.sql";
P2payNode::write_pair_workload($script);

# pgbench with the workload in the background, at most 200 transactions a
# second, for ARGS (-t N, or -T SECONDS).
sub start_pgbench
{
	my %run = (out => '', err => '');
	$run{h} = IPC::Run::start(
		[
			$node->installed_command('pgbench'), '-n', '-c', '2', '-j', '2', '-R', '200',
			'-f', $script, @_, $node->connstr($db)
		],
		'>', \$run{out}, '2>', \$run{err},
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return \%run;
}

# The consumer in the background, its standard error in a log of its own.
my @consumers;

sub start_consumer
{
	my ($name, @args) = @_;
	my %c = (name => $name, out => '', log => "$basedir/consumer-$name.log");
	$c{h} = IPC::Run::start(
		[
			$python, $consumer, '--dsn', $node->connstr($db), '--state', $state,
			'--output', $output, '--status-interval', '1', @args
		],
		'>', \$c{out}, '2>', $c{log},
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	push @consumers, \%c;
	return \%c;
}

# A test that dies leaves no consumer behind, retrying a server that is gone.
END
{
	for my $c (@consumers)
	{
		eval { $c->{h}->kill_kill if $c->{h}->pumpable; };
	}
}

sub log_of { return -e $_[0]->{log} ? slurp_file($_[0]->{log}) : ''; }

# Poll until the code returns true; dies after the default timeout.
sub wait_until
{
	my ($what, $code) = @_;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (!$code->())
	{
		die "timed out waiting for $what\n" . join('', map { "$_->{name}:\n" . log_of($_) } @consumers)
		  if time > $deadline;
		select(undef, undef, undef, 0.1);
	}
	return;
}

# How many times consumer c has started streaming.
sub streams { return scalar(() = log_of($_[0]) =~ /streaming slot/g); }

sub payments { return query('SELECT count(*) FROM p2pay.payments'); }

# Kill the postmaster with SIGKILL and start the server again once it is
# gone (reaped: until then a new postmaster takes its lock file for a live
# one) and its children have followed it (until then the start fails: the
# old shared memory is still attached).
sub crash_server
{
	my ($pid) = slurp_file($node->data_dir . '/postmaster.pid') =~ /^(\d+)/;
	$node->kill9;
	wait_until('the killed postmaster to be gone', sub { !kill(0, $pid) });
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	until ($node->start(fail_ok => 1))
	{
		die 'the server did not start again after kill -9' if time > $deadline;
		sleep 1;
	}
	return;
}

# Run the workload until N more payments are committed, crash the server
# under it, and wait for consumer c to stream again.  BEFORE, if given, runs
# before the crash and returns the consumer to watch instead of c.
sub crash_during_workload
{
	my ($c, $n, $before) = @_;
	my $target = payments() + $n;
	my $bench  = start_pgbench('-T', '300');
	wait_until("$n more payments", sub { payments() >= $target });
	$c = $before->() if $before;
	my $streams = streams($c);
	crash_server();
	$bench->{h}->finish;
	isnt($bench->{h}->result(0), 0, 'the crash cut the workload short');
	wait_until("$c->{name} to reconnect", sub { streams($c) > $streams });
	return;
}

sub stop_consumer
{
	my ($c) = @_;
	$c->{h}->signal('TERM');
	$c->{h}->finish;
	return $c->{h}->result(0);
}

###########################################################################
# A missing slot, without --create-slot.
###########################################################################
my ($out, $err) = ('', '');
IPC::Run::run(
	[
		$python, $consumer, '--dsn', $node->connstr($db), '--slot', 'nonesuch',
		'--state', "$basedir/other.sqlite", '--output', "$basedir/other.jsonl"
	],
	'>', \$out, '2>', \$err);
is($? >> 8, 1, 'a missing slot: exit status 1');
like($err, qr/slot "nonesuch" does not exist/, '... with a message that says so');

###########################################################################
# The stream, across crashes of the server and of the consumer.
###########################################################################
# Made before any payment and never read: the whole stream, for later.
query("SELECT 'created' FROM pg_create_logical_replication_slot('replay', 'p2pay')");

# A bad option of the plugin: the server's error, and no retrying.
IPC::Run::run(
	[
		$python, $consumer, '--dsn', $node->connstr($db), '--slot', 'replay',
		'-o', 'min-decision=maybe', '--state', "$basedir/other.sqlite", '--output', "$basedir/other.jsonl"
	],
	'>', \$out, '2>', \$err);
is($? >> 8, 1, 'a bad plugin option: exit status 1');
like($err, qr/min-decision/, '... with the server\'s message');

my $c1 = start_consumer('run1', '--slot', 'flagged', '--create-slot');
wait_until('the consumer to stream', sub { streams($c1) >= 1 });
is(slot_field('flagged', 'plugin'), 'p2pay', '--create-slot made a p2pay slot');

crash_during_workload($c1, 200);
pass('crash 1: the consumer reconnected');

my $c2;
crash_during_workload(
	$c1, 200,
	sub {
		# The consumer killed mid-stream and started again, while payments go on.
		$c1->{h}->signal('KILL');
		$c1->{h}->finish;
		is($c1->{h}->full_result(0) & 127, 9, 'the consumer was killed with SIGKILL');
		$c2 = start_consumer('run2', '--slot', 'flagged');
		wait_until('the second consumer to stream', sub { streams($c2) >= 1 });
		my $target = payments() + 200;
		wait_until('200 more payments', sub { payments() >= $target });
		return $c2;
	});
pass('crash 2: the restarted consumer reconnected');

crash_during_workload($c2, 200);
pass('crash 3: the consumer reconnected');

# A last batch, and the consumer confirms the end of the WAL.
my $bench = start_pgbench('-t', '100');
$bench->{h}->finish;
is($bench->{h}->result(0), 0, 'after the crashes, the workload runs to the end')
  or diag("pgbench stderr:\n$bench->{err}");
my $end = query('SELECT pg_current_wal_lsn()');
wait_until('the consumer to confirm the end of the WAL',
	sub { query("SELECT confirmed_flush_lsn >= '$end' FROM pg_replication_slots WHERE slot_name = 'flagged'") eq 't' });
is(stop_consumer($c2), 0, 'SIGTERM: the consumer exits 0');
like(log_of($c2), qr/consumer: stopped: /, '... and says so');
like(log_of($c1) . log_of($c2), qr/connection lost: .*reconnecting in/, 'the logs show the lost connections');

###########################################################################
# What was written, against what the table holds.
###########################################################################
my $json = JSON::PP->new;
my @lines = split /\n/, slurp_file($output);
my @events = grep { ref $_ eq 'HASH' } map { eval { $json->decode($_) } } @lines;
is(scalar(@events), scalar(@lines), 'every line written is a JSON object');
is_deeply([ sort keys %{ { map { $_->{event} => 1 } @events } } ], ['flagged'], 'every event is a flagged payment');

my %decision = map { split /\|/ } split /\n/, query('SELECT transaction_id, decision FROM p2pay.payments');
my @flagged = sort grep { $decision{$_} ne 'approve' } keys %decision;
my %count;
$count{ $_->{transaction_id} }++ for @events;
cmp_ok(scalar(@flagged), '>=', 400, scalar(@flagged) . ' flagged payments among ' . scalar(keys %decision));

my @missing = grep { !$count{$_} } @flagged;
is(scalar(@missing), 0, 'every flagged payment in the table was written')
  or diag('never written: ' . join(', ', @missing[ 0 .. ($#missing < 9 ? $#missing : 9) ]));
my @dups = grep { $count{$_} > 1 } keys %count;
is(scalar(@dups), 0, '... and none more than once')
  or diag('written more than once: ' . join(', ', map { "$_ ($count{$_})" } @dups[ 0 .. ($#dups < 9 ? $#dups : 9) ]));
is(scalar(grep { ($decision{$_} // 'approve') eq 'approve' } keys %count),
	0, 'no approved, rolled-back or unknown payment was written');

# The state file's totals: every event received, the duplicates among them.
my ($received, $duplicates) = log_of($c2) =~ /state file: (\d+) received, (\d+) duplicates/;
is($received - $duplicates, scalar(@lines), "the state file counts $received events received, "
	  . scalar(@lines) . " new and $duplicates duplicates");
note("resent by the server and skipped: $duplicates of $received events received");

###########################################################################
# The whole stream a second time: nothing is written again.
###########################################################################
# With a cut line at the end, as a consumer killed while writing leaves
# one: its key never committed, so the next start cuts it off.
my $before = slurp_file($output);
append_to_file($output, '{"event":"flagged","transaction_id":"000');
my $c3 = start_consumer('replay', '--slot', 'replay');
wait_until('the replay to reach the end of the WAL',
	sub { query("SELECT confirmed_flush_lsn >= '$end' FROM pg_replication_slots WHERE slot_name = 'replay'") eq 't' });
is(stop_consumer($c3), 0, 'replay: the consumer exits 0');
my $after = slurp_file($output);
is(scalar(split /\n/, $after), scalar(@lines), 'replay: no line was written');
ok($after eq $before, '... and the output is as it was before the cut line');
my $n = scalar(@flagged);
like(log_of($c3), qr/stopped: $n events received, $n duplicates skipped/,
	"replay: all $n events were received again and skipped as duplicates");

###########################################################################
# SIGTERM while the server is down: the consumer stops waiting and exits 0.
###########################################################################
my $c4 = start_consumer('down', '--slot', 'replay');
wait_until('the consumer to stream', sub { streams($c4) >= 1 });
$node->stop('immediate');
wait_until('the consumer to see the server gone', sub { log_of($c4) =~ /connection lost/ });
is(stop_consumer($c4), 0, 'SIGTERM while the server is down: the consumer exits 0');
like(log_of($c4), qr/stopped: 0 events received/, '... having written nothing');
$node->start;

###########################################################################
# A slot that is gone is not made again.
###########################################################################
query("SELECT pg_drop_replication_slot('flagged')");
IPC::Run::run(
	[
		$python, $consumer, '--dsn', $node->connstr($db), '--slot', 'flagged', '--create-slot',
		'--state', $state, '--output', $output
	],
	'>', \$out, '2>', \$err);
is($? >> 8, 1, 'a dropped slot, with --create-slot and a state file that has events: exit status 1');
like($err, qr/slot "flagged" is gone; events up to \S+ were processed/, '... with a message that says so');
is(query("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'flagged'"),
	'0', '... and no new slot');

$node->stop;
done_testing();
