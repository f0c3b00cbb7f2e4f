# t/012_error_fields.pl: what a driver shows of p2pay's errors.
#
# What an application relies on: when p2pay refuses a payment, the error
# that reaches it through its driver names the field at fault in the error
# report's fields (schema p2pay, table payments, the column; for an unknown
# reference also the foreign key of that column, as PostgreSQL's own
# foreign-key error names it), with the SQLSTATE the driver turns into its
# exception class.  The client is psycopg2, as an application uses it:
# Debian's python3-psycopg2 run by Debian's /usr/bin/python3 (make test
# installs the package), with the payment's values sent as parameters; it
# prints e.diag's fields for each bad payment, and this test checks them.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/lib";

use IPC::Run;
use P2payNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $python = '/usr/bin/python3';
my ($out, $err) = ('', '');
if (!IPC::Run::run([ $python, '-c', 'import psycopg2' ], '>', \$out, '2>', \$err))
{
	fail("$python imports psycopg2 (Debian: python3-psycopg2; make test installs it): $err");
	done_testing();
	exit;
}

my $db   = 'p2pay_errors';
my $node = P2payNode::new_node('error_fields', $db);
$node->safe_psql(
	$db, q{
INSERT INTO p2pay.users (id) VALUES
  ('00000000-0000-4000-8000-00000000000a'), ('00000000-0000-4000-8000-00000000000b');
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, transaction_id)
VALUES ('00000000-0000-4000-8000-00000000000a', '00000000-0000-4000-8000-00000000000b', 10, 'USD',
        '00000000-0000-4000-8000-000000000001', 'aaaaaaaa-0000-4000-8000-000000000001');
});

# The client: each case is one statement in autocommit; it prints one
# tab-separated line per case: the case, the exception's class, and
# e.diag's sqlstate, schema_name, table_name, column_name and
# constraint_name ('-' where the driver gives None).
my $client = PostgreSQL::Test::Utils::tempdir() . '/error_fields.py';
append_to_file(
	$client, q{
import datetime
import decimal
import sys

import psycopg2

A = '00000000-0000-4000-8000-00000000000a'
B = '00000000-0000-4000-8000-00000000000b'
UNKNOWN = '00000000-0000-4000-8000-0000000000ff'
BANK = '00000000-0000-4000-8000-000000000001'
NOW = datetime.datetime.now(datetime.timezone.utc)
INSERT = ('INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at) '
          'VALUES (%(payer)s, %(payee)s, %(amount)s, %(currency)s, %(method)s, %(at)s)')
SCORE = 'SELECT * FROM p2pay.score(%(payer)s, %(payee)s, %(amount)s, %(currency)s, %(method)s, %(at)s)'


def payment(**override):
    values = dict(payer=A, payee=B, amount=decimal.Decimal('10.50'), currency='USD',
                  method=BANK, at=NOW)
    values.update(override)
    return values


CASES = [
    ('good', INSERT, payment()),
    ('null payer_id', INSERT, payment(payer=None)),
    ('null amount', INSERT, payment(amount=None)),
    ('null created_at', INSERT, payment(at=None)),
    ('zero amount', INSERT, payment(amount=decimal.Decimal('0'))),
    ('NaN amount', INSERT, payment(amount=decimal.Decimal('NaN'))),
    ('5 decimals', INSERT, payment(amount=decimal.Decimal('1.00001'))),
    ('future', INSERT, payment(at=NOW + datetime.timedelta(minutes=10))),
    ('self payment', INSERT, payment(payee=A)),
    ('unknown currency', INSERT, payment(currency='XYZ')),
    ('unknown payer', INSERT, payment(payer=UNKNOWN)),
    ('unknown payee', INSERT, payment(payee=UNKNOWN)),
    ('unknown method', INSERT, payment(method=UNKNOWN)),
    ('amount_base given',
     'INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, amount_base) '
     'VALUES (%(payer)s, %(payee)s, %(amount)s, %(currency)s, %(method)s, %(amount)s)', payment()),
    ('update amount',
     "UPDATE p2pay.payments SET amount = %(amount)s "
     "WHERE transaction_id = 'aaaaaaaa-0000-4000-8000-000000000001'", payment()),
    ('score null at', SCORE, payment(at=None)),
    ('score unknown payee', SCORE, payment(payee=UNKNOWN)),
]

conn = psycopg2.connect(sys.argv[1])
conn.autocommit = True
for name, sql, params in CASES:
    with conn.cursor() as cur:
        try:
            cur.execute(sql, params)
            print('\t'.join([name, 'accepted']))
        except psycopg2.Error as e:
            d = e.diag
            print('\t'.join([name, type(e).__name__] +
                            [v if v is not None else '-' for v in
                             (d.sqlstate, d.schema_name, d.table_name, d.column_name,
                              d.constraint_name)]))
conn.close()
});

($out, $err) = ('', '');
my $ran = IPC::Run::run([ $python, $client, $node->connstr($db) ], '>', \$out, '2>', \$err);
ok($ran, 'the psycopg2 client ran') or diag($err);

my %seen = map { my @f = split /\t/; ($f[0] => join(' ', @f[ 1 .. $#f ])) } split /\n/, $out;

# case => exception class, sqlstate, schema, table, column, constraint
my @expect = (
	[ 'good',                'accepted' ],
	[ 'null payer_id',       'NotNullViolation 23502 p2pay payments payer_id -' ],
	[ 'null amount',         'NotNullViolation 23502 p2pay payments amount -' ],
	[ 'null created_at',     'NotNullViolation 23502 p2pay payments created_at -' ],
	[ 'zero amount',         'CheckViolation 23514 p2pay payments amount -' ],
	[ 'NaN amount',          'NumericValueOutOfRange 22003 p2pay payments amount -' ],
	[ '5 decimals',          'InvalidParameterValue 22023 p2pay payments amount -' ],
	[ 'future',              'CheckViolation 23514 p2pay payments created_at -' ],
	[ 'self payment',        'CheckViolation 23514 p2pay payments payee_id -' ],
	[ 'unknown currency',    'ForeignKeyViolation 23503 p2pay payments currency payments_currency_fkey' ],
	[ 'unknown payer',       'ForeignKeyViolation 23503 p2pay payments payer_id payments_payer_id_fkey' ],
	[ 'unknown payee',       'ForeignKeyViolation 23503 p2pay payments payee_id payments_payee_id_fkey' ],
	[ 'unknown method',
	  'ForeignKeyViolation 23503 p2pay payments payment_method_id payments_payment_method_id_fkey' ],
	[ 'amount_base given',   'ObjectNotInPrerequisiteState 55000 p2pay payments amount_base -' ],
	[ 'update amount',       'ObjectNotInPrerequisiteState 55000 p2pay payments amount -' ],
	[ 'score null at',       'NotNullViolation 23502 p2pay payments created_at -' ],
	[ 'score unknown payee', 'ForeignKeyViolation 23503 p2pay payments payee_id payments_payee_id_fkey' ],
);
for my $e (@expect)
{
	is($seen{ $e->[0] }, $e->[1], "psycopg2 sees $e->[0] as: $e->[1]");
}
is(scalar(keys %seen), scalar(@expect), 'the client printed one line per case');

# Nothing but the good payment was stored, and the update changed nothing.
is( $node->safe_psql(
		$db, 'SELECT count(*), min(amount) FROM p2pay.payments'),
	'2|10',
	'only the good payment was stored; the scored payment kept its amount');

$node->stop;
done_testing();
