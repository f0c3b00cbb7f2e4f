# t/001_concurrency.pl: the rules stay exact when payments race.
#
# Eight pgbench clients insert payments at the same time.  The scoring
# trigger serializes payments that share an account (an advisory lock per
# account, taken lower key first), so a count rule lets exactly its limit
# through, payments in both directions never deadlock, and the per-account
# state always equals an aggregate over the committed payments.
#
# Each race starts from a gate: a session inserts a payment on the contended
# account and keeps its transaction open until every client is waiting behind
# it, then rolls back.  So the clients really do collide, and the gate's own
# payment is one more rolled-back payment that must leave no trace.
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

my $CLIENTS = 8;
my $BANK    = '00000000-0000-4000-8000-000000000001';    # seeded method

my $node = PostgreSQL::Test::Cluster->new('concurrency');
$node->init;
# Detect a deadlock quickly: a build that has one must fail fast, not hang.
$node->append_conf('postgresql.conf', "deadlock_timeout = 100ms");
$node->start;
P2payNode::partition_on_create($node);

my $db = 'p2pay_conc';
$node->safe_psql('postgres', "CREATE DATABASE $db");
$node->safe_psql(
	$db, qq{
CREATE EXTENSION p2pay;

-- Users are numbered: uid(n) is user n.
CREATE FUNCTION public.uid(integer) RETURNS uuid
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  AS \$\$ SELECT ('00000000-0000-4000-8000-' || lpad(\$1::text, 12, '0'))::uuid \$\$;

-- Every user has the bank transfer registered, so unregistered_method is quiet.
INSERT INTO p2pay.users (id, first_name)
  SELECT public.uid(n), 'user ' || n FROM generate_series(1, 2010) n;
INSERT INTO p2pay.user_payment_methods (user_id, payment_method_id)
  SELECT id, '$BANK' FROM p2pay.users;

-- Pairs of the both-ways race.
CREATE SEQUENCE public.both_ways START 0 MINVALUE 0;

-- What the trigger-maintained state should hold: an aggregate over the
-- committed payments.  One line per row that differs; none when exact.
CREATE FUNCTION public.state_diff() RETURNS SETOF text
  LANGUAGE sql STABLE AS \$f\$
WITH want_acct AS (
  SELECT user_id, sum(oc)::bigint AS out_count, sum(os) AS out_sum,
         sum(ic)::bigint AS in_count, sum(isum) AS in_sum
    FROM (SELECT payer_id AS user_id, 1 AS oc, amount_base AS os, 0 AS ic, 0 AS isum
            FROM p2pay.payments
          UNION ALL
          SELECT payee_id, 0, 0, 1, amount_base FROM p2pay.payments) x
   GROUP BY user_id),
have_acct AS (
  SELECT user_id, out_count, out_sum, in_count, in_sum FROM p2pay.account_stats),
want_pair AS (
  SELECT payer_id, payee_id, min(created_at) AS first_at, max(created_at) AS last_at,
         count(*) AS n, sum(amount_base) AS total
    FROM p2pay.payments GROUP BY payer_id, payee_id),
have_pair AS (
  SELECT payer_id, payee_id, first_at, last_at, n, total FROM p2pay.pair_stats),
want_hour AS (
  SELECT payer_id, date_trunc('hour', created_at, 'UTC') AS hour, sum(amount_base) AS total
    FROM p2pay.payments GROUP BY 1, 2 HAVING sum(amount_base) <> 0),
have_hour AS (
  SELECT d.user_id, (d.day + h.hour * interval '1 hour') AT TIME ZONE 'UTC', h.total
    FROM p2pay.account_daily d, unnest(d.out_hours, d.out_hour_sums) h (hour, total))
SELECT d FROM (
  SELECT 'account_stats lacks ' || r::text FROM (TABLE want_acct EXCEPT TABLE have_acct) r
  UNION ALL
  SELECT 'account_stats has ' || r::text FROM (TABLE have_acct EXCEPT TABLE want_acct) r
  UNION ALL
  SELECT 'pair_stats lacks ' || r::text FROM (TABLE want_pair EXCEPT TABLE have_pair) r
  UNION ALL
  SELECT 'pair_stats has ' || r::text FROM (TABLE have_pair EXCEPT TABLE want_pair) r
  UNION ALL
  SELECT 'account_daily lacks hour ' || r::text FROM (TABLE want_hour EXCEPT TABLE have_hour) r
  UNION ALL
  SELECT 'account_daily has hour ' || r::text FROM (TABLE have_hour EXCEPT TABLE want_hour) r
) AS diff(d) ORDER BY d
\$f\$;
});

# Whether the state tables equal the aggregates over p2pay.payments.
sub state_is_exact
{
	my ($name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	is($node->safe_psql($db, 'SELECT * FROM public.state_diff()'),
		'', "$name: account_stats, pair_stats and the payers' hours equal the aggregates over payments");
}

sub query { return $node->safe_psql($db, $_[0]); }

# Enable only the rules named (all of them when none are).
sub enable_only
{
	my @rules = @_;
	my $cond =
	  @rules ? "name IN (" . join(', ', map { "'$_'" } @rules) . ")" : 'true';
	query("UPDATE p2pay.rules SET enabled = ($cond)");
}

# Start pgbench in the background: $CLIENTS clients, $xacts transactions
# each, running $script.  Returns a handle for finish_pgbench.
my $scripts = 0;

sub start_pgbench
{
	my ($xacts, $script) = @_;
	my $file = $node->basedir . '/bench_' . ++$scripts . '.sql';
	append_to_file($file, $script);
	my %run = (out => '', err => '', xacts => $CLIENTS * $xacts);
	$run{h} = IPC::Run::start(
		[
			'pgbench', '-n', '-c', $CLIENTS, '-j', $CLIENTS, '-t', $xacts,
			'-f', $file, $node->connstr($db) . ' application_name=p2pay_bench'
		],
		'>', \$run{out}, '2>', \$run{err},
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return \%run;
}

# Wait for pgbench to end; check it ran every transaction without an error.
sub finish_pgbench
{
	my ($run, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	$run->{h}->finish;
	is($run->{h}->result(0), 0, "$name: pgbench exits 0")
	  or diag("pgbench stdout:\n$run->{out}\nstderr:\n$run->{err}");
	like(
		$run->{out},
		qr{number of transactions actually processed: $run->{xacts}/$run->{xacts}\n},
		"$name: pgbench ran all $run->{xacts} transactions");
	# pgbench counts a deadlock or serialization failure as a failed
	# transaction, not as an error of the client.
	like(
		$run->{out},
		qr{number of failed transactions: 0 },
		"$name: no transaction failed");
	unlike($run->{err}, qr/ERROR|aborted/, "$name: no client got an error");
}

# The number of pgbench backends waiting for a lock.
sub waiting_clients
{
	return query(
		"SELECT count(*) FROM pg_stat_activity
		  WHERE application_name = 'p2pay_bench' AND wait_event_type = 'Lock'");
}

# Hold the gate until every pgbench client waits behind it, then roll it
# back so that they all go at once.
sub release_gate_when_all_wait
{
	my ($gate, $run, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	my $waiting  = 0;
	while (time() < $deadline)
	{
		$waiting = waiting_clients();
		last if $waiting >= $CLIENTS || !$run->{h}->pumpable;
		$run->{h}->pump_nb;
		usleep(20_000);
	}
	is($waiting, $CLIENTS, "$name: all $CLIENTS clients wait behind the gate");
	$gate->query_safe('ROLLBACK');
}

# 48 distinct payers, uid($base + 1) to uid($base + 48), pay uid($payee)
# 100 each at once, $per payments to a statement, behind a gate whose own
# payment (from uid($base + 99)) rolls back: exactly max_payers (20) escape
# payee_fan_in, and the payee's state counts all 48.  Section b.
sub fan_in_race
{
	my ($gate, $name, $payee, $base, $per) = @_;
	my $seq = "public.fan_in_payer_$payee";

	query("CREATE SEQUENCE $seq");
	$gate->query_safe('BEGIN');
	$gate->query_safe(
		"INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
		 VALUES (uid($base + 99), uid($payee), 100, 'USD', '$BANK')");

	my $run = start_pgbench(
		48 / ($CLIENTS * $per), qq{
BEGIN;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
  SELECT uid($base + nextval('$seq')::integer), uid($payee), 100, 'USD', '$BANK'
    FROM generate_series(1, $per);
SELECT pg_sleep(0.002);
COMMIT;
});
	release_gate_when_all_wait($gate, $run, $name);
	finish_pgbench($run, $name);

	is( query(
			"SELECT count(*), count(DISTINCT payer_id) FROM p2pay.payments
			  WHERE payee_id = uid($payee)"),
		'48|48',
		"$name: 48 payments from 48 distinct payers are stored");
	is( query(
			"SELECT count(*) FROM p2pay.payments
			  WHERE payee_id = uid($payee) AND NOT 'payee_fan_in' = ANY (reasons)"),
		'20',
		"$name: exactly max_payers (20) payments escape payee_fan_in");
	is( query(
			"SELECT in_count FROM p2pay.account_stats WHERE user_id = uid($payee)"),
		'48',
		"$name: the payee's in_count is 48");
	state_is_exact($name);
	return;
}

my $log_start = -s $node->logfile;

###########################################################################
# a. payer_velocity_count: one payer, 80 payments at once, max_count 10.
###########################################################################
enable_only('payer_velocity_count');
is( query(
		"SELECT params->>'max_count', params->>'window' FROM p2pay.rules
		  WHERE name = 'payer_velocity_count'"),
	'10|1 hour',
	'velocity: default max_count 10 per hour');

my $gate = $node->background_psql($db);
$gate->query_safe('BEGIN');
$gate->query_safe(
	"INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
	 VALUES (uid(1), uid(199), 10, 'USD', '$BANK')");

my $run = start_pgbench(
	10, qq{
\\set payee random(101, 180)
BEGIN;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
  VALUES (uid(1), uid(:payee), 10, 'USD', '$BANK');
SELECT pg_sleep(0.002);
COMMIT;
});
release_gate_when_all_wait($gate, $run, 'velocity');
finish_pgbench($run, 'velocity');

is(query("SELECT count(*) FROM p2pay.payments WHERE payer_id = uid(1)"),
	'80', 'velocity: all 80 payments are stored');
is( query(
		"SELECT count(*) FROM p2pay.payments
		  WHERE payer_id = uid(1) AND NOT 'payer_velocity_count' = ANY (reasons)"),
	'10',
	'velocity: exactly max_count (10) payments escape payer_velocity_count');
is( query(
		"SELECT decision, count(*) FROM p2pay.payments WHERE payer_id = uid(1)
		  GROUP BY decision ORDER BY decision"),
	"approve|10\nreview|70",
	'velocity: 10 approved, the 70 over the limit held for review');
is(query("SELECT out_count FROM p2pay.account_stats WHERE user_id = uid(1)"),
	'80', 'velocity: the payer\'s out_count is 80');
state_is_exact('velocity');

###########################################################################
# b. payee_fan_in: 48 distinct payers pay one payee at once, max_payers 20;
#    100 each, as the payee has no history (short_history_min_amount).
###########################################################################
enable_only('payee_fan_in');
is( query(
		"SELECT params->>'max_payers', params->>'window' FROM p2pay.rules
		  WHERE name = 'payee_fan_in'"),
	'20|24 hours',
	'fan-in: default max_payers 20 per 24 hours');

fan_in_race($gate, 'fan-in', 2, 200, 1);

###########################################################################
# b2. The same race with three payments in each statement: the statement's
#     later payments keep the payee's rows in memory (store.c, Statements)
#     and write them as it ends, before its transaction lets the lock go.
###########################################################################
fan_in_race($gate, 'fan-in by statements of 3', 3, 1500, 3);

###########################################################################
# c. No deadlock: payments in both directions between four users.
###########################################################################
enable_only();
my $before = query(
	"SELECT count(*) FROM p2pay.payments WHERE payer_id BETWEEN uid(1001) AND uid(1004)");
is($before, '0', 'both ways: no payments between the four users yet');

# The twelve ordered pairs of distinct users among 1001..1004 in turn, so
# that every A->B runs alongside B->A: 8 pairs get 17 payments, 4 get 16.
$run = start_pgbench(
	25, qq{
\\set amount random(1, 500)
BEGIN;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
  SELECT uid(1001 + k / 3), uid(1001 + (k / 3 + k % 3 + 1) % 4), :amount, 'USD', '$BANK'
    FROM (SELECT (nextval('public.both_ways') % 12)::integer AS k) AS pick;
SELECT pg_sleep(0.001);
COMMIT;
});
finish_pgbench($run, 'both ways');

is( query(
		"SELECT count(*), count(DISTINCT (payer_id, payee_id)) FROM p2pay.payments
		  WHERE payer_id BETWEEN uid(1001) AND uid(1004)"),
	'200|12',
	'both ways: all 200 payments are stored, over all 12 directed pairs');
state_is_exact('both ways');

###########################################################################
# c2. No deadlock either when the cycle rule locks more accounts: payments
# of 1,000 and more (cycle's min_amount) among five users, every rule on,
# so that each one reads loops of three and four and locks the accounts a
# loop's middle leg can start from.
###########################################################################
$before = query(
	"SELECT count(*) FROM p2pay.payments WHERE payer_id BETWEEN uid(1101) AND uid(1105)");
is($before, '0', 'loops: no payments among the five users yet');

# Any of the twenty ordered pairs of distinct users among 1101..1105, at
# random, so that payments in opposite directions round a loop meet.
$run = start_pgbench(
	30, qq{
\\set k random(0, 19)
\\set amount random(1000, 5000)
BEGIN;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
  VALUES (uid(1101 + :k / 4), uid(1101 + (:k / 4 + :k % 4 + 1) % 5), :amount, 'USD', '$BANK');
SELECT pg_sleep(0.001);
COMMIT;
});
finish_pgbench($run, 'loops');

is( query(
		"SELECT count(*), count(*) FILTER (WHERE 'cycle' = ANY (reasons)) > 0
		   FROM p2pay.payments WHERE payer_id BETWEEN uid(1101) AND uid(1105)"),
	'240|t',
	'loops: all 240 payments are stored, and loops were flagged');
state_is_exact('loops');

###########################################################################
# d. Rolled-back payments leave no trace.
###########################################################################
# Even clients commit payments among users 2001..2004; odd clients pay from
# user 2010 to the same users, 5000 each, and roll back.
$run = start_pgbench(
	10, qq{
\\set payer random(0, 3)
\\set step random(1, 3)
\\set amount random(1, 500)
\\if :client_id % 2 = 0
BEGIN;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
  VALUES (uid(2001 + :payer), uid(2001 + (:payer + :step) % 4), :amount, 'USD', '$BANK');
SELECT pg_sleep(0.001);
COMMIT;
\\else
BEGIN;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
  VALUES (uid(2010), uid(2001 + :payer), 5000, 'USD', '$BANK');
SELECT pg_sleep(0.001);
ROLLBACK;
\\endif
});
finish_pgbench($run, 'rollback');

is( query(
		"SELECT count(*) FROM p2pay.payments
		  WHERE payer_id BETWEEN uid(2001) AND uid(2004)"),
	'40', 'rollback: the 40 committed payments are stored');
is( query(
		"SELECT count(*) FROM p2pay.payments
		  WHERE payer_id = uid(2010) OR payee_id = uid(2010)"),
	'0', 'rollback: none of the 40 rolled-back payments is stored');

# A payment undone by ROLLBACK TO SAVEPOINT, and one whose insert fails after
# the trigger ran (a transaction_id already stored, at the same created_at:
# unique on a plain and on a partitioned payments), inside a committed
# transaction.
query(
	qq{
BEGIN;
SAVEPOINT one;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
  VALUES (uid(2010), uid(2001), 5000, 'USD', '$BANK');
ROLLBACK TO SAVEPOINT one;
DO \$\$
BEGIN
  INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency,
                              payment_method_id, created_at)
    SELECT transaction_id, uid(2010), uid(2002), 5000, 'USD', '$BANK', created_at
      FROM p2pay.payments LIMIT 1;
  RAISE 'the duplicate transaction_id was accepted';
EXCEPTION WHEN unique_violation THEN
  NULL;
END
\$\$;
COMMIT;
});

is( query(
		"SELECT (SELECT count(*) FROM p2pay.account_stats WHERE user_id = uid(2010))
		      + (SELECT count(*) FROM p2pay.pair_stats
		          WHERE payer_id = uid(2010) OR payee_id = uid(2010))
		      + (SELECT count(*) FROM p2pay.account_daily WHERE user_id = uid(2010))"),
	'0',
	'rollback: no state row mentions the payer of the rolled-back payments');
state_is_exact('rollback');

# Rules read the state: the payer's next payment is scored as its first one
# (42 rolled-back payments of 5000 would fire both velocity rules).
is( query(
		"INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
		 VALUES (uid(2010), uid(2001), 10, 'USD', '$BANK')
		 RETURNING risk_score, decision, reasons"),
	'0|approve|{}',
	'rollback: the next payment of that payer is scored as its first');
is( query(
		"SELECT out_count, out_sum FROM p2pay.account_stats WHERE user_id = uid(2010)"),
	'1|10',
	'rollback: the payer\'s account_stats counts only the committed payment');
state_is_exact('after rollback');

$gate->quit;

###########################################################################
# The server never detected a deadlock.
###########################################################################
my $log = slurp_file($node->logfile, $log_start);
unlike($log, qr/deadlock detected/, 'no deadlock was detected by the server');

$node->stop;
done_testing();
