# t/020_lock_escalation.pl: a transaction that writes payments of many
# accounts takes one lock covering them all (p2pay.lock_escalation_accounts)
# rather than filling the shared lock table, and the other writers wait for
# it rather than fail.
#
# What a user relies on:
# - with max_connections = 50 and the default max_locks_per_transaction, an
#   INSERT ... SELECT of 8,000 payments by distinct payers succeeds (and,
#   with escalation off, fails with 53200, which is why it is there);
# - while a transaction of 7,000 accounts is open, another session's
#   insert of 1,000 accounts waits for it and then succeeds, and so does a
#   one-payment transaction; both count the large one's payments;
# - the escalated transaction holds one lock for every account, not one per
#   account, and a savepoint rolled back gives that lock back;
# - only a role that could lock payments itself (UPDATE, DELETE or
#   TRUNCATE on it) escalates: one with the application's rights alone
#   keeps account locks, so a transaction it leaves open holds up only the
#   writers of its own accounts;
# - of two such loads at once, one escalates and the other finishes too, or
#   gives way with 40001 and finishes when retried;
# - under a mix of one-payment, two-payment and escalating transactions,
#   no transaction of one payment fails, none fails with 40P01, and the
#   per-account state equals what rebuild_state() counts; nor does any
#   single payment fail when every one escalates (the setting at 0).
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

my $db   = 'p2pay_escalation';
my $BANK = '00000000-0000-4000-8000-000000000001';

my $node = P2payNode::new_node('escalation', $db,
	"max_connections = 50\nmax_locks_per_transaction = 64\ndeadlock_timeout = 100ms");
P2payNode::seed_users($node, $db, 20000);
sub query { return $node->safe_psql($db, $_[0]); }

# payments(FROM, N, OFFSET): N payments, payer FROM + i, payee FROM + i +
# OFFSET, for i in 0 .. N - 1.
sub payments
{
	my ($from, $n, $offset) = @_;
	return "INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
	        SELECT uid(n), uid(n + $offset), 10, 'USD', '$BANK'
	          FROM generate_series($from, $from + $n - 1) n";
}

sub payment
{
	my ($payer, $payee) = @_;
	return "INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
	        VALUES (uid($payer), uid($payee), 10, 'USD', '$BANK')";
}

# Wait until backend PID waits for a lock; whether it did.
sub waits_for_lock
{
	my ($pid) = @_;
	for (my $i = 0; $i < 100 * $PostgreSQL::Test::Utils::timeout_default; $i++)
	{
		return 1
		  if query("SELECT count(*) FROM pg_stat_activity
		             WHERE pid = $pid AND wait_event_type = 'Lock'") eq '1';
		usleep(10_000);
	}
	return 0;
}

# The advisory locks of p2pay backend PID holds: "accounts|covering mode".
sub held_by
{
	my ($pid) = @_;
	return query(
		"SELECT count(*) FILTER (WHERE objsubid = 28722),
		        coalesce(string_agg(mode, ',' ORDER BY mode) FILTER (WHERE objsubid = 28723 AND objid = 0), '')
		   FROM pg_locks
		  WHERE pid = $pid AND locktype = 'advisory' AND granted");
}

my $log_start = -s $node->logfile;

###########################################################################
# a. The issue's load: 8,000 payers in one statement.
###########################################################################
my ($ret, $out, $err) = $node->psql($db,
	"SET p2pay.lock_escalation_accounts = -1;\n" . payments(1, 8000, 10000));
isnt($ret, 0, 'escalation off: 8,000 payers in one statement fail');
like($err, qr/out of shared memory/, 'escalation off: with out of shared memory (53200)');

($ret, $out, $err) = $node->psql($db, payments(1, 8000, 10000));
is($ret, 0, 'escalation on (default): 8,000 payers in one statement succeed') or diag($err);
is(query('SELECT count(*) FROM p2pay.payments'), '8000', 'the 8,000 payments are stored');

###########################################################################
# b. A transaction of 7,000 accounts is open; others wait, then succeed.
###########################################################################
my $big   = $node->background_psql($db, on_error_stop => 0);
my $other = $node->background_psql($db, on_error_stop => 0);
my $one   = $node->background_psql($db, on_error_stop => 0);
my $big_pid   = $big->query_safe('SELECT pg_backend_pid()');
my $other_pid = $other->query_safe('SELECT pg_backend_pid()');
my $one_pid   = $one->query_safe('SELECT pg_backend_pid()');

$big->query_safe('BEGIN');
$big->query_safe(payments(1, 3500, 10000));
my ($accounts, $covering) = split /\|/, held_by($big_pid);
ok($accounts <= 66, "the open load holds at most 66 account locks ($accounts)");
is($covering, 'ExclusiveLock,ShareLock',
	'the open load holds the lock covering every account (and its first pass\'s share)');

$other->query_until(qr/sent/, "\\echo sent\n" . payments(15001, 1000, -15000) . ";\n");
ok(waits_for_lock($other_pid), 'an insert of 1,000 accounts waits for the open load');
$one->query_until(qr/sent/, "\\echo sent\n" . payment(1, 10001) . ";\n");
ok(waits_for_lock($one_pid), 'a one-payment transaction waits for the open load');

$big->query_safe('COMMIT');
($out) = $other->query('SELECT count(*) FROM p2pay.payments WHERE payer_id >= uid(15001)');
is($other->{stderr}, '', 'the insert of 1,000 accounts gets no error');
is($out, '1000', 'its 1,000 payments are stored');
($out) = $one->query('SELECT count(*) FROM p2pay.payments WHERE payer_id = uid(1)');
is($one->{stderr}, '', 'the one-payment transaction gets no error');
is($out, '3', 'its payment is stored');
is(held_by($big_pid), '0|', 'the load\'s locks are gone after its commit');
# The writers that waited counted the load's payments.
P2payNode::state_vs_recount($node, $db, 'after the open load');

###########################################################################
# c. A savepoint rolled back gives the covering lock back.
###########################################################################
$big->query_safe('BEGIN');
$big->query_safe(payment(2, 3));
$big->query_safe('SAVEPOINT sp');
$big->query_safe(payments(4001, 200, 1));
is((split /\|/, held_by($big_pid))[1], 'ExclusiveLock,ShareLock',
	'savepoint: escalated inside it (share lock of the first pass kept)');
$big->query_safe('ROLLBACK TO SAVEPOINT sp');
is(held_by($big_pid), '2|ShareLock', 'savepoint rolled back: back to its first payment\'s locks');
($ret, $out, $err) = $node->psql($db, payment(5000, 5001), timeout => 30);
is($ret, 0, 'another writer is not held up by the rolled-back escalation') or diag($err);
$big->query_safe(payments(4001, 200, 1));
is((split /\|/, held_by($big_pid))[1], 'ExclusiveLock,ShareLock', 'it escalates again after');
$big->query_safe('COMMIT');
$big->quit;
$other->quit;
$one->quit;

###########################################################################
# c2. Only a role that could lock payments itself escalates.
###########################################################################
query("CREATE ROLE app LOGIN; SELECT p2pay.grant_app('app')");
my $app = $node->background_psql($db, on_error_stop => 0, extra_params => [ '-U', 'app' ]);
my $app_pid = $app->query_safe('SELECT pg_backend_pid()');
$app->query_safe('BEGIN');
$app->query_safe(payments(6001, 100, 1));
is(held_by($app_pid), '101|ShareLock',
	'a role with only INSERT, past the threshold: 101 account locks, no covering lock');
($ret, $out, $err) = $node->psql($db, "SET lock_timeout = '10s';\n" . payment(7001, 7002));
is($ret, 0, 'while it is open, a writer of other accounts is not held up') or diag($err);
($ret, $out, $err) = $node->psql($db, "SET lock_timeout = '500ms';\n" . payment(6001, 7003));
like($err, qr/lock timeout/, 'a writer of one of its accounts waits for it');
$app->query_safe('ROLLBACK');
query('GRANT UPDATE ON p2pay.payments TO app');
$app->query_safe('BEGIN');
$app->query_safe(payments(6001, 100, 1));
is((split /\|/, held_by($app_pid))[1], 'ExclusiveLock,ShareLock',
	'granted UPDATE on payments, the same role escalates');
$app->query_safe('ROLLBACK');
$app->quit;
query('REVOKE UPDATE ON p2pay.payments FROM app');

###########################################################################
# d. Two loads at once: one escalates, the other finishes or gives way with
#    40001 and finishes when retried.
###########################################################################
query('DELETE FROM p2pay.payments');
my @loads;
for my $k (0, 1)
{
	my ($o, $e) = ('', '');
	my @load = ('psql', '-X', '-v', 'ON_ERROR_STOP=1', '-v', 'VERBOSITY=verbose',
		'-d', $node->connstr($db), '-c', payments(1 + 4000 * $k, 4000, 9000));
	my $h = IPC::Run::start(\@load, '>', \$o, '2>', \$e,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	push @loads, [ $h, \$e, \@load ];
}
my $first_go = 0;
for my $k (0, 1)
{
	my ($h, $e, $load) = @{ $loads[$k] };
	if ($h->finish)
	{
		$first_go++;
		next;
	}
	like($$e, qr/ERROR:  40001: could not lock every account: another transaction is doing so/,
		"two loads at once: load $k, which did not finish, gave way with 40001");
	my $retry_err = '';
	ok(IPC::Run::run($load, '>', \my $o, '2>', \$retry_err), "two loads at once: load $k retried finishes")
	  or diag($retry_err);
}
ok($first_go >= 1, "two loads at once: at least one finished at the first go ($first_go)");
is(query('SELECT count(*) FROM p2pay.payments'), '8000', 'two loads at once: 8,000 payments');
P2payNode::state_vs_recount($node, $db, 'two loads');

# Deterministically: A holds a payment open, so B, escalating, keeps trying
# for the covering lock (deadlock_timeout is long in its session); A then
# inserts past the threshold too, and gives way; B goes on.  (A transaction
# that starts meanwhile waits for B instead: its first pass waits for the
# escalation token.)
my $a = $node->background_psql($db, on_error_stop => 0);
my $b = $node->background_psql($db, on_error_stop => 0);
my $b_pid = $b->query_safe('SELECT pg_backend_pid()');
$a->query_safe('\\set VERBOSITY verbose');
$a->query_safe('BEGIN');
$a->query_safe(payment(9001, 9002));
$b->query_safe("SET deadlock_timeout = '300s'");
$b->query_until(qr/sent/, "\\echo sent\nBEGIN;\n" . payments(10001, 100, 1000) . ";\n");
my $trying = 0;
for (my $i = 0; $i < 100 * $PostgreSQL::Test::Utils::timeout_default && !$trying; $i++)
{
	$trying = query("SELECT count(*) FROM pg_stat_activity
	                  WHERE pid = $b_pid AND wait_event_type = 'Extension'");
	usleep(10_000);
}
is($trying, '1', 'escalating while a payment is open: B keeps trying for the covering lock');
($out, my $failed) = $a->query(payments(12001, 100, 1000));
ok($failed, 'A, past the threshold while B tries, fails');
like($a->{stderr}, qr/ERROR:  40001: could not lock every account: another transaction is doing so/,
	'with 40001');
$a->{stderr} = '';
$a->query_safe('ROLLBACK');
($out) = $b->query("SELECT count(*) FROM p2pay.payments WHERE payer_id BETWEEN uid(10001) AND uid(10100)");
is($b->{stderr}, '', 'B gets no error');
is($out, '100', 'B\'s load is in');
is((split /\|/, held_by($b_pid))[1], 'ExclusiveLock,ShareLock', 'B escalated');
$b->query_safe('COMMIT');
$a->quit;
$b->quit;
P2payNode::state_vs_recount($node, $db, 'after giving way');

###########################################################################
# e. The mix, with escalation after 6 accounts.
###########################################################################
query('DELETE FROM p2pay.payments');
$node->safe_psql('postgres', "ALTER SYSTEM SET p2pay.lock_escalation_accounts = 6");
$node->reload;
my $pick = sub {
	my ($v) = @_;
	return "\\set $v random(1, 40)\n\\set ${v}_to random(1, 39)\n";
};
my $to = sub { my ($v) = @_; return "1 + (:$v + :${v}_to - 1) % 40"; };
my %scripts = (
	'one' => $pick->('a') . "
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
  VALUES (uid(:a), uid(" . $to->('a') . "), 10, 'USD', '$BANK');
",
	'two' => $pick->('a') . $pick->('b') . "
BEGIN;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
  VALUES (uid(:a), uid(" . $to->('a') . "), 10, 'USD', '$BANK');
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
  VALUES (uid(:b), uid(" . $to->('b') . "), 10, 'USD', '$BANK');
COMMIT;
",
	# ten payments over up to twenty accounts: escalates
	'load' => $pick->('a') . "
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
  SELECT uid(1 + (:a + 2 * i) % 40), uid(1 + (:a + 2 * i + 1) % 40), 10, 'USD', '$BANK'
    FROM generate_series(1, 10) i;
");
my %weight = (one => 6, two => 2, load => 1);
my @order  = qw(one two load);
my %runs = %{ P2payNode::pgbench_mix($node, $db, \%scripts, \%weight, \@order, 8, 5) };
ok($runs{one}{ok} > 0 && $runs{load}{ok} > 0, 'mix: one-payment transactions and loads committed');
is($runs{one}{failed}, 0, 'mix: no transaction of one payment failed');
for my $name (qw(two load))
{
	is($runs{$name}{deadlock}, 0, "mix, $name.sql: no transaction failed with 40P01");
	is($runs{$name}{failed}, $runs{$name}{serialization},
		"mix, $name.sql: every transaction that failed, failed with 40001");
}
P2payNode::state_vs_recount($node, $db, 'mix');

# Every payment escalating (0): single payments serialize, and none fails.
$node->safe_psql('postgres', "ALTER SYSTEM SET p2pay.lock_escalation_accounts = 0");
$node->reload;
my @cmd = ('pgbench', '-n', '-c', 4, '-j', 2, '-T', 2, '--failures-detailed',
	'-f', $node->basedir . '/one.sql', $node->connstr($db));
my ($stdout, $stderr) = ('', '');
IPC::Run::run(\@cmd, '>', \$stdout, '2>', \$stderr,
	IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
like($stdout, qr/number of failed transactions: 0 /, 'every payment escalating: no payment fails')
  or diag("$stdout\n$stderr");
P2payNode::state_vs_recount($node, $db, 'every payment escalating');

my $log = slurp_file($node->logfile, $log_start);
unlike($log, qr/deadlock detected/, 'the server never detected a deadlock');

$node->stop;
done_testing();
