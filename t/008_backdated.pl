# t/008_backdated.pl: the per-account state equals a recount of the
# payments however they arrive.
#
# Four pgbench clients at once insert payments among six accounts, each
# dated at random up to 40 days back, so that most pairs get payments
# older than their last one, on days with and without one of theirs; one
# transaction in ten deletes, either one payment or a pair's payments of a
# UTC day in one statement.  Afterwards account_stats, pair_stats,
# account_daily must hold, row for row, what
# p2pay.rebuild_state() counts from the payments that remain.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/lib";

use IPC::Run;
use P2payNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $db      = 'p2pay_backdated';
my $BANK    = '00000000-0000-4000-8000-000000000001';
my $USERS   = 6;
my $CLIENTS = 4;
my $XACTS   = 300;    # per client

my $node = P2payNode::new_node('backdated', $db);
sub query { return $node->safe_psql($db, $_[0]); }
P2payNode::seed_users($node, $db, $USERS);
query('CREATE TABLE public.deleted (id bigint)');

# payee: any account but the payer; created_at: up to 40 days back, to the
# millisecond; amounts up to 2000, so that the large-payment reads run too.
my $pick = qq{
\\set payer random(1, $USERS)
\\set payee 1 + (:payer + random(0, $USERS - 2)) % $USERS
};
my $insert = $node->basedir . '/insert.sql';
append_to_file(
	$insert, qq{$pick
\\set back random(0, 40 * 86400 * 1000)
\\set amount random(1, 2000)
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
VALUES (uid(:payer), uid(:payee), :amount, 'USD', '$BANK',
        now() - :back * interval '1 millisecond');
});
my $delete_one = $node->basedir . '/delete_one.sql';
append_to_file(
	$delete_one, qq{$pick
WITH gone AS (
  DELETE FROM p2pay.payments
   WHERE id = (SELECT id FROM p2pay.payments WHERE payer_id = uid(:payer)
                ORDER BY random() LIMIT 1)
  RETURNING id)
INSERT INTO public.deleted SELECT id FROM gone;
});
my $delete_day = $node->basedir . '/delete_day.sql';
append_to_file(
	$delete_day, qq{$pick
\\set back random(0, 40)
WITH gone AS (
  DELETE FROM p2pay.payments
   WHERE payer_id = uid(:payer) AND payee_id = uid(:payee)
     AND created_at >= date_trunc('day', now() - :back * interval '1 day', 'UTC')
     AND created_at < date_trunc('day', now() - :back * interval '1 day', 'UTC') + interval '1 day'
  RETURNING id)
INSERT INTO public.deleted SELECT id FROM gone;
});

# A deadlock between payments that lock more than their two accounts (see
# "Concurrency" in docs/internals.md) is retried, as an application would.
my ($out, $err) = ('', '');
my $h = IPC::Run::start(
	[
		'pgbench', '-n', '-c', $CLIENTS, '-j', $CLIENTS, '-t', $XACTS,
		'--max-tries=10',
		'-f', "$insert\@18", '-f', "$delete_one\@1", '-f', "$delete_day\@1",
		$node->connstr($db)
	],
	'>', \$out, '2>', \$err,
	IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
$h->finish;
is($h->result(0), 0, 'pgbench exits 0') or diag("stdout:\n$out\nstderr:\n$err");
my $xacts = $CLIENTS * $XACTS;
like(
	$out,
	qr{number of transactions actually processed: $xacts/$xacts\n},
	"pgbench ran all $xacts transactions");
like($out, qr{number of failed transactions: 0 }, 'no transaction failed');
unlike($err, qr/ERROR|aborted/, 'no client got an error');
note(join("\n", grep { /^(number of failed|number of transactions retried|total number of retries)/ } split /\n/, $out));

# What the run made: payments that came after a payment of their pair
# dated on a later day (the ones the pair's last time alone would count
# wrong), and deletes.
my ($payments, $backdated, $deleted) = split /\|/, query(
	q{
SELECT (SELECT count(*) FROM p2pay.payments),
       (SELECT count(*) FROM p2pay.payments p
         WHERE EXISTS (SELECT 1 FROM p2pay.payments q
                        WHERE q.payer_id = p.payer_id AND q.payee_id = p.payee_id
                          AND q.id < p.id
                          AND q.created_at >= date_trunc('day', p.created_at, 'UTC') + interval '1 day')),
       (SELECT count(*) FROM public.deleted)});
note("$payments payments stored, $backdated of them inserted after a later day's payment of their pair, $deleted deleted");
cmp_ok($backdated, '>', 0, 'some payments came after a later one of their pair');
cmp_ok($deleted, '>', 0, 'some payments were deleted');

# The state as kept, then as rebuild_state() counts it.
P2payNode::state_vs_recount($node, $db, 'after out-of-order inserts and deletes');

done_testing();
