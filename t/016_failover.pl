# t/016_failover.pl: p2pay on a streaming standby, and the flagged-payment
# stream across a promotion.
#
# a. flagged_since() refuses to run without track_commit_timestamp
#    (SQLSTATE 55000), with a hint.
# b. On a hot standby, what reads works: score() dry runs, backtest(), the
#    review queue, rule_stats, the HTTP API's reads, flagged_since(); what
#    writes fails with SQLSTATE 25006 (read-only transaction): an insert
#    into payments, resolve(), snooze(), a rule change, rebuild_state(), a
#    claim; and a logical slot can't be created there (before 17).  The
#    primary's logical slot is not on the standby.
# c. A consumer reads the stream on the primary: it acknowledges some
#    events, receives others without acknowledging them, and misses the
#    rest; one of the payments it misses was inserted (with a backdated
#    created_at) by a prepared transaction before the last commit it saw,
#    and committed after it; a review it saw is resolved after it.  The
#    primary stops, the standby is promoted, the consumer creates its slot
#    there and runs flagged_since() from the last commit_time it received.
#    The events it had, the catch-up and the new slot's events together,
#    deduplicated on transaction_id and event, are every flagged payment on
#    the new primary, each once, with each line's fields the row's.
# d. On PostgreSQL 17 and later, a failover slot synchronized to a standby
#    (sync_replication_slots, synchronized_standby_slots) goes on streaming
#    on the promoted standby with no catch-up: the events consumed before
#    and after the promotion are every flagged payment.  Skipped before 17.
use strict;
use warnings;

use lib 't/lib';

use FindBin;
use IPC::Run;
use JSON::PP;
use P2payNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $db = 'p2pay_failover';
my $BANK = '00000000-0000-4000-8000-000000000001';    # registered by everyone
my $CARD = '00000000-0000-4000-8000-000000000002';    # registered by no one

# Every payment as inserted, with the decision its insert was given:
# what a consumer must have been told about (replicated with the rest).
my $log_inserts = q{
CREATE TABLE public.inserted (transaction_id uuid PRIMARY KEY, decision text);
CREATE FUNCTION public.log_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.inserted VALUES (NEW.transaction_id, NEW.decision::text);
  RETURN NULL;
END $$;
CREATE TRIGGER log_insert AFTER INSERT ON p2pay.payments
  FOR EACH ROW EXECUTE FUNCTION public.log_insert();
};

# pay(NODE, N, FIRST): SQL inserting N payments numbered from FIRST: every
# third one approved, one review (above 10000), one decline (the card).
sub pay_sql
{
	my ($n, $first) = @_;
	return qq{
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
  SELECT uid(1 + i % 9), uid(2 + i % 9),
         CASE i % 3 WHEN 1 THEN 15000 ELSE 20 END, 'USD',
         CASE i % 3 WHEN 2 THEN '$CARD'::uuid ELSE '$BANK'::uuid END
    FROM generate_series($first, $first + $n - 1) i;
};
}

# The flagged payments NODE holds: transaction_id => decision as inserted.
sub flagged_on
{
	my ($node) = @_;
	my %flagged = map { split /\|/ } split /\n/,
	  $node->safe_psql($db,
		"SELECT transaction_id, decision FROM public.inserted WHERE decision IN ('review', 'decline')");
	return \%flagged;
}

# Lines of the stream or of the catch-up, as decoded JSON objects.
sub events
{
	my ($text) = @_;
	return [ map { decode_json($_) } grep { length } split /\n/, $text ];
}

# The union of event lists, deduplicated on transaction_id and event as a
# consumer does: transaction_id => decision of its flagged event.
sub dedup_flagged
{
	my %seen;
	for my $list (@_)
	{
		for my $e (@$list)
		{
			next unless $e->{event} eq 'flagged';
			$seen{ $e->{transaction_id} } //= $e->{decision};
		}
	}
	return \%seen;
}

# The SQLSTATE a statement fails with on NODE ('' if it succeeds).
sub sqlstate_of
{
	my ($node, $sql) = @_;
	my ($rc, $out, $err) =
	  $node->psql($db, "$sql;\n\\echo :LAST_ERROR_SQLSTATE", on_error_stop => 0);
	return $out;
}

my $forwarder = "$FindBin::RealBin/../tools/p2pay-forward";

# Run p2pay-forward with ARGS to its end: exit status and stderr.
sub forward
{
	my ($out, $err) = ('', '');
	IPC::Run::run([ $forwarder, @_ ], '>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return ($? >> 8, $err);
}

# ---------------------------------------------------------------------------
# a. track_commit_timestamp off

my $primary = P2payNode::start_node('primary',
	"max_prepared_transactions = 5\ntrack_commit_timestamp = off\n");
P2payNode::create_db($primary, $db);
my ($rc, $out, $err) = $primary->psql($db, 'SELECT * FROM p2pay.flagged_since(now())');
like($err, qr/flagged_since\(\) needs track_commit_timestamp/,
	'off: flagged_since() refuses to run without track_commit_timestamp');
like($err, qr/HINT:.*track_commit_timestamp = on/, 'off: the hint says what to set');
is(sqlstate_of($primary, 'SELECT * FROM p2pay.flagged_since(now())'),
	'55000', 'off: SQLSTATE 55000');
$primary->append_conf('postgresql.conf', "track_commit_timestamp = on\n");
$primary->restart;

P2payNode::seed_row_decided($primary, $db, 12);
$primary->safe_psql($db, $log_inserts);
$primary->safe_psql($db, "GRANT EXECUTE ON FUNCTION public.uid(integer) TO PUBLIC");
$primary->safe_psql($db, "SELECT pg_create_logical_replication_slot('consumer', 'p2pay')");
$primary->safe_psql($db, pay_sql(6, 1));

$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);

# ---------------------------------------------------------------------------
# b. What works on a standby, and what doesn't

is($standby->safe_psql($db, 'SELECT pg_is_in_recovery()'), 't', 'standby: in recovery');
is($standby->safe_psql($db, "SELECT count(*) FROM pg_replication_slots"),
	'0', "standby: the primary's logical slot is not on the standby");
is( $standby->safe_psql(
		$db, "SELECT decision FROM p2pay.score(uid(1), uid(2), 15000, 'USD', '$BANK')"),
	'review', 'standby: score() dry run');
is( $standby->safe_psql(
		$db, "SELECT fired FROM p2pay.backtest(now() - interval '1 day', now() + interval '1 hour')
		      WHERE rule = 'amount_limit'"),
	'2', 'standby: backtest() replays the payments');
is($standby->safe_psql($db, 'SELECT count(*) FROM p2pay.review_queue'),
	'2', 'standby: the review queue');
is($standby->safe_psql($db, "SELECT count(*) > 0 FROM p2pay.rule_stats"),
	't', 'standby: rule_stats');
is( $standby->safe_psql(
		$db, "SELECT jsonb_array_length(p2pay.api_reviews('{}'))"),
	'2', 'standby: the HTTP API lists the reviews');
is($standby->safe_psql($db, "SELECT count(*) FROM p2pay.flagged_since('2000-01-01')"),
	'4', 'standby: flagged_since()');

my $review = $standby->safe_psql($db,
	"SELECT transaction_id FROM p2pay.review_queue ORDER BY transaction_id LIMIT 1");
my %refused = (
	'an insert into payments' => pay_sql(1, 100),
	'resolve()' => "SELECT p2pay.resolve('$review', 'approve')",
	'snooze()' => "SELECT p2pay.snooze('amount_limit', uid(1), now() + interval '1 day')",
	'a rule change' => "UPDATE p2pay.rules SET weight = 0.5 WHERE name = 'amount_limit'",
	'rebuild_state()' => 'SELECT p2pay.rebuild_state()',
	'a claim (api_claim)' => "SELECT p2pay.api_claim('$review')",
	'a new user (api_create_user)' => "SELECT p2pay.api_create_user('{\"first_name\": \"x\"}')");
for my $what (sort keys %refused)
{
	is(sqlstate_of($standby, $refused{$what}), '25006', "standby: $what fails with 25006");
}
($rc, $out, $err) = $standby->psql($db, pay_sql(1, 100));
like($err, qr/cannot execute INSERT in a read-only transaction/,
	'standby: the insert says why');
($rc, $out, $err) = $standby->psql($db,
	"SELECT pg_create_logical_replication_slot('consumer2', 'p2pay')");
if ($standby->safe_psql($db, 'SHOW server_version_num') < 160000)
{
	like($err, qr/logical decoding cannot be used while in recovery/,
		'standby: no logical slot before 16');
}
else
{
	is($rc, 0, 'standby: 16 and later decode on a standby');
	$standby->safe_psql($db, "SELECT pg_drop_replication_slot('consumer2')");
}
unlike(slurp_file($standby->logfile), qr/TRAP|server process .* was terminated/,
	'standby: no backend crashed');

# p2pay-forward --failover: only with --create-slot, only on 17.
my ($status, $ferr) = forward('-d', $primary->connstr($db), '-S', 'fwd', '--failover', '--to', 'stdout');
is($status, 2, 'forward: --failover without --create-slot is a usage error');
like($ferr, qr/--failover is how --create-slot makes the slot/, 'forward: it says so');
if ($primary->safe_psql($db, 'SHOW server_version_num') < 170000)
{
	($status, $ferr) = forward('-d', $primary->connstr($db), '-S', 'fwd', '--create-slot',
		'--failover', '--to', 'stdout');
	is($status, 1, 'forward: --failover before 17 fails');
	like($ferr, qr/--failover needs PostgreSQL 17 or later.*flagged_since/s,
		'forward: it says why, and what to do instead');
	is($primary->safe_psql($db, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'fwd'"),
		'0', 'forward: and creates no slot');
}

# ---------------------------------------------------------------------------
# c. A promotion, and the catch-up from payments

# The consumer acknowledges the first events (get), then receives more
# without acknowledging them (peek).
my $acked = events($primary->safe_psql($db,
	"SELECT data FROM pg_logical_slot_get_changes('consumer', NULL, NULL)"));
is(scalar @$acked, 4, 'stream: the first flagged payments');

# A payment inserted now, with a backdated created_at, by a transaction
# that commits only after the last commit the consumer will see (between
# users of its own: a prepared transaction keeps its accounts locked).
$primary->safe_psql(
	$db, qq{
BEGIN;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
  VALUES (uid(11), uid(12), 25000, 'USD', '$BANK', '2021-01-01');
PREPARE TRANSACTION 'late';
});
$primary->safe_psql($db, pay_sql(6, 10));
my $received = events($primary->safe_psql($db,
	"SELECT data FROM pg_logical_slot_peek_changes('consumer', NULL, NULL)"));
is(scalar @$received, 4, 'stream: more received, not acknowledged');
my ($since) = sort { $b cmp $a } map { $_->{commit_time} } @$acked, @$received;

# What the consumer misses: the late payment's commit, more payments, and a
# review it has seen resolved.
$primary->safe_psql($db, "COMMIT PREPARED 'late'");
$primary->safe_psql($db, pay_sql(6, 20));
$primary->safe_psql($db, "SELECT p2pay.resolve('$acked->[0]{transaction_id}', 'decline')")
  if $acked->[0]{decision} eq 'review';
$primary->safe_psql($db, "SELECT p2pay.resolve(transaction_id, 'approve')
                            FROM p2pay.review_queue ORDER BY transaction_id LIMIT 1");
$primary->wait_for_catchup($standby);
$primary->stop('immediate');

$standby->promote;
is($standby->safe_psql($db, 'SELECT pg_is_in_recovery()'), 'f', 'promoted');
is($standby->safe_psql($db, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'consumer'"),
	'0', "promoted: the old primary's slot is gone");

# The consumer: a new slot first (so nothing committed from now on is
# missed), then the catch-up, then the new slot.
$standby->safe_psql($db, "SELECT pg_create_logical_replication_slot('consumer', 'p2pay')");
my $catch_up = events($standby->safe_psql($db,
	"SELECT line FROM p2pay.flagged_since('$since') line"));
$standby->safe_psql($db, pay_sql(6, 30));
my $after = events($standby->safe_psql($db,
	"SELECT data FROM pg_logical_slot_get_changes('consumer', NULL, NULL)"));
is(scalar @$after, 4, 'promoted: the new slot streams what commits after it');

my $flagged = flagged_on($standby);
is(scalar keys %$flagged, 17, 'promoted: 17 flagged payments in all');
is_deeply(dedup_flagged($acked, $received, $catch_up, $after),
	$flagged, 'promoted: stream and catch-up together are every flagged payment');
ok(scalar(keys %{ dedup_flagged($acked, $received, $after) }) < 17,
	'promoted: without the catch-up, payments are missing');

my %late = map { $_->{transaction_id} => $_ } @$catch_up;
my $late_id = $standby->safe_psql($db,
	"SELECT transaction_id FROM p2pay.payments WHERE created_at = '2021-01-01'");
ok(exists $late{$late_id},
	'catch-up: the payment inserted before since and committed after it');
is($late{$late_id}{created_at}, '2021-01-01T00:00:00.000000Z',
	'catch-up: with its backdated created_at');
ok((grep { $_->{commit_time} le $since } @$catch_up) == 0,
	'catch-up: every line committed after since');
is_deeply([ sort keys %{ $catch_up->[0] } ], [ sort keys %{ $acked->[0] } ],
	'catch-up: the stream\'s keys');
ok((grep { defined $_->{xid} || defined $_->{lsn} } @$catch_up) == 0,
	'catch-up: xid and lsn are null');

# Each line's fields are the row's as the stream writes them.
my %row = map { my @f = split /\|/; $f[0] => \@f } split /\n/,
  $standby->safe_psql(
	$db, q{
SELECT transaction_id, payer_id, amount::text, currency, risk_score,
       to_char(pg_xact_commit_timestamp(xmin) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
  FROM p2pay.payments});
my $mismatch = 0;
for my $e (@$catch_up)
{
	my $r = $row{ $e->{transaction_id} };
	$mismatch++
	  unless $r
	  && $e->{payer_id} eq $r->[1]
	  && $e->{amount} eq $r->[2]
	  && $e->{currency} eq $r->[3]
	  && $e->{risk_score} == $r->[4]
	  && $e->{commit_time} eq $r->[5];
}
is($mismatch, 0, 'catch-up: each line carries its row');

# ---------------------------------------------------------------------------
# d. PostgreSQL 17: a failover slot synchronized to the standby

SKIP:
{
	skip 'failover slots (sync_replication_slots) need PostgreSQL 17 or later', 8
	  if $standby->safe_psql('postgres', 'SHOW server_version_num') < 170000;

	my $p17 = P2payNode::start_node('primary17', "synchronized_standby_slots = 'standby17'\n");
	P2payNode::create_db($p17, $db);
	P2payNode::seed_row_decided($p17, $db, 12);
	$p17->safe_psql($db, $log_inserts);
	$p17->safe_psql($db, "SELECT pg_create_physical_replication_slot('standby17')");
	$p17->backup('base17');
	my $s17 = PostgreSQL::Test::Cluster->new('standby17');
	$s17->init_from_backup($p17, 'base17', has_streaming => 1);
	$s17->append_conf(
		'postgresql.conf', qq{
primary_slot_name = 'standby17'
primary_conninfo = '@{[ $p17->connstr ]} dbname=$db'
sync_replication_slots = on
hot_standby_feedback = on
# The backup brought the primary's list: promoted, the standby would hold
# its stream back for a standby17 slot it doesn't have.
synchronized_standby_slots = ''
});
	$s17->start;
	$p17->wait_for_replay_catchup($s17);

	# p2pay-forward --create-slot --failover makes the slot, and stops
	# (SIGTERM) before anything is paid; the test reads the slot in SQL.
	my $fwd = IPC::Run::start(
		[ $forwarder, '-d', $p17->connstr($db), '-S', 'consumer', '--create-slot', '--failover',
		  '--to', "${PostgreSQL::Test::Utils::tmp_check}/fwd17.out" ],
		'>', \my $fout, '2>', \my $ferr17,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	ok($p17->poll_query_until($db,
			"SELECT count(*) = 1 FROM pg_replication_slots WHERE slot_name = 'consumer'"),
		'17: p2pay-forward --create-slot --failover creates the slot');
	$fwd->signal('TERM');
	$fwd->finish;
	is($p17->safe_psql($db, "SELECT failover FROM pg_replication_slots WHERE slot_name = 'consumer'"),
		't', '17: a failover slot') or diag($ferr17);
	$p17->safe_psql($db, pay_sql(6, 1));
	my $before = events($p17->safe_psql($db,
		"SELECT data FROM pg_logical_slot_get_changes('consumer', NULL, NULL)"));
	is(scalar @$before, 4, '17: events before the promotion');
	# The standby takes the slot over once the slot has moved past what the
	# standby can keep for it: a snapshot logged on the primary and decoded
	# lets the slot advance (the consumer confirms it), and the standby's
	# copy then catches up with what the consumer confirmed.
	my $synced = '';
	for (1 .. 120)
	{
		$p17->safe_psql($db, 'SELECT pg_log_standby_snapshot()');
		push @$before, @{ events($p17->safe_psql($db,
			"SELECT data FROM pg_logical_slot_get_changes('consumer', NULL, NULL)")) };
		my $confirmed = $p17->safe_psql($db,
			"SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'consumer'");
		$p17->wait_for_replay_catchup($s17);
		$synced = $s17->safe_psql(
			$db, qq{
SELECT synced AND NOT temporary AND confirmed_flush_lsn >= '$confirmed'
  FROM pg_replication_slots WHERE slot_name = 'consumer'});
		last if $synced eq 't';
		sleep 1;
	}
	is($synced, 't', '17: the failover slot is synchronized to the standby');
	# Payments the consumer has not read when the primary stops.
	$p17->safe_psql($db, pay_sql(6, 10));
	$p17->wait_for_replay_catchup($s17);
	$p17->stop('immediate');
	$s17->promote;
	$s17->safe_psql($db, pay_sql(6, 20));
	my $after17 = events($s17->safe_psql($db,
		"SELECT data FROM pg_logical_slot_get_changes('consumer', NULL, NULL)"));
	ok(scalar @$after17 >= 8, '17: the slot streams on the promoted standby');
	my $flagged17 = flagged_on($s17);
	is(scalar keys %$flagged17, 12, '17: 12 flagged payments in all');
	is_deeply(dedup_flagged($before, $after17), $flagged17,
		'17: the events before and after the promotion are every flagged payment');
	my %b = map { $_->{transaction_id} => 1 } @$before;
	is((grep { !$b{ $_->{transaction_id} } } @$after17), 8,
		'17: after the promotion, what the consumer had not confirmed, and the new payments');
}

done_testing();
