# t/003_stream.pl: the flagged-payment stream as a consumer sees it through
# pg_recvlogical and the replication protocol.
#
# a. A live pg_recvlogical consumer follows a mixed workload: approved and
#    flagged payments, single and multi-row inserts, INSERT ... SELECT large
#    enough to spill to disk, COPY, payments kept or undone by savepoints,
#    decision changes, deletes, a TRUNCATE, aborted transactions with
#    flagged payments (by ROLLBACK and by an error, small and spilled, one
#    held open across other commits), and transactions that touch only
#    other tables.  Each payment's decision as inserted is recorded by an
#    AFTER INSERT trigger, so the test knows every committed flagged
#    payment.  The consumer gets each of them exactly once and no approved
#    one (deletes and decision changes are events of their own, whatever
#    the decision), nothing of the rolled-back work, every line valid JSON with the
#    documented keys and the row's values, and the events in commit order:
#    a payment inserted first by a transaction that commits second arrives
#    second.  The whole stream is compared with the one the workload
#    implies, event by event.
# b. With the consumer running, a workload of only approved payments and
#    other tables' rows emits nothing, and the slot's confirmed_flush_lsn
#    still moves past it (then restart_lsn too): a quiet stream doesn't
#    hold WAL back.
# c. Plugin options pass through pg_recvlogical (-o): min-decision=decline
#    streams only declines, include-approved=true streams approved payments
#    as "approved" events, the include-* options drop the position fields,
#    and a bad option makes pg_recvlogical fail with the plugin's message.
#    These consumers read slots created with the first one and stop by
#    themselves at --endpos.
# d. Through the walsender, a decision change after the payment's reasons
#    went out of line in TOAST carries them whole.  With the replica
#    identity changed (and p2pay's triggers off), a delete is still
#    streamed, with null for what the WAL doesn't hold; the WARNING that
#    names the payment reaches pg_recvlogical and the server log, and the
#    stream goes on.
use strict;
use warnings;

use lib 't/lib';

use IPC::Run;
use JSON::PP;
use List::Util qw(max);
use P2payNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $db = 'p2pay_stream';

my $BANK = '00000000-0000-4000-8000-000000000001';    # registered by everyone
my $CARD = '00000000-0000-4000-8000-000000000002';    # registered by no one

# A small logical_decoding_work_mem makes the large transactions below
# spill to disk, the path a busy server takes.
my $node = P2payNode::new_node('stream', $db, "logical_decoding_work_mem = 64kB\n");

P2payNode::seed_row_decided($node, $db, 40);
$node->safe_psql(
	$db, qq{

-- Every payment as inserted, in the inserting transaction: what a consumer
-- must be told about it.
CREATE TABLE public.inserted (
  seq bigserial PRIMARY KEY,
  xid bigint NOT NULL,
  transaction_id uuid NOT NULL,
  payer_id uuid, payee_id uuid, amount text, currency text,
  payment_method_id uuid, created_at text, risk_score double precision,
  decision text, reasons text[]);
CREATE FUNCTION public.log_insert() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO public.inserted (xid, transaction_id, payer_id, payee_id, amount,
                               currency, payment_method_id, created_at, risk_score,
                               decision, reasons)
  VALUES (pg_current_xact_id()::text::bigint, NEW.transaction_id, NEW.payer_id,
          NEW.payee_id, NEW.amount::text, NEW.currency, NEW.payment_method_id,
          to_char(NEW.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
          NEW.risk_score, NEW.decision::text, NEW.reasons);
  RETURN NULL;
END \$\$;
CREATE TRIGGER zz_log AFTER INSERT ON p2pay.payments
  FOR EACH ROW EXECUTE FUNCTION public.log_insert();

CREATE TABLE public.scratch (id serial PRIMARY KEY, note text);
});

# One slot per consumer, all created before the workload so that each sees
# all of it.
for my $slot (qw(main decline approved bad))
{
	$node->safe_psql($db,
		"SELECT 'created' FROM pg_create_logical_replication_slot('$slot', 'p2pay')");
}

my $basedir = $node->basedir;
my $recvlogical = $node->installed_command('pg_recvlogical');

# pg_recvlogical on SLOT writing FILE, with extra arguments; started in the
# background.  -s 1 and -F 1: report and fsync every second.
sub start_consumer
{
	my ($slot, $file, @args) = @_;
	my %c = (out => '', err => '', file => $file);
	$c{h} = IPC::Run::start(
		[
			$recvlogical, '-d', $node->connstr($db), '-S', $slot, '--start',
			'-f', $file, '-s', '1', '-F', '1', @args
		],
		'>', \$c{out}, '2>', \$c{err},
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return \%c;
}

# Run pg_recvlogical on SLOT until it stops by itself; returns the consumer.
sub run_consumer
{
	my $c = start_consumer(@_);
	$c->{h}->finish;
	$c->{rc} = $c->{h}->result(0);
	return $c;
}

# The lines a consumer wrote so far.
sub lines_of
{
	my ($file) = @_;
	return () unless -e $file;
	return split /\n/, slurp_file($file);
}

sub query { return $node->safe_psql($db, $_[0]); }

sub wal_lsn { return query('SELECT pg_current_wal_lsn()'); }

# Wait until SLOT has confirmed LSN (or until the default timeout).
sub slot_confirms
{
	my ($slot, $lsn) = @_;
	return $node->poll_query_until($db,
		"SELECT confirmed_flush_lsn >= '$lsn' FROM pg_replication_slots WHERE slot_name = '$slot'"
	);
}

###########################################################################
# The workload.  Transaction ids are built from the order in which their
# transactions commit ("step") and a running number, so the order of
# events a consumer must receive is known: every committed change, in
# commit order, and in statement order within a transaction.
###########################################################################
# The live consumer: default options, running through the whole workload.
my $main = start_consumer('main', "$basedir/main.jsonl");

my $n = 0;
my $step = 0;
my @actions;       # committed changes to payments, in commit order
my @undone;        # transaction ids of payments that were rolled back

sub tid { return sprintf('%08d-0000-4000-8000-%012d', $_[0], ++$n); }

# A payment of the given kind (approve, review, decline) in a VALUES list.
my %amount = (approve => ['25.50', 'USD', $BANK], review => ['12000', 'USD', $BANK],
	review_eur => ['9999.99', 'EUR', $BANK], decline => ['40', 'USD', $CARD]);

sub row
{
	my ($tid, $payer, $payee, $kind) = @_;
	my ($amt, $cur, $method) = @{ $amount{$kind} };
	return "('$tid', uid($payer), uid($payee), $amt, '$cur', '$method')";
}

# An INSERT of payments [kind, payer, payee] in transaction step S; returns
# the statement and the transaction ids, in row order.
sub insert_payments
{
	my ($s, @rows) = @_;
	my (@tids, @values);
	for my $r (@rows)
	{
		my $tid = tid($s);
		push @tids, $tid;
		push @values, row($tid, $r->[1], $r->[2], $r->[0]);
	}
	my $sql =
	  "INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency, payment_method_id) VALUES "
	  . join(', ', @values) . ";\n";
	return ($sql, @tids);
}

sub committed { push @actions, map { { kind => 'insert', tid => $_ } } @_; }

my ($sql, @t, @u);

# 1. A transaction that touches only other tables.
$step++;
query("INSERT INTO p2pay.users (id, created_at) VALUES (uid(41), '2020-01-01');
       INSERT INTO public.scratch (note) VALUES ('hello')");

# 2, 3. One flagged payment, then one approved.
($sql, @t) = insert_payments(++$step, ['review', 1, 2]);
query($sql);
committed(@t);
my $first_review = $t[0];
($sql, @t) = insert_payments(++$step, ['approve', 1, 2]);
query($sql);
committed(@t);
my $first_approve = $t[0];

# 4. A multi-row insert of every kind, among writes to other tables.
($sql, @t) = insert_payments(
	++$step,
	[ 'approve', 3, 4 ], [ 'review', 3, 4 ], [ 'decline', 3, 5 ],
	[ 'approve', 5, 3 ], [ 'decline', 5, 4 ], [ 'review_eur', 4, 3 ]);
query("BEGIN;
INSERT INTO p2pay.users (id, created_at) VALUES (uid(42), '2020-01-01');
$sql
UPDATE p2pay.users SET last_name = 'updated' WHERE id = uid(42);
COMMIT;");
committed(@t);
my @multi = @t;

# An aborted transaction with flagged payments: nothing of it is streamed.
($sql, @t) = insert_payments($step + 1,
	[ 'review', 6, 7 ], [ 'decline', 6, 7 ], [ 'decline', 7, 6 ]);
query("BEGIN;
$sql
INSERT INTO public.scratch (note) VALUES ('rolled back');
ROLLBACK;");
push @undone, @t;

# A transaction aborted by an error after two flagged payments.
($sql, @t) = insert_payments($step + 1, [ 'decline', 8, 9 ], [ 'review', 9, 8 ]);
my ($ret, undef, $stderr) = $node->psql(
	$db, "BEGIN;
$sql
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
  VALUES (uid(8), uid(8), 10, 'USD', '$BANK');
COMMIT;");
isnt($ret, 0, 'workload: a payment to oneself aborts its transaction');
like($stderr, qr/must differ/, 'workload: ... with the trigger\'s error');
push @undone, @t;

# 5. Savepoints: a payment undone by ROLLBACK TO is not streamed, the ones
# kept by the transaction (including one in a released savepoint) are.
$step++;
($sql, @t) = insert_payments($step, [ 'review', 10, 11 ]);
my ($sql2, @t2) = insert_payments($step, [ 'decline', 10, 11 ]);
my ($sql3, @t3) = insert_payments($step, [ 'decline', 11, 10 ], [ 'approve', 11, 10 ]);
my ($sql4, @t4) = insert_payments($step, [ 'review_eur', 12, 10 ]);
query("BEGIN;
$sql
SAVEPOINT a;
$sql2
ROLLBACK TO SAVEPOINT a;
$sql3
SAVEPOINT b;
$sql4
RELEASE SAVEPOINT b;
COMMIT;");
committed(@t, @t3, @t4);
push @undone, @t2;

# 6, 7. Commit order: session A inserts a flagged payment first but commits
# after session B, which inserts and commits in between.  Session C holds a
# transaction with flagged payments open across both and rolls it back.
# The sessions use disjoint accounts: the trigger locks a payment's
# accounts until the transaction ends.
my $sA = $node->background_psql($db);
my $sB = $node->background_psql($db);
my $sC = $node->background_psql($db);
my $step_b = ++$step;
my $step_a = ++$step;
my ($a1_sql, $a1) = insert_payments($step_a, [ 'review', 21, 22 ]);
$sA->query_safe('BEGIN');
$sA->query_safe($a1_sql);
($sql, @u) = insert_payments($step_a + 1000, [ 'decline', 25, 26 ], [ 'review', 26, 25 ]);
$sC->query_safe('BEGIN');
$sC->query_safe($sql);
push @undone, @u;
my ($b_sql, $b1, $b2) = insert_payments($step_b, [ 'decline', 23, 24 ], [ 'approve', 24, 23 ]);
$sB->query_safe('BEGIN');
$sB->query_safe($b_sql);
$sB->query_safe('COMMIT');
committed($b1, $b2);
my ($a2_sql, $a2) = insert_payments($step_a, [ 'decline', 22, 21 ]);
$sA->query_safe($a2_sql);
$sC->query_safe('ROLLBACK');
$sA->query_safe('COMMIT');
committed($a1, $a2);
$_->quit for ($sA, $sB, $sC);

# 8. Decision changes, in one transaction and alone: review -> approve,
# approve -> decline, a change of reasons only (no event), decline ->
# review, approve -> approve (no event), approve -> review.
$step++;
query("BEGIN;
UPDATE p2pay.payments SET decision = 'approve' WHERE transaction_id = '$first_review';
UPDATE p2pay.payments SET decision = 'decline' WHERE transaction_id = '$first_approve';
UPDATE p2pay.payments SET reasons = reasons || '{noted}'::text[] WHERE transaction_id = '$multi[1]';
COMMIT;");
push @actions,
  { kind => 'update', tid => $first_review, new => 'approve' },
  { kind => 'update', tid => $first_approve, new => 'decline' };
$step++;
query("UPDATE p2pay.payments SET decision = 'review' WHERE transaction_id = '$multi[2]'");
push @actions, { kind => 'update', tid => $multi[2], new => 'review' };
$step++;
query("UPDATE p2pay.payments SET decision = 'approve' WHERE transaction_id = '$multi[0]'");
push @actions, { kind => 'update', tid => $multi[0], new => 'approve' };
$step++;
query("UPDATE p2pay.payments SET decision = 'review' WHERE transaction_id = '$multi[3]'");
push @actions, { kind => 'update', tid => $multi[3], new => 'review' };

# 9. Deletes: a flagged payment and an approved one, in one transaction.
$step++;
query("BEGIN;
DELETE FROM p2pay.payments WHERE transaction_id = '$multi[4]';
DELETE FROM p2pay.payments WHERE transaction_id = '$b2';
COMMIT;");
push @actions, { kind => 'delete', tid => $multi[4] }, { kind => 'delete', tid => $b2 };

# 10. Only other tables: many rows (past the plugin's progress interval), a
# TRUNCATE of another table, DDL, a configuration write.
$step++;
query("INSERT INTO public.scratch (note) SELECT 'row ' || g FROM generate_series(1, 500) g;
TRUNCATE public.scratch;
ALTER TABLE public.scratch ADD COLUMN extra int;
UPDATE p2pay.settings SET review_threshold = review_threshold;");

# An INSERT ... SELECT of payments for transaction step S: NUM rows, every
# third one approved, review, decline (or all approved); payers 1-10,
# payees 11-20.
sub bulk_sql
{
	my ($s, $num, $all_approved) = @_;
	my $amount = $all_approved ? '12.5' : 'CASE i % 3 WHEN 1 THEN 12.5 WHEN 2 THEN 15000 ELSE 30 END';
	my $method = $all_approved ? "'$BANK'::uuid" : "CASE i % 3 WHEN 0 THEN '$CARD'::uuid ELSE '$BANK'::uuid END";
	my $first = $n + 1;
	my @tids = map { tid($s) } 1 .. $num;
	my $sql = qq{
INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency, payment_method_id)
SELECT (lpad('$s', 8, '0') || '-0000-4000-8000-' || lpad(($first + i - 1)::text, 12, '0'))::uuid,
       uid(1 + i % 10), uid(11 + i % 10),
       $amount, 'USD', $method
  FROM generate_series(1, $num) i ORDER BY i;
};
	return ($sql, @tids);
}

# 11. A large transaction (spilled to disk) of every kind, then a large
# aborted one.
($sql, @t) = bulk_sql(++$step, 400);
query($sql);
committed(@t);
($sql, @t) = bulk_sql($step + 1, 300);
query("BEGIN; $sql ROLLBACK;");
push @undone, @t;

# 12. COPY.
$step++;
my @copy = map { tid($step) } 1 .. 3;
my $copydata = join('',
	"$copy[0]\t00000000-0000-4000-8000-000000000031\t00000000-0000-4000-8000-000000000032\t20000\tUSD\t$BANK\n",
	"$copy[1]\t00000000-0000-4000-8000-000000000032\t00000000-0000-4000-8000-000000000031\t1\tUSD\t$BANK\n",
	"$copy[2]\t00000000-0000-4000-8000-000000000031\t00000000-0000-4000-8000-000000000033\t1\tUSD\t$CARD\n");
query("COPY p2pay.payments (transaction_id, payer_id, payee_id, amount, currency, payment_method_id) FROM STDIN;
$copydata\\.
");
committed(@copy);

# 13. TRUNCATE, with another table.
$step++;
query('TRUNCATE p2pay.payments, public.scratch');
push @actions, { kind => 'truncate' };

my $end_a = wal_lsn();

###########################################################################
# What the workload inserted, by transaction id, as the trigger decided.
###########################################################################
my %inserted;
my $json = JSON::PP->new;

sub load_inserted
{
	%inserted = ();
	for my $line (split /\n/, query(
			"SELECT json_build_object('xid', xid, 'transaction_id', transaction_id,
			   'payer_id', payer_id, 'payee_id', payee_id, 'amount', amount,
			   'currency', currency, 'payment_method_id', payment_method_id,
			   'created_at', created_at, 'risk_score', risk_score,
			   'decision', decision, 'reasons', reasons)
			   FROM public.inserted ORDER BY seq"))
	{
		my $row = $json->decode($line);
		$inserted{ $row->{transaction_id} } = $row;
	}
}
load_inserted();
my %by_decision;
$by_decision{ $_->{decision} }++ for values %inserted;
ok( $by_decision{approve} >= 100 && $by_decision{review} >= 100 && $by_decision{decline} >= 100,
	'workload: approved, review and decline payments were committed');
is(scalar(grep { exists $inserted{$_} } @undone),
	0, 'workload: no rolled-back payment is in the table');
is(scalar(keys %inserted), scalar(grep { $_->{kind} eq 'insert' } @actions),
	'workload: every payment the test committed is in the table, and no other');
my @flagged_inserted =
  sort grep { $inserted{$_}{decision} ne 'approve' } keys %inserted;

my %RANK = (approve => 0, review => 1, decline => 2);

# The events the workload implies for a consumer with these options: one
# line per event, "event transaction_id decision" (a decision change as
# "old->new"; a delete with the decision the row had).
sub expected_events
{
	my (%opt) = @_;
	my $min = $RANK{ $opt{min} // 'review' };
	my (%cur, @out);
	for my $a (@actions)
	{
		my $tid = $a->{tid} // '';
		if ($a->{kind} eq 'insert')
		{
			my $d = $cur{$tid} = $inserted{$tid}{decision};
			if ($RANK{$d} >= $min) { push @out, "flagged $tid $d"; }
			elsif ($d eq 'approve' && $opt{approved}) { push @out, "approved $tid $d"; }
		}
		elsif ($a->{kind} eq 'update')
		{
			my ($old, $new) = ($cur{$tid}, $a->{new});
			$cur{$tid} = $new;
			next if $old eq $new;
			next if max($RANK{$old}, $RANK{$new}) < $min && !$opt{approved};
			push @out, "decision_changed $tid $old->$new";
		}
		elsif ($a->{kind} eq 'delete') { push @out, "deleted $tid $cur{$tid}"; }
		else { push @out, 'truncated p2pay.payments'; }
	}
	return @out;
}

# A received event in the form of expected_events.
sub summary
{
	my ($e) = @_;
	return "truncated $e->{table}" if $e->{event} eq 'truncated';
	return "decision_changed $e->{transaction_id} $e->{old_decision}->$e->{decision}"
	  if $e->{event} eq 'decision_changed';
	return "$e->{event} $e->{transaction_id} $e->{decision}";
}

# Parse a consumer's lines; returns the events and the lines that are not
# a JSON object.
sub parse_lines
{
	my (@events, @bad);
	for my $line (@_)
	{
		my $e = eval { $json->decode($line) };
		if (ref $e eq 'HASH') { push @events, $e; }
		else { push @bad, $line; }
	}
	return (\@events, \@bad);
}

my @PAYMENT_KEYS = qw(event transaction_id payer_id payee_id amount currency
  payment_method_id created_at risk_score decision reasons);
my @POSITION_KEYS = qw(xid lsn commit_time);

# The keys an event must have.
sub keys_for
{
	my ($e, $positions) = @_;
	my @k =
	    $e->{event} eq 'truncated' ? qw(event table)
	  : $e->{event} eq 'decision_changed' ? (@PAYMENT_KEYS, 'old_decision')
	  :                                     @PAYMENT_KEYS;
	push @k, @POSITION_KEYS if $positions;
	return join(',', sort @k);
}

# The first event whose keys or values differ from the payment as
# inserted, as a message; '' when all agree.
sub check_events
{
	my ($events, $positions) = @_;
	for my $e (@$events)
	{
		my $got_keys = join(',', sort keys %$e);
		my $want_keys = keys_for($e, $positions);
		return "keys of " . summary($e) . ": $got_keys, want $want_keys"
		  if $got_keys ne $want_keys;
		next if $e->{event} eq 'truncated';
		my $row = $inserted{ $e->{transaction_id} }
		  or return "event for a payment never committed: " . summary($e);
		for my $k (qw(payer_id payee_id amount currency payment_method_id created_at))
		{
			return "$k of " . summary($e) . ": $e->{$k}, want $row->{$k}"
			  if !defined $e->{$k} || $e->{$k} ne $row->{$k};
		}
		return "risk_score of " . summary($e) . ": $e->{risk_score}, want $row->{risk_score}"
		  if $e->{risk_score} != $row->{risk_score};
		return "reasons of " . summary($e)
		  if join(',', @{ $e->{reasons} }) ne join(',', @{ $row->{reasons} });
		return "xid of " . summary($e) . ": $e->{xid}, want $row->{xid}"
		  if $positions
		  && ($e->{event} eq 'flagged' || $e->{event} eq 'approved')
		  && $e->{xid} != $row->{xid};
	}
	return '';
}

###########################################################################
# a. What the live consumer received.
###########################################################################
ok(slot_confirms('main', $end_a), 'live: the slot confirms the end of the workload');

my @main_lines = lines_of($main->{file});
my ($events, $bad) = parse_lines(@main_lines);
is_deeply($bad, [], 'live: every line is a JSON object');
my @got = map { summary($_) } @$events;
my @want = expected_events();
is_deeply(\@got, \@want,
	'live: the events are exactly the committed changes the workload implies, in commit order');

my %seen;
$seen{ $_->{transaction_id} }++ for grep { $_->{event} eq 'flagged' } @$events;
is_deeply([ sort keys %seen ], \@flagged_inserted,
	'live: the flagged events are the payments inserted as review or decline');
is(scalar(grep { $_ > 1 } values %seen), 0, 'live: each flagged payment exactly once');
is(scalar(grep { $_->{event} eq 'approved' || ($_->{event} eq 'flagged' && $_->{decision} eq 'approve') } @$events),
	0, 'live: no approved payment is streamed');
my %undone = map { $_ => 1 } @undone;
is(scalar(grep { $_->{transaction_id} && $undone{ $_->{transaction_id} } } @$events),
	0, 'live: nothing of the rolled-back payments is streamed');
is(check_events($events, 1), '',
	'live: every event has the documented keys and the payment\'s values');

# Session A's first payment was inserted before session B's, which
# committed first.
my %pos;
for my $i (0 .. $#$events)
{
	$pos{ $events->[$i]{transaction_id} } = $i if $events->[$i]{transaction_id};
}
ok( defined $pos{$a1} && defined $pos{$b1} && $pos{$b1} < $pos{$a1},
	'live: a payment inserted earlier by a transaction that commits later arrives later');
my ($a1_event) = grep { ($_->{transaction_id} // '') eq $a1 } @$events;
my ($b1_event) = grep { ($_->{transaction_id} // '') eq $b1 } @$events;
cmp_ok(lsn_num($a1_event->{lsn}), '<', lsn_num($b1_event->{lsn}),
	'live: ... although its change has the lower LSN');

sub lsn_num
{
	my ($hi, $lo) = split m{/}, $_[0];
	return hex($hi) * 2**32 + hex($lo);
}

# Positions: the events of one transaction are contiguous, share xid and
# commit time, and go forward in LSN.
my ($position_error, %done_xid, $last) = ('');
for my $e (@$events)
{
	if (   $e->{lsn} !~ m{^[0-9A-F]+/[0-9A-F]+$}
		|| $e->{commit_time} !~ /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/
		|| $e->{xid} !~ /^\d+$/)
	{
		$position_error = 'bad position fields in ' . summary($e);
		last;
	}
	if ($last && $last->{xid} == $e->{xid})
	{
		if (   $last->{commit_time} ne $e->{commit_time}
			|| lsn_num($last->{lsn}) > lsn_num($e->{lsn}))
		{
			$position_error = 'commit time or LSN order within xid ' . $e->{xid};
			last;
		}
	}
	elsif ($done_xid{ $e->{xid} }++)
	{
		$position_error = "events of xid $e->{xid} are not contiguous";
		last;
	}
	$last = $e;
}
is($position_error, '',
	'live: a transaction\'s events are contiguous, with one xid and commit time, in LSN order');

###########################################################################
# b. A quiet workload: nothing to stream, and the slot still advances.
###########################################################################
is( query("SELECT active FROM pg_replication_slots WHERE slot_name = 'main'"),
	't', 'quiet: the consumer is streaming');
my $quiet_start = wal_lsn();

my @quiet;
my @stmts;
for my $i (1 .. 20)
{
	($sql, @t) = insert_payments(++$step, map { [ 'approve', 1 + ($i + $_) % 10, 11 + $_ ] } 1 .. 5);
	push @stmts, $sql, "UPDATE p2pay.users SET last_name = 'quiet $i' WHERE id = uid($i);\n";
	push @quiet, @t;
}
query(join('', @stmts));
committed(@quiet);
($sql, @t) = bulk_sql(++$step, 300, 1);
query($sql);
committed(@t);
push @quiet, @t;
query("INSERT INTO public.scratch (note) SELECT 'quiet ' || g FROM generate_series(1, 2000) g");
$step++;
my $quiet_end = wal_lsn();

load_inserted();
is(scalar(grep { ($inserted{$_}{decision} // '') eq 'approve' } @quiet),
	scalar(@quiet), 'quiet: all ' . scalar(@quiet) . ' payments are approved');

ok(slot_confirms('main', $quiet_end),
	'quiet: confirmed_flush_lsn moves past the quiet workload');
is(scalar(lines_of($main->{file})), scalar(@main_lines),
	'quiet: nothing was streamed for it');
# A checkpoint logs the running transactions, which gives the slot a new
# restart point once the consumer confirms past it.
query('CHECKPOINT');
ok( $node->poll_query_until(
		$db,
		"SELECT restart_lsn >= '$quiet_start' FROM pg_replication_slots WHERE slot_name = 'main'"),
	'quiet: restart_lsn moves past the start of the quiet workload (WAL is released)');

$main->{h}->signal('INT');
$main->{h}->finish;
is($main->{h}->result(0), 0, 'live: pg_recvlogical stops cleanly on SIGINT')
  or diag("pg_recvlogical stderr:\n$main->{err}");

###########################################################################
# c. Options through pg_recvlogical, on slots created before the workload,
# up to the end of the quiet workload (--endpos).
###########################################################################
my @no_positions = ('-o', 'include-xids=0', '-o', 'include-lsn=0', '-o', 'include-timestamp=0');

my $decline = run_consumer('decline', "$basedir/decline.jsonl", '-E', $quiet_end, '-n',
	'-o', 'min-decision=decline', @no_positions);
is($decline->{rc}, 0, 'min-decision=decline: pg_recvlogical stops at --endpos')
  or diag("stderr:\n$decline->{err}");
($events, $bad) = parse_lines(lines_of($decline->{file}));
is_deeply($bad, [], 'min-decision=decline: every line is a JSON object');
is_deeply([ map { summary($_) } @$events ], [ expected_events(min => 'decline') ],
	'min-decision=decline: only declines (and their changes, deletes, the truncate)');
is(scalar(grep { $_->{event} eq 'flagged' && $_->{decision} ne 'decline' } @$events),
	0, 'min-decision=decline: no flagged event is a review');
is(check_events($events, 0), '',
	'min-decision=decline: without the position fields, the documented keys and values');

my $approved = run_consumer('approved', "$basedir/approved.jsonl", '-E', $quiet_end, '-n',
	'-o', 'include-approved=true', @no_positions);
is($approved->{rc}, 0, 'include-approved=true: pg_recvlogical stops at --endpos')
  or diag("stderr:\n$approved->{err}");
($events, $bad) = parse_lines(lines_of($approved->{file}));
is_deeply($bad, [], 'include-approved=true: every line is a JSON object');
is_deeply([ map { summary($_) } @$events ], [ expected_events(approved => 1) ],
	'include-approved=true: every committed payment, approved ones as "approved" events');
my %approved_seen = map { $_->{transaction_id} => 1 } grep { $_->{event} eq 'approved' } @$events;
is(scalar(grep { $approved_seen{$_} } @quiet), scalar(@quiet),
	'include-approved=true: the quiet workload\'s payments are there');
is(check_events($events, 0), '', 'include-approved=true: the documented keys and values');

# Bad options: pg_recvlogical fails (--no-loop, or it would retry forever)
# with the plugin's message, and the slot is still usable.
my %bad_options = (
	'min-decision=high' => qr/option "min-decision" of output plugin p2pay must be "review" or "decline"/,
	'include-approved=maybe' => qr/option "include-approved" of output plugin p2pay must be a boolean/,
	'format-version=2' => qr/output plugin p2pay has no format version "2"/,
	'pretty=true' => qr/output plugin p2pay has no option "pretty"/);
for my $opt (sort keys %bad_options)
{
	my $c = run_consumer('bad', "$basedir/bad.jsonl", '-n', '-o', $opt);
	isnt($c->{rc}, 0, "bad option $opt: pg_recvlogical fails");
	like($c->{err}, $bad_options{$opt}, "bad option $opt: with the plugin's message");
}
ok(!-s "$basedir/bad.jsonl", 'bad options: nothing was streamed');
my $good = run_consumer('bad', "$basedir/bad.jsonl", '-n', '-E', $end_a);
is($good->{rc}, 0, 'bad options: the slot then streams with good ones')
  or diag("stderr:\n$good->{err}");
is_deeply([ map { summary($_) } @{ (parse_lines(lines_of("$basedir/bad.jsonl")))[0] } ],
	[ expected_events() ], 'bad options: ... from where it was');

###########################################################################
# d. Values the WAL record of a change doesn't hold.
###########################################################################
query("SELECT 'created' FROM pg_create_logical_replication_slot('identity', 'p2pay')");
my ($big, $keyed, $after) = split /\n/,
  query("SELECT transaction_id FROM p2pay.payments WHERE decision <> 'decline' ORDER BY id LIMIT 3");
# The table that holds the keyed payment (payments, or its partition on a
# partitioned payments: a partition's WAL records carry its own identity),
# and its unique index led by transaction_id.
my ($holder, $key_index) = split /\|/, query(qq{
SELECT c.oid::regclass, quote_ident(ix.relname)
  FROM p2pay.payments p JOIN pg_class c ON c.oid = p.tableoid
  JOIN pg_index i ON i.indrelid = c.oid AND i.indisunique
  JOIN pg_class ix ON ix.oid = i.indexrelid
 WHERE p.transaction_id = '$keyed'
   AND i.indkey[0] = (SELECT attnum FROM pg_attribute
                       WHERE attrelid = c.oid AND attname = 'transaction_id')});
query(qq{
UPDATE p2pay.payments SET reasons = ARRAY(SELECT md5(i::text) FROM generate_series(1, 1000) i)
 WHERE transaction_id = '$big';
UPDATE p2pay.payments SET decision = 'decline' WHERE transaction_id = '$big';
ALTER TABLE p2pay.payments DISABLE TRIGGER USER;
ALTER TABLE $holder REPLICA IDENTITY USING INDEX $key_index;
DELETE FROM p2pay.payments WHERE transaction_id = '$keyed';
ALTER TABLE $holder REPLICA IDENTITY FULL;
ALTER TABLE p2pay.payments ENABLE TRIGGER USER;
UPDATE p2pay.payments SET decision = 'decline' WHERE transaction_id = '$after';
});
my $end_d = wal_lsn();
my $log_offset = -s $node->logfile;

my $identity = run_consumer('identity', "$basedir/identity.jsonl", '-n', '-E', $end_d,
	@no_positions);
is($identity->{rc}, 0, 'identity: pg_recvlogical stops at --endpos')
  or diag("stderr:\n$identity->{err}");
($events, $bad) = parse_lines(lines_of($identity->{file}));
is_deeply($bad, [], 'identity: every line is a JSON object');
is_deeply(
	[ map { "$_->{event} $_->{transaction_id}" } @$events ],
	[ "decision_changed $big", "deleted $keyed", "decision_changed $after" ],
	'identity: the decision changes and the delete, in order');
is_deeply($events->[0]{reasons},
	[ split /,/, query("SELECT array_to_string(reasons, ',') FROM p2pay.payments WHERE transaction_id = '$big'") ],
	'identity: reasons left in TOAST by the decision change are streamed whole');
is_deeply(
	[ map { $events->[1]{$_} } qw(payer_id amount decision reasons) ],
	[ undef, undef, undef, undef ],
	'identity: the delete under a key identity has null for the columns not in the key');
like(
	$identity->{err},
	qr/WARNING:  deleted event of payment \Q$keyed\E is missing payer_id, payee_id, amount/,
	'identity: pg_recvlogical gets the warning that names the payment');
like(
	substr(slurp_file($node->logfile), $log_offset),
	qr/WARNING:  deleted event of payment \Q$keyed\E is missing payer_id.*\n.*\n.*HINT:  .*REPLICA IDENTITY FULL/,
	'identity: the server log has it, with the hint to restore REPLICA IDENTITY FULL');

$node->stop;
done_testing();
