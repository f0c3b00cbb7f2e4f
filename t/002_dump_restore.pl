# t/002_dump_restore.pl: pg_dump keeps everything p2pay holds, and a restore
# done as the extension's script documents (a plain dump fed to psql with
# session_replication_role = replica) brings back the configuration, the
# payments as they were scored, and the per-account state, so that the next
# payment is scored exactly as it would have been in the original database.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $BANK   = '00000000-0000-4000-8000-000000000001';    # seeded methods
my $CARD   = '00000000-0000-4000-8000-000000000002';
my $WALLET = '00000000-0000-4000-8000-0000000000aa';    # added below

# The users: A pays B and C, B pays A back, D paid B hours ago, C is blocked.
my %u = (
	A => '00000000-0000-4000-8000-00000000000a',
	B => '00000000-0000-4000-8000-00000000000b',
	C => '00000000-0000-4000-8000-00000000000c',
	D => '00000000-0000-4000-8000-00000000000d');

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql(
	'src', qq{
CREATE EXTENSION p2pay;

-- Configuration: one rule's limit, another's weight, a rule switched off,
-- the review threshold, a new currency and rate, a new payment method.
UPDATE p2pay.rules SET params = params || '{"max_count": 3}'
 WHERE name = 'payer_velocity_count';
UPDATE p2pay.rules SET weight = 0.28 WHERE name = 'unregistered_method';
UPDATE p2pay.rules SET weight = 0.3 WHERE name = 'amount_deviation';
UPDATE p2pay.rules SET enabled = false WHERE name = 'new_account_high_amount';
UPDATE p2pay.settings SET review_threshold = 0.25;
INSERT INTO p2pay.currencies (code, name, rate_to_base) VALUES ('GBP', 'Pound sterling', 1.25);
UPDATE p2pay.currencies SET rate_to_base = 1.10 WHERE code = 'EUR';
INSERT INTO p2pay.payment_methods (id, name) VALUES ('$WALLET', 'Wallet');

INSERT INTO p2pay.users (id, first_name, last_name, email_address) VALUES
  ('$u{A}', 'Ada', 'A', 'ada\@example.com'),
  ('$u{B}', 'Ben', 'B', 'ben\@example.com'),
  ('$u{C}', 'Cy', 'C', NULL),
  ('$u{D}', 'Di', 'D', NULL);
INSERT INTO p2pay.user_payment_methods (user_id, payment_method_id, details) VALUES
  ('$u{A}', '$BANK', 'IBAN A'), ('$u{A}', '$WALLET', 'wallet A'),
  ('$u{B}', '$BANK', 'IBAN B'), ('$u{D}', '$BANK', 'IBAN D');
INSERT INTO p2pay.blocklist (user_id, reason) VALUES ('$u{C}', 'chargeback fraud');

-- A pays B five times (the 4th and 5th pass max_count 3), then blocked C.
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
  SELECT '$u{A}', '$u{B}', 10 * g, 'USD', '$BANK' FROM generate_series(1, 5) g;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
  VALUES ('$u{A}', '$u{C}', 10, 'USD', '$WALLET');
-- B pays A back in euros with a method B has not registered (score 0.28).
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
  VALUES ('$u{B}', '$u{A}', 100, 'EUR', '$CARD');
-- D paid B 19000 hours ago, in four other hour buckets, oldest first.
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
  SELECT '$u{D}', '$u{B}', 3800, 'GBP', '$BANK', now() - g * interval '1 hour'
    FROM generate_series(5, 2, -1) g;
});

# The scored history the restore must keep.
is( $node->safe_psql(
		'src', qq{
SELECT p.payer_id = '$u{A}', p.payee_id = '$u{C}', round(p.risk_score::numeric, 4)::float8,
       p.decision, p.reasons
  FROM p2pay.payments p ORDER BY p.id}),
	join("\n",
		't|f|0|approve|{}',
		't|f|0|approve|{}',
		't|f|0|approve|{}',
		't|f|0.4|review|{payer_velocity_count}',
		't|f|0.4|review|{payer_velocity_count}',
		't|t|1|decline|{payer_velocity_count,blocklist}',
		'f|f|0.28|review|{unregistered_method}',
		'f|f|0.3|review|{young_payee_high_amount}',
		'f|f|0|approve|{}',
		'f|f|0|approve|{}',
		'f|f|0|approve|{}'),
	'source: payments scored under the changed rules and thresholds');

# Every table's rows, as text, in a stable order.
my @tables = qw(currencies payment_methods users user_payment_methods payments
  rules settings blocklist account_stats pair_stats account_daily);

sub rows
{
	my ($db, $table) = @_;
	return $node->safe_psql($db,
		"SELECT t::text FROM p2pay.$table AS t ORDER BY 1");
}

sub tables_equal
{
	my ($what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	for my $table (@tables)
	{
		my $src = rows('src', $table);
		isnt($src, '', "source: p2pay.$table has rows") if $what eq 'restored';
		is(rows('dst', $table), $src, "p2pay.$table $what");
	}
}

###########################################################################
# Dump, and restore as documented.
###########################################################################
my $dump = $node->basedir . '/src.sql';
$node->command_ok([ 'pg_dump', '-f', $dump, '-d', 'src' ], 'pg_dump of the source');

$node->safe_psql('postgres', 'CREATE DATABASE dst');
{
	local $ENV{PGOPTIONS} = '-c session_replication_role=replica';
	$node->command_checks_all(
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', 'dst', '-f', $dump ],
		0, [qr//], [qr/^$/],
		'restore with psql -f and session_replication_role=replica: no error, no warning');
}

tables_equal('restored');

is( $node->safe_psql(
		'dst',
		"SELECT params->>'max_count' FROM p2pay.rules WHERE name = 'payer_velocity_count'"),
	'3',
	'restored: payer_velocity_count keeps max_count 3');
is( $node->safe_psql(
		'dst', 'SELECT review_threshold, decline_threshold FROM p2pay.settings'),
	'0.25|0.8',
	'restored: review_threshold 0.25');
is( $node->safe_psql(
		'dst', "SELECT extversion FROM pg_extension WHERE extname = 'p2pay'"),
	$node->safe_psql(
		'src', "SELECT extversion FROM pg_extension WHERE extname = 'p2pay'"),
	'restored: the extension at the same version');

###########################################################################
# New payments are scored from the restored state, as in the source.
###########################################################################
# The same payments, at the same time, go into both databases.
my $at = $node->safe_psql('src', 'SELECT now()');
my @new = (
	# velocity counts A's six restored payments in the hour (max_count 3),
	# amount_deviation reads A's restored account_stats (mean 160/6), and the
	# restored pair_stats keep young_payee_high_amount quiet (B's account is
	# new, 1500 > 1000);
	# new_account_high_amount would fire if it were enabled again.
	[
		"'$u{A}', '$u{B}', 1500, 'USD', '$BANK'",
		'0.58|review|{payer_velocity_count,amount_deviation}',
		'A pays B: velocity from the payments, deviation from account_stats'
	],
	# B has not registered the card: weight 0.28 is under the default
	# threshold 0.3, over the restored 0.25.
	[
		"'$u{B}', '$u{A}', 5, 'USD', '$CARD'",
		'0.28|review|{unregistered_method}',
		'B pays A by card: the changed weight and review threshold'
	],
	# C is on the restored blocklist.
	[
		"'$u{A}', '$u{C}', 10, 'USD', '$WALLET'",
		'1|decline|{payer_velocity_count,blocklist}',
		'A pays C: the blocklist declines it'
	],
	# D's 19000 of two to five hours ago sit in the hours of its restored
	# account_daily rows: 2000 more passes payer_velocity_amount's 20000.
	[
		"'$u{D}', '$u{B}', 2000, 'USD', '$BANK'",
		'0.4|review|{payer_velocity_amount}',
		'D pays B: velocity amount from the hourly totals'
	]);

for my $db ('dst', 'src')
{
	my $n = 0;
	for my $p (@new)
	{
		my ($values, $expected, $name) = @$p;
		$n++;
		my $got = $node->safe_psql(
			$db, qq{
INSERT INTO p2pay.payments (transaction_id, created_at, payer_id, payee_id, amount,
                            currency, payment_method_id)
  VALUES ('00000000-0000-4000-9000-00000000000$n', '$at', $values)
  RETURNING round(risk_score::numeric, 4)::float8, decision, reasons});
		is($got, $expected,
			($db eq 'dst' ? 'restored database' : 'source database') . ": $name");
	}
}
is( $node->safe_psql('dst', 'SELECT min(id), max(id) FROM p2pay.payments WHERE created_at = ' . "'$at'"),
	'12|15',
	'restored: new payments continue the restored identity sequence');

# Same payments, same scores, same state in both databases.
tables_equal('equal in both databases after the same new payments');

$node->stop;
done_testing();
