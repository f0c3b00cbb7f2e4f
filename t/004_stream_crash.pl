# t/004_stream_crash.pl: no flagged payment is lost when the server crashes
# under a streaming consumer.
#
# Two pgbench clients insert payments (approved, review, decline; some
# transactions rolled back) in many small transactions while pg_recvlogical
# streams the slot into a file.  A session holds a transaction with flagged
# payments open, large enough to spill to disk.  In the middle of this the
# server is stopped in immediate mode (a crash: no shutdown checkpoint, the
# open transaction never commits), restarted, and a new pg_recvlogical
# resumes on the same slot while more payments are inserted.  Every flagged
# payment the table holds after the restart was delivered at least once in
# the union of the two output files; duplicates are allowed (and counted);
# none of the open transaction's payments, and no approved payment, was
# ever delivered.  A first batch, confirmed and saved with the slot before
# the crash, is not sent again: the slot resumes between that batch and the
# last position the consumer reported flushed.
#
# Why nothing is lost: the plugin writes a transaction's events when its
# commit record is decoded, each tagged with the LSN of its change, which
# lies before the commit.  pg_recvlogical reports as flushed only what it has
# fsynced to its file: the LSN of the last event written, or the WAL end of
# a keepalive that the walsender sends only once it has sent everything
# before it.  The walsender moves the slot's confirmed_flush_lsn to that
# report and no further.  The slot's copy on disk is written when its
# restart_lsn or catalog xmin moves (and at checkpoints), with the confirmed
# position of that moment, so after a crash it is at or behind the one in
# memory.  So confirmed_flush_lsn never passes the commit of a transaction
# whose events are not all in the file.
# After the restart, START_REPLICATION at 0/0 resumes at confirmed_flush_lsn:
# every transaction whose commit lies at or after it is decoded and sent in
# full again, from WAL that the slot's restart_lsn (never past
# confirmed_flush_lsn) kept.  What the consumer received after the position
# the slot had saved comes again: at least once, not exactly once.  The open transaction has no
# commit record; recovery writes no abort record for it either, and decoding
# drops its changes once the running transactions logged after the restart
# show it is gone, so it is never streamed.
use strict;
use warnings;

use lib 't/lib';

use IPC::Run;
use JSON::PP;
use P2payNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $db = 'p2pay_crash';

my $BANK = '00000000-0000-4000-8000-000000000001';    # registered by everyone

# A small logical_decoding_work_mem makes the open transaction spill to
# disk before the crash.
my $node = P2payNode::new_node('crash', $db, "logical_decoding_work_mem = 64kB\n");

P2payNode::seed_row_decided($node, $db, 40);
$node->safe_psql(
	$db, qq{
CREATE TABLE public.audit (id bigserial PRIMARY KEY, note text);
});
$node->safe_psql($db,
	"SELECT 'created' FROM pg_create_logical_replication_slot('crash', 'p2pay')");

my $basedir = $node->basedir;

# The workload (see P2payNode::write_pair_workload), with a row of another
# table in every transaction.
my $script = "$basedir/workload.sql";
P2payNode::write_pair_workload($script,
	"INSERT INTO public.audit (note) VALUES ('client ' || :client_id);");

# pgbench with the workload script, in the background.
sub start_pgbench
{
	my @args = @_;
	my %run = (out => '', err => '');
	$run{h} = IPC::Run::start(
		[
			$node->installed_command('pgbench'), '-n', '-c', '2', '-j', '2',
			'-f', $script, @args, $node->connstr($db)
		],
		'>', \$run{out}, '2>', \$run{err},
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return \%run;
}

# pg_recvlogical on the slot, writing FILE, fsyncing and reporting every
# second, exiting when the connection is lost (--no-loop).
sub start_consumer
{
	my ($file, @args) = @_;
	my %c = (out => '', err => '', file => $file);
	$c{h} = IPC::Run::start(
		[
			$node->installed_command('pg_recvlogical'), '-d', $node->connstr($db),
			'-S', 'crash', '--start', '-f', $file, '-F', '1', '-s', '1', '-n', @args
		],
		'>', \$c{out}, '2>', \$c{err},
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return \%c;
}

sub query { return $node->safe_psql($db, $_[0]); }

sub slot_field
{
	return query("SELECT $_[0] FROM pg_replication_slots WHERE slot_name = 'crash'");
}

sub lines_of
{
	my ($file) = @_;
	return () unless -e $file;
	return split /\n/, slurp_file($file);
}

# Wait until the table holds N payments.
sub wait_for_payments
{
	my ($count) = @_;
	return $node->poll_query_until($db,
		"SELECT count(*) >= $count FROM p2pay.payments");
}

###########################################################################
# Before the crash.
###########################################################################
# -v: the consumer logs every position it reports as flushed.
my $before = start_consumer("$basedir/before.jsonl", '-v');

# A first batch, confirmed by the consumer and saved with the slot: with
# nothing running, a checkpoint's record of the running transactions gives
# the slot a restart point past the batch, and the slot is written to disk
# when the consumer confirms past it.
my $bench = start_pgbench('-t', '150');
$bench->{h}->finish;
is($bench->{h}->result(0), 0, 'a first batch of payments is committed')
  or diag("pgbench stdout:\n$bench->{out}\nstderr:\n$bench->{err}");
my $batch_end = query('SELECT pg_current_wal_lsn()');
query('CHECKPOINT');
ok( $node->poll_query_until($db,
		"SELECT restart_lsn >= '$batch_end' FROM pg_replication_slots WHERE slot_name = 'crash'"),
	'the consumer confirms the first batch and the slot moves its restart point past it');
my $batch_payments = query('SELECT count(*) FROM p2pay.payments');
my @batch_flagged = split /\n/,
  query("SELECT transaction_id FROM p2pay.payments WHERE decision <> 'approve'");

# Then the workload in the background, rate-limited so that the consumer
# confirms part of it (in memory only) before the crash.
$bench = start_pgbench('-R', '500', '-T', '120');

# The open transaction: 400 flagged payments between users of no client,
# more than logical_decoding_work_mem holds.
my $open = $node->background_psql($db);
my @open_tids = map { sprintf('dddddddd-0000-4000-8000-%012d', $_) } 1 .. 400;
$open->query_safe('BEGIN');
$open->query_safe(
	"INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency, payment_method_id)
	 SELECT t::uuid, uid(31), uid(32), 25000, 'USD', '$BANK'
	   FROM unnest('{" . join(',', @open_tids) . "}'::text[]) t");
is( $open->query_safe(
		"SELECT count(*) FROM p2pay.payments WHERE transaction_id::text LIKE 'dddddddd-%' AND decision <> 'approve'"),
	'400', 'open transaction: 400 flagged payments, not committed');

# The consumer confirms part of the workload (the slot holds that in memory
# only), then the server crashes while payments are still coming.
ok(wait_for_payments($batch_payments + 600), 'the workload goes on');
my $mid = query('SELECT pg_current_wal_lsn()');
ok( $node->poll_query_until($db,
		"SELECT confirmed_flush_lsn >= '$mid' FROM pg_replication_slots WHERE slot_name = 'crash'"),
	'the consumer confirms part of the workload');
ok(wait_for_payments(query('SELECT count(*) FROM p2pay.payments') + 300),
	'the workload goes on');
note('decoding spilled to disk before the crash: '
	  . query("SELECT spill_txns || ' transactions, ' || spill_bytes || ' bytes' FROM pg_stat_replication_slots WHERE slot_name = 'crash'"));
is($bench->{h}->pumpable ? 1 : 0, 1, 'the workload is still running at the crash');

$node->stop('immediate');

$bench->{h}->finish;
isnt($bench->{h}->result(0), 0, 'the crash cut the workload short');
note("pgbench before the crash:\n$bench->{out}");
$before->{h}->finish;
isnt($before->{h}->result(0), 0, 'the crash cut the consumer off');
like($before->{err}, qr/disconnected/, '... which says so');
# The last position the consumer reported as flushed before the crash.
my ($reported) = ($before->{err} =~ m{.*flush to ([0-9A-F]+/[0-9A-F]+)}s);
ok(defined $reported, 'the consumer reported flushed positions before the crash')
  or die "pg_recvlogical -v printed no report:\n$before->{err}";
note("pg_recvlogical before the crash, last report: flush to $reported");
$open->quit;

###########################################################################
# After the restart.
###########################################################################
$node->start;

is(query("SELECT count(*) FROM p2pay.payments WHERE transaction_id::text LIKE 'dddddddd-%'"),
	'0', 'restart: the open transaction\'s payments are gone');
my $resume_at = slot_field('confirmed_flush_lsn');
is( query("SELECT '$resume_at'::pg_lsn <= '$reported'::pg_lsn"),
	't',
	"restart: the slot resumes at $resume_at, not past the last flush the consumer reported ($reported)"
);
is(query("SELECT '$resume_at'::pg_lsn >= '$batch_end'::pg_lsn"),
	't', 'restart: ... and after the first batch, which the slot saved as confirmed');
my $committed_before_restart = query('SELECT count(*) FROM p2pay.payments');

my $after = start_consumer("$basedir/after.jsonl");
$bench = start_pgbench('-t', '150');
$bench->{h}->finish;
is($bench->{h}->result(0), 0, 'after the restart, the workload runs to the end')
  or diag("pgbench stdout:\n$bench->{out}\nstderr:\n$bench->{err}");
my $end = query('SELECT pg_current_wal_lsn()');

ok( $node->poll_query_until($db,
		"SELECT confirmed_flush_lsn >= '$end' FROM pg_replication_slots WHERE slot_name = 'crash'"),
	'the resumed consumer confirms the end of the workload');
$after->{h}->signal('INT');
$after->{h}->finish;
is($after->{h}->result(0), 0, 'the resumed consumer stops cleanly')
  or diag("pg_recvlogical stderr:\n$after->{err}");

# A consumer stopping at --endpos finds nothing left before it: what the
# last one confirmed is not sent again.
my $last = start_consumer("$basedir/last.jsonl", '-E', $end);
$last->{h}->finish;
is($last->{h}->result(0), 0, 'a consumer with --endpos stops by itself')
  or diag("pg_recvlogical stderr:\n$last->{err}");
is(scalar(lines_of($last->{file})), 0, '... with nothing to send again');

###########################################################################
# What was delivered, against what the table holds.
###########################################################################
my $json = JSON::PP->new;
my (@events, @bad);
for my $line (lines_of($before->{file}), lines_of($after->{file}))
{
	my $e = eval { $json->decode($line) };
	if (ref $e eq 'HASH') { push @events, $e; }
	else { push @bad, $line; }
}
is_deeply(\@bad, [], 'every line delivered is a JSON object');
is_deeply([ sort keys %{ { map { $_->{event} => 1 } @events } } ],
	['flagged'], 'every event is a flagged payment');

my %decision;
for my $line (split /\n/, query('SELECT transaction_id, decision FROM p2pay.payments'))
{
	my ($tid, $d) = split /\|/, $line;
	$decision{$tid} = $d;
}
my @flagged = grep { $decision{$_} ne 'approve' } keys %decision;
my %count = map { $_ => 0 } keys %decision;
$count{ $_->{transaction_id} }++ for @events;
my $before_restart = scalar(lines_of($before->{file}));
note(   scalar(keys %decision)
	  . " payments committed ($committed_before_restart before the restart), "
	  . scalar(@flagged)
	  . " flagged; $before_restart events before the crash, "
	  . scalar(lines_of($after->{file}))
	  . ' after');
cmp_ok(scalar(@flagged), '>=', 500, 'hundreds of flagged payments were committed');

my @missing = grep { !$count{$_} } @flagged;
is(scalar(@missing), 0, 'every committed flagged payment was delivered at least once')
  or diag('never delivered: ' . join(', ', @missing[ 0 .. ($#missing < 9 ? $#missing : 9) ]));

my @dups = grep { $count{$_} > 1 } @flagged;
ok(@batch_flagged > 0 && !grep({ $count{$_} != 1 } @batch_flagged),
	'each of the first batch\'s ' . scalar(@batch_flagged) . ' flagged payments was delivered exactly once: the stream resumed after them');
note(scalar(@dups) . ' flagged payments were delivered more than once (allowed: at least once)');
note("e.g. $_ delivered $count{$_} times") for @dups[ 0 .. ($#dups < 4 ? $#dups : 4) ];

my %open = map { $_ => 1 } @open_tids;
is(scalar(grep { $open{ $_->{transaction_id} } } @events),
	0, 'none of the open transaction\'s payments was delivered');
is(scalar(grep { !exists $decision{ $_->{transaction_id} } } @events),
	0, 'no payment that is not in the table (rolled back or never committed) was delivered');
is(scalar(grep { ($decision{ $_->{transaction_id} } // '') eq 'approve' } @events),
	0, 'no approved payment was delivered');
is(scalar(grep { ($decision{ $_->{transaction_id} } // '') ne $_->{decision} } @events),
	0, 'every event carries the decision the table holds');

$node->stop;
done_testing();
