# t/009_deadlock.pl: a transaction of one payment is never aborted by a
# deadlock on account locks, whatever runs beside it; a transaction that
# already holds account locks may be asked to retry, with 40001 only.
#
# What a user relies on:
# - the cycle of a transaction of two payments with a transaction of one
#   (M: 5->7; S: 8->5, waiting for 5; M: 7->8, needing 8, held by S) ends
#   with S's payment stored and M given SQLSTATE 40001 and a hint to retry;
# - under a mix of transactions of one payment (small ones, and large ones
#   for which the cycle rule locks more accounts), of two payments, two-row
#   INSERTs and multi-row DELETEs over 20 accounts from 10 clients, none of
#   one payment fails with 40P01 (and none of one small payment fails at
#   all), every other one that fails fails with 40001, and the per-account
#   state equals the aggregates over the payments that committed.
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

my $db       = 'p2pay_deadlock';
my $BANK     = '00000000-0000-4000-8000-000000000001';
my $ACCOUNTS = 20;
my $CLIENTS  = 10;
my $SECONDS  = 6;

# A short deadlock_timeout, so that a deadlock, if there were one, is found
# (and its victim counted) many times within the run.
my $node = P2payNode::new_node('deadlock', $db, "deadlock_timeout = 20ms");
P2payNode::seed_users($node, $db, $ACCOUNTS);
sub query { return $node->safe_psql($db, $_[0]); }

sub payment
{
	my ($payer, $payee) = @_;
	return "INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
	        VALUES (uid($payer), uid($payee), 10, 'USD', '$BANK')";
}

my $log_start = -s $node->logfile;

###########################################################################
# a. The cycle: the transaction of one payment wins, the other gets 40001.
###########################################################################
# Lock keys in ascending order: 8, 5, 7 (uuid_hash_extended(id, 28722) as
# unsigned).
my $m = $node->background_psql($db, on_error_stop => 0);
my $s = $node->background_psql($db, on_error_stop => 0);
$m->query_safe('\set VERBOSITY verbose');
$m->query_safe('BEGIN');
$m->query_safe(payment(5, 7));

my $s_pid = $s->query_safe('SELECT pg_backend_pid()');
$s->query_until(qr/sent/, "\\echo sent\n" . payment(8, 5) . " RETURNING decision;\n");
my $waiting = 0;
for (my $i = 0; $i < 100 * $PostgreSQL::Test::Utils::timeout_default; $i++)
{
	$waiting = query(
		"SELECT count(*) FROM pg_stat_activity
		  WHERE pid = $s_pid AND wait_event_type = 'Lock' AND wait_event = 'advisory'");
	last if $waiting;
	usleep(10_000);
}
is($waiting, '1', 'cycle: S (8->5) waits for the lock of account 5, held by M');

my ($out, $failed) = $m->query(payment(7, 8));
ok($failed, 'cycle: M\'s second payment (7->8) fails');
like(
	$m->{stderr},
	qr/ERROR:  40001: could not lock an account of this payment while holding the account locks of earlier payments/,
	'cycle: M gets SQLSTATE 40001');
like($m->{stderr}, qr/HINT:  Retry the transaction\./, 'cycle: M is told to retry');
$m->{stderr} = '';
$m->query_safe('ROLLBACK');

($out, $failed) = $s->query('SELECT 1');
is($s->{stderr}, '', 'cycle: S gets no error');
is($out, "approve\n1", 'cycle: S\'s payment is stored');
is( query(
		"SELECT count(*), count(*) FILTER (WHERE payer_id = uid(8) AND payee_id = uid(5))
		   FROM p2pay.payments"),
	'1|1',
	'cycle: S\'s payment is the only one stored');
$m->quit;
$s->quit;

###########################################################################
# b. The mix: pgbench, one script per kind of transaction.
###########################################################################
# Payments among the 20 accounts at random, every pair possible.
my $pick = sub {
	my ($v) = @_;
	return "\\set $v random(1, $ACCOUNTS)\n\\set ${v}_to random(1, " . ($ACCOUNTS - 1) . ")\n";
};
my $to = sub { my ($v) = @_; return "1 + (:$v + :${v}_to - 1) % $ACCOUNTS"; };
my %scripts = (
	'one' => $pick->('a') . "
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
  VALUES (uid(:a), uid(" . $to->('a') . "), 10, 'USD', '$BANK');
",
	# at least the cycle rule's min_amount: it also locks the accounts the
	# payee paid
	'one_large' => $pick->('a') . "\\set amount random(1000, 5000)
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
  VALUES (uid(:a), uid(" . $to->('a') . "), :amount, 'USD', '$BANK');
",
	'two' => $pick->('a') . $pick->('b') . "\\set amount random(1, 3000)
BEGIN;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
  VALUES (uid(:a), uid(" . $to->('a') . "), :amount, 'USD', '$BANK');
SELECT pg_sleep(0.001);
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
  VALUES (uid(:b), uid(" . $to->('b') . "), :amount, 'USD', '$BANK');
COMMIT;
",
	'two_rows' => $pick->('a') . $pick->('b') . "
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
  VALUES (uid(:a), uid(" . $to->('a') . "), 10, 'USD', '$BANK'),
         (uid(:b), uid(" . $to->('b') . "), 10, 'USD', '$BANK');
",
	# up to three payments of one payer, rows locked in id order so that
	# deletes can't deadlock on the rows among themselves
	'delete' => $pick->('a') . "
DELETE FROM p2pay.payments WHERE id IN
  (SELECT id FROM p2pay.payments WHERE payer_id = uid(:a) ORDER BY id LIMIT 3 FOR UPDATE);
");
my %weight = (one => 4, one_large => 2, two => 2, two_rows => 1, delete => 1);
my @order  = qw(one one_large two two_rows delete);

my %runs = %{ P2payNode::pgbench_mix($node, $db, \%scripts, \%weight, \@order, $CLIENTS, $SECONDS) };
ok($runs{one}{ok} > 0 && $runs{one_large}{ok} > 0, 'mix: transactions of one payment were run');
is($runs{one}{deadlock} + $runs{one_large}{deadlock},
	0, 'mix: no transaction of one payment failed with 40P01');
is($runs{one}{failed}, 0, 'mix: no transaction of one small payment failed at all');
# A payment whose cycle-rule accounts keep changing under it may be asked to
# retry (docs/internals.md, "Concurrency"), with 40001 only.
is($runs{one_large}{failed}, $runs{one_large}{serialization},
	'mix: every transaction of one large payment that failed, failed with 40001');
for my $name (qw(two two_rows delete))
{
	is($runs{$name}{deadlock}, 0, "mix, $name.sql: no transaction failed with 40P01");
	is($runs{$name}{failed}, $runs{$name}{serialization},
		"mix, $name.sql: every transaction that failed, failed with 40001");
}

# The per-account state equals what rebuild_state() counts from the
# committed payments.
P2payNode::state_vs_recount($node, $db, 'mix');

my $log = slurp_file($node->logfile, $log_start);
unlike($log, qr/deadlock detected/, 'the server never detected a deadlock');

$node->stop;
done_testing();
