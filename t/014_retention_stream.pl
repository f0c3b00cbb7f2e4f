# t/014_retention_stream.pl: archiving and partitions on the stream as a
# consumer reads it through the walsender (pg_recvlogical), which decodes
# every transaction in one process and finds p2pay.payments through the
# catalogs with decoding's historic snapshot.
#
# a. With p2pay.payments as the extension makes it: payments archived by
#    the owner (p2pay.delete_mode = archive) are no events, a reversal is
#    a deleted event, and a transaction that archived after a savepoint it
#    rolled back to, then reversed, streams the reversal.
# b. With p2pay.payments partitioned by hand (the extension's table set
#    aside, a partitioned table of the same columns in its place, one
#    partition with its columns in another order, one partitioned again):
#    inserts, an update and a delete of the partitions are payment events
#    read by column name; a TRUNCATE of a partition is none, of
#    p2pay.payments one truncated event; a leaf below a partitioned table
#    stops being payments when that table is detached.
use strict;
use warnings;

use lib 't/lib';

use IPC::Run;
use JSON::PP;
use P2payNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $db = 'p2pay_retention';
my $node = P2payNode::new_node('retention', $db);
P2payNode::seed_users($node, $db, 3);

sub query { return $node->safe_psql($db, $_[0]); }

query("SELECT 'created' FROM pg_create_logical_replication_slot('retention', 'p2pay')");

# a. The extension's own payments.  tid(n) names payment n.
query(q{
CREATE FUNCTION public.tid(integer) RETURNS uuid LANGUAGE sql IMMUTABLE STRICT
  AS $$ SELECT ('aaaaaaaa-0000-4000-8000-' || lpad($1::text, 12, '0'))::uuid $$;
INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency,
                            payment_method_id, created_at)
  SELECT tid(n), uid(1), uid(2), 10 * n, 'USD', '00000000-0000-4000-8000-000000000001',
         '2026-01-01 10:00+00'::timestamptz + n * interval '1 day'
    FROM generate_series(1, 6) n;
});
query(q{
BEGIN;
SET LOCAL p2pay.delete_mode = archive;
DELETE FROM p2pay.payments WHERE transaction_id IN (tid(1), tid(2));
COMMIT;
});
query('DELETE FROM p2pay.payments WHERE transaction_id = tid(3)');
query(q{
BEGIN;
SET LOCAL p2pay.delete_mode = archive;
SAVEPOINT s;
DELETE FROM p2pay.payments WHERE transaction_id = tid(4);
ROLLBACK TO SAVEPOINT s;
SET LOCAL p2pay.delete_mode = reverse;
DELETE FROM p2pay.payments WHERE transaction_id = tid(5);
COMMIT;
});
is(query('SELECT n FROM p2pay.pair_stats'), '4',
	'a: the pair counts its archived payments, less the two reversed');

# b. p2pay.payments partitioned by hand; rows written as the trigger would
# have scored them (the table has no p2pay trigger).
query(q{
ALTER TABLE p2pay.payments RENAME TO payments_plain;
CREATE TABLE p2pay.payments (LIKE p2pay.payments_plain INCLUDING DEFAULTS)
  PARTITION BY RANGE (created_at);
CREATE TABLE p2pay.payments_2025 PARTITION OF p2pay.payments
  FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE p2pay.payments_2026 (
  gone int, decision p2pay.decision, reasons text[], risk_score double precision,
  created_at timestamptz NOT NULL, amount numeric NOT NULL, currency char(3) NOT NULL,
  payment_method_id uuid NOT NULL, payee_id uuid NOT NULL, payer_id uuid NOT NULL,
  transaction_id uuid NOT NULL, id bigint NOT NULL, is_approved boolean, amount_base numeric,
  ruleset_version bigint, shadow_reasons text[], shadow_risk_score double precision,
  shadow_decision p2pay.decision);
ALTER TABLE p2pay.payments_2026 DROP COLUMN gone;
ALTER TABLE p2pay.payments ATTACH PARTITION p2pay.payments_2026
  FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE p2pay.payments_2027 PARTITION OF p2pay.payments
  FOR VALUES FROM ('2027-01-01') TO ('2028-01-01') PARTITION BY RANGE (created_at);
CREATE TABLE p2pay.payments_2027_01 PARTITION OF p2pay.payments_2027
  FOR VALUES FROM ('2027-01-01') TO ('2027-02-01');
ALTER TABLE p2pay.payments_2025 REPLICA IDENTITY FULL;
ALTER TABLE p2pay.payments_2026 REPLICA IDENTITY FULL;
ALTER TABLE p2pay.payments_2027_01 REPLICA IDENTITY FULL;
CREATE FUNCTION public.put(n integer, at timestamptz, decision p2pay.decision) RETURNS void
LANGUAGE sql AS $$
  INSERT INTO p2pay.payments (id, transaction_id, payer_id, payee_id, amount, currency,
                              payment_method_id, created_at, risk_score, decision, reasons)
  VALUES (n, tid(n), uid(1), uid(3), 100 * n, 'EUR', '00000000-0000-4000-8000-000000000001',
          at, 0.5, decision, '{amount_limit}')
$$;
});
query(q{SELECT put(11, '2025-03-01 10:00+00', 'review')});
query(q{SELECT put(12, '2026-03-01 10:00+00', 'decline')});
query(q{SELECT put(13, '2027-01-02 10:00+00', 'review')});
query(q{UPDATE p2pay.payments SET decision = 'approve' WHERE id = 12});
query(q{DELETE FROM p2pay.payments WHERE id = 11});
query('TRUNCATE p2pay.payments_2026');
query(q{ALTER TABLE p2pay.payments DETACH PARTITION p2pay.payments_2027});
query(q{SELECT put(14, '2025-04-01 10:00+00', 'review')});
query(q{INSERT INTO p2pay.payments_2027_01 (id, transaction_id, payer_id, payee_id, amount, currency,
                                            payment_method_id, created_at, decision)
        VALUES (15, tid(15), uid(1), uid(3), 1, 'USD', '00000000-0000-4000-8000-000000000001',
                '2027-01-03', 'decline')});
query('TRUNCATE p2pay.payments');
my $endpos = query('SELECT pg_current_wal_lsn()');

my $file = $node->basedir . '/retention.jsonl';
my ($out, $err) = ('', '');
my $h = IPC::Run::run(
	[
		$node->installed_command('pg_recvlogical'), '-d', $node->connstr($db),
		'-S', 'retention', '--start', '--endpos', $endpos, '-f', $file,
		'-o', 'include-approved=true', '-o', 'include-lsn=false', '-o', 'include-timestamp=false'
	],
	'>', \$out, '2>', \$err,
	IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
ok($h, 'pg_recvlogical stops at --endpos') or diag($err);

my @events = map { decode_json($_) } split /\n/, slurp_file($file);
my @seen = map {
	my $e = $_;
	my $id = defined $e->{transaction_id} ? substr($e->{transaction_id}, -2) + 0 : '-';
	"$e->{event} $id" . (defined $e->{amount} ? " $e->{amount}" : '')
} @events;
is_deeply(
	\@seen,
	[
		'approved 1 10', 'approved 2 20', 'approved 3 30', 'approved 4 40', 'approved 5 50',
		'approved 6 60',
		'deleted 3 30',
		'deleted 5 50',
		'flagged 11 1100', 'flagged 12 1200', 'flagged 13 1300',
		'decision_changed 12 1200',
		'deleted 11 1100',
		'flagged 14 1400',
		'truncated -',
	],
	'the stream: archived deletes, partition truncates and a detached partition emit nothing'
) or diag(join("\n", @seen));
is($events[-1]{table}, 'p2pay.payments', 'truncated names p2pay.payments');
my ($changed) = grep { $_->{event} eq 'decision_changed' } @events;
is_deeply(
	[ @{$changed}{qw(old_decision decision currency payee_id)} ],
	[ 'decline', 'approve', 'EUR', '00000000-0000-4000-8000-000000000003' ],
	'a partition with its columns in another order is read by column name');
unlike(slurp_file($node->logfile), qr/TRAP:|terminated by signal/,
	'no assertion failure or crash in the server log');

done_testing();
