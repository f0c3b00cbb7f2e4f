# t/006_rule_stats.pl: p2pay.rule_stats, the per-rule statistics kept in
# shared memory.
#
# What a user relies on:
# - with p2pay in shared_preload_libraries, every scoring in every session
#   is counted, with no lock between sessions: after several sessions insert
#   at once, each rule that is not off shows one evaluation per payment, a
#   rule that is off none, the facts one reading per payment, and each rule's
#   fires equal the payments that carry it among their reasons (or shadow
#   reasons);
# - p2pay.decision_stats counts, per decision, the payments committed with
#   it, from every session: it equals the payments table's count;
# - each database sees and resets only its own figures: inserts in one
#   database move nothing in another, a rolled-back insert is evaluated but
#   is no decision, a reset in one database leaves the other's counts;
# - the block of a dropped database goes to the next database that needs
#   one; with more databases than p2pay.stats_databases, the databases
#   beyond share the overflow block and say so (column overflow, a LOG
#   line), and stay there;
# - without the preload, p2pay.rule_stats and p2pay.rule_stats_reset() fail
#   with SQLSTATE 55000 and a hint saying how to preload, while inserting and
#   scoring payments work as ever.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/lib";

use IPC::Run;
use P2payNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $db       = 'p2pay_stats';
my $BANK     = '00000000-0000-4000-8000-000000000001';
my $USERS    = 40;
my $SESSIONS = 4;
my $PAYMENTS = 250;    # per session

###########################################################################
# a. Preloaded: the counters add up across sessions.
###########################################################################
my $node = P2payNode::new_node('rule_stats', $db);
sub query { return $node->safe_psql($db, $_[0]); }

is(query('SHOW shared_preload_libraries'), 'p2pay', 'p2pay is preloaded');
P2payNode::seed_users($node, $db, $USERS);

# One rule off, one in shadow: evaluated are all rules but round_trip, and
# amount_limit's fires show in shadow_reasons.
query(
	"UPDATE p2pay.rules SET mode = 'off' WHERE name = 'round_trip';
	 UPDATE p2pay.rules SET mode = 'shadow' WHERE name = 'amount_limit';
	 SELECT p2pay.rule_stats_reset();");
is(query('SELECT sum(evaluations) + sum(fires) FROM p2pay.rule_stats'),
	'0', 'after a reset every counter is zero');

# Each session inserts its payments one statement at a time: every 10th is
# above amount_limit, every 7th above new_payee_high_amount's 1000, and
# some use a method the payer has not registered (the credit card).
my @runs;
for my $s (0 .. $SESSIONS - 1)
{
	my $sql = '';
	for my $i (0 .. $PAYMENTS - 1)
	{
		my $payer  = 1 + ($s * $PAYMENTS + $i) % $USERS;
		my $payee  = 1 + ($payer + $i % 7) % $USERS;    # never the payer
		my $amount = $i % 10 == 0 ? 15000 : $i % 7 == 0 ? 2500 : 10 + $i;
		my $method = $i % 11 == 0 ? 2 : 1;
		$sql .=
		  "INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)"
		  . " VALUES (uid($payer), uid($payee), $amount, 'USD',"
		  . " '00000000-0000-4000-8000-00000000000$method');\n";
	}
	my $file = $node->basedir . "/session_$s.sql";
	append_to_file($file, $sql);
	my %run = (out => '', err => '');
	$run{h} = IPC::Run::start(
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr($db), '-f', $file ],
		'>', \$run{out}, '2>', \$run{err},
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	push @runs, \%run;
}
for my $s (0 .. $SESSIONS - 1)
{
	my $run = $runs[$s];
	$run->{h}->finish;
	is($run->{h}->result(0), 0, "session $s inserted its $PAYMENTS payments")
	  or diag("stderr:\n$run->{err}");
}

my $total = $SESSIONS * $PAYMENTS;
is(query('SELECT count(*) FROM p2pay.payments'), $total, "$total payments are stored");

is( query(
		"SELECT string_agg(d.decision || ' ' || d.payments || ' ' || p.n, ', ' ORDER BY d.decision)
		   FROM p2pay.decision_stats d,
		        LATERAL (SELECT count(*) AS n FROM p2pay.payments WHERE decision::text = d.decision) p
		  WHERE d.payments <> p.n"),
	'', 'decision_stats counts each decision as often as the payments carry it');
is(query('SELECT sum(payments) FROM p2pay.decision_stats'),
	$total, "decision_stats counts the $total payments");

my $evaluated = query("SELECT count(*) FROM p2pay.rules WHERE mode <> 'off'");
is($evaluated, '15', 'all rules but one are evaluated');
is( query("SELECT sum(evaluations) FROM p2pay.rule_stats WHERE rule <> 'facts'"),
	$total * $evaluated,
	"rule evaluations add up to payments x evaluated rules ($total x $evaluated)");
is( query(
		"SELECT string_agg(rule || ' ' || evaluations, ', ' ORDER BY rule)
		   FROM p2pay.rule_stats WHERE evaluations <> $total"),
	'round_trip 0',
	"every rule is evaluated $total times, except round_trip (off): never");
is( query("SELECT evaluations || ' ' || fires FROM p2pay.rule_stats WHERE rule = 'facts'"),
	"$total 0", 'the facts are read once per payment');

# Fires: the rule's count equals the payments it marked.
my $mismatch = query(
	q{
SELECT string_agg(s.rule || ': counted ' || s.fires || ', on payments ' || p.n, '; ')
  FROM p2pay.rule_stats s,
       LATERAL (SELECT count(*) AS n FROM p2pay.payments
                 WHERE s.rule = ANY (reasons) OR s.rule = ANY (shadow_reasons)) p
 WHERE s.rule <> 'facts' AND s.fires <> p.n});
is($mismatch, '', 'each rule\'s fires equal the payments that carry it among their reasons');
is( query(
		"SELECT fires FROM p2pay.rule_stats WHERE rule = 'amount_limit'"),
	$SESSIONS * $PAYMENTS / 10,
	'amount_limit (shadow) fired on every 10th payment');
ok(query("SELECT fires > 0 FROM p2pay.rule_stats WHERE rule = 'unregistered_method'"),
	'unregistered_method fired');
is( query(
		"SELECT count(*) FROM p2pay.rule_stats
		  WHERE mean_us < 0 OR max_us < mean_us OR (evaluations > 0 AND max_us = 0)
		     OR since > now()"),
	'0', 'times: mean >= 0, max >= mean, some time measured; since in the past');

# A dry run is scored through the same code but is not a payment: the
# statistics count what inserts cost and catch.
query(
	"SELECT p2pay.score(uid(1), uid(2), 10, 'USD', '$BANK')");
is( query(
		"SELECT string_agg(DISTINCT evaluations::text, ',') FROM p2pay.rule_stats
		  WHERE rule <> 'round_trip'"),
	$total, 'a dry run through p2pay.score() is not counted');

# Another session sees the same figures; a reset zeroes them for everyone.
my $bg = $node->background_psql($db);
query('SELECT p2pay.rule_stats_reset()');
is($bg->query_safe('SELECT sum(evaluations) + sum(fires) FROM p2pay.rule_stats'),
	'0', 'a reset in one session zeroes the figures another session reads');
$bg->quit;

###########################################################################
# a2. Per database: two databases of one server count apart.
###########################################################################
my $db2 = 'p2pay_stats_other';
P2payNode::create_db($node, $db2);
P2payNode::seed_users($node, $db2, 4);
sub query2 { return $node->safe_psql($db2, $_[0]); }
sub figures
{
	my ($dbname) = @_;
	return $node->safe_psql($dbname,
		"SELECT (SELECT evaluations FROM p2pay.rule_stats WHERE rule = 'facts') || ' '
		     || (SELECT string_agg(decision || '=' || payments, ',' ORDER BY decision)
		           FROM p2pay.decision_stats)");
}
query('SELECT p2pay.decision_stats_reset()');
query2('SELECT p2pay.rule_stats_reset(); SELECT p2pay.decision_stats_reset()');
is(figures($db), '0 approve=0,decline=0,review=0', "$db starts from zero");

# Three payments in the other database: two approved, one under review.
query2(
	"INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
	 VALUES (uid(1), uid(2), 10, 'USD', '$BANK'), (uid(2), uid(3), 20, 'USD', '$BANK'),
	        (uid(3), uid(4), 15000, 'USD', '$BANK')");
is(figures($db2), '3 approve=2,decline=0,review=1', "$db2 counts its three payments");
is(figures($db), '0 approve=0,decline=0,review=0', "$db sees none of $db2\'s payments");
is(query2('SELECT DISTINCT overflow FROM p2pay.rule_stats'), 'f', "$db2 has a block of its own");

# A rolled-back insert was evaluated, but is no decision.
query2(
	"BEGIN;
	 INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
	 VALUES (uid(4), uid(1), 15000, 'USD', '$BANK');
	 ROLLBACK;");
is(figures($db2), '4 approve=2,decline=0,review=1',
	'a rolled-back insert counts an evaluation and no decision');

# One payment in the first database, then a reset in the other: only the
# other's figures go back to zero.  (Its decision depends on the history.)
my $decided = query(
	"INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
	 VALUES (uid(1), uid(2), 10, 'USD', '$BANK') RETURNING decision");
my %one = (approve => 0, decline => 0, review => 0, $decided => 1);
my $one = '1 ' . join(',', map { "$_=$one{$_}" } sort keys %one);
is(figures($db), $one, "$db counts its own payment ($decided)");
query2('SELECT p2pay.rule_stats_reset(); SELECT p2pay.decision_stats_reset()');
is(figures($db2), '0 approve=0,decline=0,review=0', "a reset in $db2 zeroes $db2");
is(figures($db), $one, "and leaves $db\'s figures");

$node->stop;

###########################################################################
# a3. More databases than blocks: two blocks (p2pay.stats_databases = 2).
###########################################################################
my $small = P2payNode::new_node('two_blocks', 'first', 'p2pay.stats_databases = 2');
is($small->safe_psql('first', 'SHOW p2pay.stats_databases'), '2', 'two blocks are reserved');
for my $d ('second', 'third', 'fourth', 'fifth')
{
	P2payNode::create_db($small, $d);
}
for my $d ('first', 'second', 'third', 'fourth', 'fifth')
{
	P2payNode::seed_users($small, $d, 2);
}
sub pay_in
{
	my ($dbname) = @_;
	$small->safe_psql($dbname,
		"INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
		 VALUES (uid(1), uid(2), 10, 'USD', '$BANK')");
	return;
}
# facts evaluations, overflow (rule_stats), approved, overflow (decision_stats)
sub stats_in
{
	my ($dbname) = @_;
	return $small->safe_psql($dbname,
		"SELECT s.evaluations || ' ' || s.overflow || ' ' || d.payments || ' ' || d.overflow
		   FROM p2pay.rule_stats s, p2pay.decision_stats d
		  WHERE s.rule = 'facts' AND d.decision = 'approve'");
}
pay_in('first');
pay_in('second');
is(stats_in('first'),  '1 false 1 false', 'the first database takes a block');
is(stats_in('second'), '1 false 1 false', 'the second takes the other');

# The first is dropped: its block goes, from zero, to the next database
# that needs one.
$small->safe_psql('postgres', 'DROP DATABASE first');
pay_in('third');
is(stats_in('third'), '1 false 1 false', 'a dropped database\'s block goes to the third');

# No block left: the fourth and fifth share the overflow block, and say so.
my $log_offset = -s $small->logfile;
pay_in('fourth');
pay_in('fifth');
is(stats_in('fourth'), '2 true 2 true', 'the fourth and fifth share the overflow block, and their views say so');
is(stats_in('fifth'),  '2 true 2 true', 'the same figures in the fifth');
ok( $small->log_contains(
		'p2pay statistics of database "fourth" share the overflow block', $log_offset),
	'the server log names the database that went to the overflow block');
is(stats_in('second'), '1 false 1 false', 'the second database\'s figures stay its own');
is(stats_in('third'),  '1 false 1 false', 'and the third\'s');

# Once a database counts in the overflow block, a dropped database's block
# is not taken back: the fourth and fifth go on counting in one block.
$small->safe_psql('postgres', 'DROP DATABASE second');
pay_in('fifth');
is(stats_in('fifth'), '3 true 3 true', 'after the overflow, the fifth stays in the overflow block');
$small->stop;

###########################################################################
# b. Not preloaded: the statistics say how to get them; the rest works.
###########################################################################
my $plain = P2payNode::new_node('no_preload', $db, "shared_preload_libraries = ''");
is($plain->safe_psql($db, 'SHOW shared_preload_libraries'), '', 'p2pay is not preloaded');
P2payNode::seed_users($plain, $db, $USERS);

my ($ret, $out, $err) = $plain->psql($db,
	"\\set VERBOSITY verbose\nSELECT * FROM p2pay.rule_stats");
isnt($ret, 0, 'reading p2pay.rule_stats fails');
like(
	$err,
	qr/ERROR:  55000: p2pay\.rule_stats needs p2pay in shared_preload_libraries/,
	'the error is 55000: p2pay.rule_stats needs p2pay in shared_preload_libraries');
like(
	$err,
	qr/HINT:  .*ALTER SYSTEM SET shared_preload_libraries = 'p2pay'.*restart the server/,
	'the hint says how to preload p2pay');

($ret, $out, $err) = $plain->psql($db,
	"\\set VERBOSITY verbose\nSELECT p2pay.rule_stats_reset()");
isnt($ret, 0, 'p2pay.rule_stats_reset() fails');
like(
	$err,
	qr/ERROR:  55000: p2pay\.rule_stats_reset\(\) needs p2pay in shared_preload_libraries/,
	'with 55000 too');

($ret, $out, $err) = $plain->psql($db,
	"\\set VERBOSITY verbose\nSELECT * FROM p2pay.decision_stats");
like(
	$err,
	qr/ERROR:  55000: p2pay\.decision_stats needs p2pay in shared_preload_libraries/,
	'reading p2pay.decision_stats fails with 55000 too');

is( $plain->safe_psql(
		$db,
		"INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
		 VALUES (uid(1), uid(2), 15000, 'USD', '$BANK'), (uid(2), uid(3), 10, 'USD', '$BANK')
		 RETURNING decision, reasons"),
	"review|{amount_limit}\napprove|{}",
	'payments are inserted and scored');
is( $plain->safe_psql(
		$db,
		"SELECT decision, reasons FROM p2pay.score(uid(3), uid(4), 15000, 'USD', '$BANK')"),
	'review|{amount_limit}',
	'a dry run through p2pay.score() works');

# Not preloaded, p2pay is loaded by a backend's first statement that needs
# it, after that statement began: its executor hook (conflict.c) could not
# see whether the statement has ON CONFLICT.  An INSERT ... ON CONFLICT as a
# new backend's first statement still passes over a payment sent again
# without counting it; with the statement triggers disabled, it fails on
# the key as a plain INSERT would, rather than count it.
my $again = "INSERT INTO p2pay.payments
  (transaction_id, payer_id, payee_id, amount, currency, payment_method_id, created_at)
  VALUES (uid(900), uid(5), uid(6), 10, 'USD', '$BANK', '2026-03-01 10:00+00')";
$plain->safe_psql($db, $again);
is($plain->safe_psql($db, "$again ON CONFLICT DO NOTHING RETURNING id"),
	'', "a payment sent again, as a backend's first statement, is passed over");
$plain->safe_psql($db, 'ALTER TABLE p2pay.payments DISABLE TRIGGER payments_batch_end');
($ret, $out, $err) = $plain->psql($db,
	"\\set VERBOSITY verbose\n$again ON CONFLICT DO NOTHING");
like($err, qr/ERROR:  23505: duplicate key value violates unique constraint "[^"]+"/,
	'without the statement triggers, it fails with 23505');
$plain->safe_psql($db, 'ALTER TABLE p2pay.payments ENABLE TRIGGER payments_batch_end');
is( $plain->safe_psql(
		$db, "SELECT out_count, in_count FROM p2pay.account_stats WHERE user_id IN (uid(5), uid(6)) ORDER BY user_id"),
	"1|0\n0|1",
	'the payment is counted once');

$plain->stop;
done_testing();
