# t/005_stream_libpq.pl: the p2pay stream over the streaming replication
# protocol, read by tools/p2pay-stream (a libpq client; the Makefile builds
# it, this test only runs it).
#
# What a consumer relies on:
# - it receives exactly the events the SQL interface gives for the same
#   slot: flagged inserts, decision changes and deletes, never an approved
#   payment, one line each, in commit order;
# - when it stops at an end position the slot's confirmed_flush_lsn has
#   moved past everything it wrote, so the next run receives only what
#   happened since, and nothing is lost in between: a run cut short (-n, or
#   an end position inside the stream) has its unfinished transaction resent
#   whole by the next one, and a transaction still open when a run confirms
#   past its changes is delivered once it commits;
# - SIGTERM stops it cleanly, confirming what it wrote;
# - a bad plugin option or a missing slot fails with the server's error.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/lib";

use IPC::Run;
use P2payNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $client = "$FindBin::RealBin/../tools/p2pay-stream";
if (!-x $client)
{
	fail("tools/p2pay-stream is built (run make first)");
	done_testing();
	exit;
}

my $db   = 'p2pay_stream';
my $slot = 'p2pay_libpq';
my $node = P2payNode::new_node('stream_libpq', $db);

sub query { return $node->safe_psql($db, $_[0]); }

# The positions off, so that every line of the stream is known exactly.
my @QUIET = ('-o', 'include-xids=0', '-o', 'include-lsn=0', '-o', 'include-timestamp=0');

# Users a to f; a, b, d and f registered the bank transfer, c and e have no
# method, so their payments fire unregistered_method (set to 0.3: review).
my %uid = map { $_ => "00000000-0000-4000-8000-00000000000$_" } qw(a b c d e f);
my $BANK = '00000000-0000-4000-8000-000000000001';
query(
	qq{
UPDATE p2pay.rules SET weight = 0.3 WHERE name = 'unregistered_method';
INSERT INTO p2pay.users (id, created_at)
  SELECT ('00000000-0000-4000-8000-00000000000' || u)::uuid, '2020-01-01'
    FROM unnest('{a,b,c,d,e,f}'::text[]) u;
INSERT INTO p2pay.user_payment_methods (user_id, payment_method_id)
  SELECT ('00000000-0000-4000-8000-00000000000' || u)::uuid, '$BANK'
    FROM unnest('{a,b,d,f}'::text[]) u;
-- pay(n, payer, payee, amount): payment number n, at a fixed time.
CREATE FUNCTION public.pay(n int, payer text, payee text, amount numeric)
RETURNS p2pay.decision LANGUAGE sql AS \$\$
  INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency,
                              payment_method_id, created_at)
  VALUES (('aaaaaaaa-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid,
          ('00000000-0000-4000-8000-00000000000' || payer)::uuid,
          ('00000000-0000-4000-8000-00000000000' || payee)::uuid,
          amount, 'USD', '$BANK',
          '2024-03-01 10:00:00.123456+00'::timestamptz + n * interval '1 minute')
  RETURNING decision
\$\$;
});

# The payments the test makes: number => [payer, payee, amount, score,
# decision, reasons], as the trigger scores them.
my %payment = (
	1  => [ 'a', 'b', '25.50',    0,   'approve', '' ],
	2  => [ 'a', 'b', '10500.25', 0.5, 'review',  '"amount_limit"' ],
	3  => [ 'c', 'd', '5',        0.3, 'review',  '"unregistered_method"' ],
	4  => [ 'e', 'f', '6',        0.3, 'review',  '"unregistered_method"' ],
	5  => [ 'a', 'b', '12',       0,   'approve', '' ],
	6  => [ 'c', 'b', '8',        0.3, 'review',  '"unregistered_method"' ],
	8  => [ 'c', 'b', '11',       0.3, 'review',  '"unregistered_method"' ],
	9  => [ 'a', 'b', '20',       0,   'approve', '' ],
	11 => [ 'e', 'd', '13',       0.3, 'review',  '"unregistered_method"' ],
	12 => [ 'c', 'f', '14',       0.3, 'review',  '"unregistered_method"' ],
	13 => [ 'e', 'f', '16',       0.3, 'review',  '"unregistered_method"' ],
	14 => [ 'a', 'b', '17',       0,   'approve', '' ],
	15 => [ 'e', 'b', '15',       0.3, 'review',  '"unregistered_method"' ]);

sub pay
{
	my ($n) = @_;
	my ($payer, $payee, $amount, undef, $decision) = @{ $payment{$n} };
	is(query("SELECT public.pay($n, '$payer', '$payee', $amount)"),
		$decision, "payment $n is scored $decision");
}

# The line the stream carries for payment n: event, and for a decision
# change the old decision and the new one.
sub event
{
	my ($event, $n, $old, $new) = @_;
	my ($payer, $payee, $amount, $score, $decision, $reasons) = @{ $payment{$n} };
	my $minute = 10 * 60 + $n;
	my $old_field = $event eq 'decision_changed' ? qq{"old_decision":"$old",} : '';
	return sprintf(
		'{"event":"%s","transaction_id":"aaaaaaaa-0000-4000-8000-%012d",'
		  . '"payer_id":"%s","payee_id":"%s","amount":"%s","currency":"USD",'
		  . '"payment_method_id":"%s","created_at":"2024-03-01T%02d:%02d:00.123456Z",'
		  . '"risk_score":%s,%s"decision":"%s","reasons":[%s]}',
		$event, $n, $uid{$payer}, $uid{$payee}, $amount, $BANK,
		int($minute / 60), $minute % 60, $score, $old_field,
		$new // $decision, $reasons);
}

# Run the client to its end: returns its exit status, stdout and stderr.
sub stream
{
	my @args = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ $client, '-d', $node->connstr($db), @args ],
		'>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	my $rc = $? >> 8;
	# A walsender that failed releases the slot only after it has sent the
	# error: wait, so that the next run finds the slot free.
	$node->poll_query_until($db,
		"SELECT NOT active FROM pg_replication_slots WHERE slot_name = '$slot'")
	  or die "slot $slot is still active";
	return ($rc, $out, $err);
}

# Read the slot up to the current end of WAL, quietly; checks a clean exit.
sub stream_to_end
{
	my ($name, @args) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $end = query('SELECT pg_current_wal_lsn()');
	my ($rc, $out, $err) = stream('-S', $slot, '-E', $end, @QUIET, @args);
	is($rc,  0,  "$name: the client exits 0");
	is($err, '', "$name: the client writes nothing to stderr");
	return ($out, $end);
}

sub confirmed_flush
{
	return query(
		"SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '$slot'");
}

sub lsn_ge
{
	my ($left, $right) = @_;
	return query("SELECT '$left'::pg_lsn >= '$right'::pg_lsn") eq 't';
}

query("SELECT pg_create_logical_replication_slot('$slot', 'p2pay')");

###########################################################################
# 1. A workload: every kind of event, and transactions that interleave.
###########################################################################
pay(1);    # approved: no event
pay(2);    # flagged
# Payment 3's transaction begins first and commits last: the stream follows
# commits, so payment 4 comes before 3 and 5.
my $x = $node->background_psql($db);
$x->query_safe('BEGIN');
$x->query_safe(q{SELECT public.pay(3, 'c', 'd', 5)});
pay(4);
$x->query_safe(q{SELECT public.pay(5, 'a', 'b', 12)});
$x->query_safe('COMMIT');
$x->quit;
# A rolled-back flagged payment, and updates that keep the decision: nothing.
query(q{BEGIN; SELECT public.pay(6, 'c', 'b', 8); ROLLBACK;});
query(q{UPDATE p2pay.payments SET reasons = reasons || '{noted}'
         WHERE transaction_id = 'aaaaaaaa-0000-4000-8000-000000000001'});
# An analyst's decision, and a delete.
query(q{UPDATE p2pay.payments SET decision = 'decline'
         WHERE transaction_id = 'aaaaaaaa-0000-4000-8000-000000000002'});
query(q{DELETE FROM p2pay.payments
         WHERE transaction_id = 'aaaaaaaa-0000-4000-8000-000000000003'});

my @want = (
	event('flagged', 2),
	event('flagged', 4),
	event('flagged', 3),
	event('decision_changed', 2, 'review', 'decline'),
	event('deleted', 3));

# The SQL interface's view of the same slot, without consuming it; with the
# positions on, for the LSN of the last change.
my $peek = query(
	"SELECT string_agg(data, E'\\n') FROM pg_logical_slot_peek_changes('$slot', NULL, NULL,
	   'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0')");
my ($last_lsn) = query(
	"SELECT data FROM pg_logical_slot_peek_changes('$slot', NULL, NULL)") =~
  /"lsn":"([0-9A-F]+\/[0-9A-F]+)"[^\n]*\z/;
ok(defined $last_lsn, 'the SQL interface gives the last change\'s LSN');

my ($out, $end) = stream_to_end('first run');
is($out, join('', map { "$_\n" } @want),
	'first run: the flagged payments, the decision change and the delete, in commit order');
unlike($out, qr/"approved"|"decision":"approve"/, 'first run: no approved payment');
is($out, "$peek\n", 'first run: the same lines as pg_logical_slot_peek_changes');

my $confirmed = confirmed_flush();
ok(lsn_ge($confirmed, $last_lsn),
	"first run: confirmed_flush_lsn $confirmed is at or past the last change, $last_lsn");
ok(lsn_ge($confirmed, $end),
	"first run: confirmed_flush_lsn $confirmed is at or past the end position, $end");

###########################################################################
# 2. The next run receives only what happened since; into a file.
###########################################################################
pay(8);    # flagged
pay(9);    # approved
query(q{UPDATE p2pay.payments SET decision = 'approve'
         WHERE transaction_id = 'aaaaaaaa-0000-4000-8000-000000000004'});

my $file = $node->basedir . '/events.jsonl';
($out) = stream_to_end('second run', '-f', $file);
is($out, '', 'second run: nothing on stdout with -f');
is(slurp_file($file),
	event('flagged', 8) . "\n" . event('decision_changed', 4, 'review', 'approve') . "\n",
	'second run: only the two events made after the first run, in the file');

($out) = stream_to_end('third run');
is($out, '', 'third run: nothing new, nothing received');

###########################################################################
# 3. Runs cut short: what was not confirmed is received again, whole.
###########################################################################
pay(11);
my $between = query('SELECT pg_current_wal_lsn()');
pay(12);

($out) = stream_to_end('-n 1', '-n', '1');
is($out, event('flagged', 11) . "\n", '-n 1: the first event only');

my ($rc, $err);
($rc, $out, $err) = stream('-S', $slot, '-E', $between, @QUIET);
is($rc, 0, 'end position between two transactions: exits 0');
is($out, event('flagged', 11) . "\n",
	'end position between two transactions: payment 11 again (its commit was not confirmed), not 12'
);

($out) = stream_to_end('after the short runs');
is($out, event('flagged', 11) . "\n" . event('flagged', 12) . "\n",
	'after the short runs: 11 once more, then 12: nothing skipped');
($out) = stream_to_end('once caught up');
is($out, '', 'once caught up: nothing');

# A transaction still open when a run ends: the run confirms its end
# position, past the open transaction's payment, and the payment still comes
# once the transaction commits, since what counts is where it commits.
my $open = $node->background_psql($db);
$open->query_safe('BEGIN');
$open->query_safe(q{SELECT public.pay(13, 'e', 'f', 16)});
my $after13 = $open->query_safe('SELECT pg_current_wal_insert_lsn()');
pay(14);    # commits, so the WAL holding payment 13 is flushed
($out) = stream_to_end('open transaction');
is($out, '', 'open transaction: nothing yet');
ok(lsn_ge(confirmed_flush(), $after13),
	'open transaction: the slot is confirmed past its payment');
$open->query_safe('COMMIT');
$open->quit;
($out) = stream_to_end('after the commit');
is($out, event('flagged', 13) . "\n", 'after the commit: the payment arrives');

###########################################################################
# 4. Errors come back with the server's words, and a non-zero exit.
###########################################################################
($rc, $out, $err) = stream('-S', $slot, '-o', 'min-decision=high');
isnt($rc, 0, 'bad option value: non-zero exit');
like(
	$err,
	qr/^ERROR:  option "min-decision" of output plugin p2pay must be "review" or "decline"\nDETAIL:  The value given was "high"\./,
	'bad option value: the plugin\'s error, verbatim');
is($out, '', 'bad option value: nothing on stdout');

# Quotes in names and values reach the plugin as typed.
($rc, $out, $err) = stream('-S', $slot, '-o', q{min-decision=it's "x"});
like($err, qr/DETAIL:  The value given was "it's "x""\./,
	'an option value with quotes reaches the plugin intact');
($rc, $out, $err) = stream('-S', $slot, '-o', q{no"such=1});
like($err, qr/ERROR:  output plugin p2pay has no option "no"such"/,
	'an option name with a double quote reaches the plugin intact');
($rc, $out, $err) = stream('-S', $slot, '-o', 'min-decision');
like($err, qr/ERROR:  option "min-decision" of output plugin p2pay requires a value/,
	'an option without a value is passed as such');

($rc, $out, $err) = stream('-S', 'no_such_slot');
isnt($rc, 0, 'missing slot: non-zero exit');
like($err, qr/^ERROR:  replication slot "no_such_slot" does not exist/,
	'missing slot: the server\'s error, verbatim');

($rc, $out, $err) = stream();
is($rc, 2, 'no slot named: usage error, exit 2');
like($err, qr/no slot given: name the logical replication slot with -S SLOT/,
	'no slot named: says so');

($rc, $out, $err) = stream('-S', $slot, '-d', $node->connstr($db) . ' user=no_such_role');
isnt($rc, 0, 'bad connection: non-zero exit');
like($err, qr/role "no_such_role" does not exist/, 'bad connection: libpq\'s error');

# A failed start consumed nothing.
($out) = stream_to_end('after the errors');
is($out, '', 'after the errors: nothing new, nothing lost');

###########################################################################
# 5. SIGTERM: a clean stop that confirms what was written.
###########################################################################
# -s 0: no periodic status updates, so only the stop confirms anything.
my ($bg_out, $bg_err) = ('', '');
my $bg = IPC::Run::start(
	[ $client, '-d', $node->connstr($db), '-S', $slot, '-s', '0', '-o', 'include-xids=0' ],
	'>', \$bg_out, '2>', \$bg_err,
	IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
$node->poll_query_until($db,
	"SELECT active FROM pg_replication_slots WHERE slot_name = '$slot'")
  or die 'the client never started streaming';
pay(15);
$bg->pump until $bg_out =~ /\n/;
my ($lsn15) = $bg_out =~ /"lsn":"([0-9A-F]+\/[0-9A-F]+)"/;
like($bg_out, qr/^\{"event":"flagged","transaction_id":"aaaaaaaa-0000-4000-8000-000000000015",/,
	'while running: payment 15 arrives');
ok(!lsn_ge(confirmed_flush(), $lsn15),
	'while running with -s 0: its position is not confirmed yet');
$bg->signal('TERM');
$bg->finish;
is($bg->result(0), 0,  'SIGTERM: the client exits 0');
is($bg_err,        '', 'SIGTERM: nothing on stderr');
ok(lsn_ge(confirmed_flush(), $lsn15),
	'SIGTERM: the slot is confirmed at least to payment 15\'s change');

$node->stop;
done_testing();
