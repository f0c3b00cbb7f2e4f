# t/010_schema_changes.pl: what a DBA does to p2pay's tables, and what a role
# does with p2pay's trigger functions, never crashes the server.
#
# What a user relies on: whatever DDL a DBA runs on p2pay's tables (columns
# added, dropped, renamed or given another compatible type; indexes dropped,
# replaced or added; tables rewritten, truncated, renamed or dropped;
# triggers disabled), and wherever a role attaches p2pay's trigger
# functions, the server never crashes, and every p2pay entry point afterwards
# either works or fails with a clear error: an ERROR whose SQLSTATE is not
# XX000 (internal_error, which in p2pay means a can't-happen case happened).
# Where it works, it gives what it gives on the unaltered database: the same
# verdict for the same payment, the same per-account state and backtest, the
# same stream, and no change to the configuration history.
#
# Each step is applied to a fresh copy of a seeded database (CREATE DATABASE
# ... TEMPLATE), so that steps are independent; in one session it
#   - creates a logical slot with the p2pay plugin and inserts a payment (so
#     that the session's caches are loaded before the DDL),
#   - runs the step's statements (as a superuser, or as a role with nothing
#     but USAGE on schema p2pay),
#   - then the checks: insert a payment, p2pay.score(), the per-account
#     state, p2pay.backtest(), p2pay.resolve() of a payment under review, a
#     DELETE of a payment, p2pay.prune_state(), p2pay.rebuild_state(),
#     another insert, the configuration history, and the slot's changes.
# After every statement the server log is searched for a crash; a crashed
# statement is reported and the remaining checks run in a new session once
# the server is back.  Every statement of every step is one ok() named
# "step: statement", so that the failures read as a checklist.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/lib";

use JSON::PP;
use Time::HiRes qw(usleep);
use P2payNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $BANK = '00000000-0000-4000-8000-000000000001';
my $T0   = '2024-06-01 12:00:00+00';    # the time of the checked payments
my $ROLE = 'ddl_nobody';                # USAGE on schema p2pay, nothing else

# user n's id, as P2payNode::seed_users makes it
sub uid { return sprintf('00000000-0000-4000-8000-%012d', $_[0]); }

# Fixed transaction ids: the payment under review that resolve() approves,
# the one the DELETE removes, the checked inserts.
my $REVIEW  = '00000000-0000-4000-9000-000000000001';
my $DOOMED  = '00000000-0000-4000-9000-000000000002';
my $CHECK_1 = '00000000-0000-4000-9000-0000000000c1';
my $CHECK_2 = '00000000-0000-4000-9000-0000000000c2';
my $WARM    = '00000000-0000-4000-9000-0000000000a1';
my $BLOCKED = '00000000-0000-4000-9000-0000000000b1';
my $TRUSTED = '00000000-0000-4000-9000-0000000000b2';
my $SNOOZED = '00000000-0000-4000-9000-0000000000b3';

my $node = P2payNode::new_node('schema_changes', 'seed',
	"restart_after_crash = on\nlog_statement = none\nshared_buffers = 32MB\n");

###########################################################################
# The seeded template.
###########################################################################
P2payNode::seed_users($node, 'seed', 30);
{
	my $pay = sub {
		my ($payer, $payee, $amount, $at, $txn) = @_;
		my $t = defined $txn ? "'$txn'" : 'DEFAULT';
		return
		  "INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency,"
		  . " payment_method_id, created_at) VALUES ($t, '"
		  . uid($payer) . "', '"
		  . uid($payee)
		  . "', $amount, 'USD', '$BANK', timestamptz '$T0' - interval '$at');\n";
	};
	my $sql = '';

	# Old history of user 1 (its previous payment is 9 days old, its first
	# 100: dormant_reactivation doesn't fire), and a few days of user 15
	# paying user 16.
	$sql .= $pay->(1, 9, 200, "$_ days") for (100, 20, 12, 9);
	$sql .= $pay->(15, 16, 30 + $_, "$_ days 3 hours") for (1 .. 4);
	$sql .= $pay->(15, 16, 45, '3 hours', $DOOMED);

	# Five payers into user 1 (pass_through counts them), user 3 paid user
	# 1 and user 2 paid user 3: 1 -> 2 closes a loop (cycle).
	$sql .= $pay->($_, 1, 600, (14 - $_) . ' hours') for (4 .. 8);
	$sql .= $pay->(3, 1, 5000, '5 hours');
	$sql .= $pay->(2, 3, 5000, '4 hours');

	# One payment under review, one reviewed and declined.
	$sql .= $pay->(11, 12, 15000, '2 hours', $REVIEW);
	$sql .= $pay->(13, 14, 15000, '90 minutes', '00000000-0000-4000-9000-000000000003');
	$node->safe_psql('seed', $sql);

	$node->safe_psql(
		'seed', qq{
SELECT p2pay.resolve('00000000-0000-4000-9000-000000000003', 'decline', 'seeded');
INSERT INTO p2pay.fraud_labels (transaction_id, is_fraud, source) VALUES
  ('00000000-0000-4000-9000-000000000003', true, 'seeded'),
  ('$REVIEW', false, 'seeded');
INSERT INTO p2pay.blocklist (user_id, reason) VALUES ('@{[uid(20)]}', 'seeded');
INSERT INTO p2pay.allowlist (user_id, reason) VALUES ('@{[uid(21)]}', 'seeded');
SELECT p2pay.snooze('amount_limit', '@{[uid(22)]}', '2100-01-01', 'seeded');
UPDATE p2pay.rules SET weight = 0.45 WHERE name = 'payer_velocity_amount';
CREATE ROLE $ROLE LOGIN;
GRANT USAGE ON SCHEMA p2pay TO $ROLE;
CREATE ROLE ddl_reader LOGIN;
GRANT USAGE ON SCHEMA p2pay TO ddl_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA p2pay TO ddl_reader;
CREATE ROLE ddl_app LOGIN;
GRANT USAGE ON SCHEMA p2pay TO ddl_app;
GRANT SELECT ON p2pay.currencies, p2pay.payment_methods TO ddl_app;
GRANT SELECT, INSERT ON p2pay.users, p2pay.user_payment_methods, p2pay.payments TO ddl_app;
-- A sequence logs 32 values ahead and then counts without logging: in a
-- copy of this database that crashes, it would give those values again.
-- Setting it logs it now, so that a copy's first value is logged.
SELECT setval(oid, pg_sequence_last_value(oid))
  FROM pg_class WHERE relkind = 'S' AND relnamespace = 'p2pay'::regnamespace;
});
}

###########################################################################
# What the steps are made of: p2pay's tables, columns, keys and triggers.
###########################################################################
sub rows
{
	my ($db, $sql) = @_;
	return map { [ split /\|/, $_, -1 ] } grep { $_ ne '' } split /\n/,
	  $node->safe_psql($db, $sql);
}

# table => [ [column, type, typtype, has default, identity], ... ] in order;
# a partitioned table (payments, in make test's partitioned run) is one too
my %columns;
my @tables;
for my $r (
	rows(
		'seed', q{
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), t.typtype,
       a.atthasdef, a.attidentity <> ''
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_type t ON t.oid = a.atttypid
 WHERE n.nspname = 'p2pay' AND c.relkind IN ('r', 'p')
 ORDER BY c.relname, a.attnum}))
{
	my ($table, @col) = @$r;
	push @tables, $table unless exists $columns{$table};
	push @{ $columns{$table} }, \@col;
}

# A partitioned payments' partitions are alike: its default partition and
# its first monthly one stand for them all.  The others get no steps of
# their own (a foreign key cloned to them is still dropped with the rest),
# which would otherwise number as many again for each month of partitions.
my %alike = map { $_->[0] => 1 } rows(
	'seed', q{
SELECT c.relname
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = 'p2pay.payments'::regclass
   AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
 ORDER BY c.relname OFFSET 1});
@tables = grep { !$alike{$_} } @tables;

# foreign keys: [table, constraint, referencing columns, referenced table,
# referenced columns]
my @fkeys = rows(
	'seed', q{
SELECT c.conrelid::regclass::text, c.conname,
       (SELECT string_agg(attname, ',') FROM pg_attribute
         WHERE attrelid = c.conrelid AND attnum = ANY (c.conkey)),
       c.confrelid::regclass::text,
       (SELECT string_agg(attname, ',') FROM pg_attribute
         WHERE attrelid = c.confrelid AND attnum = ANY (c.confkey))
  FROM pg_constraint c
 WHERE c.contype = 'f' AND c.connamespace = 'p2pay'::regnamespace
 ORDER BY 1, 2});

# primary keys: table => [constraint, columns...]
my %pkeys = map { my ($t, $n, $cols) = @$_; ($t => [ $n, split /,/, $cols ]) } rows(
	'seed', q{
SELECT r.relname, c.conname,
       (SELECT string_agg(a.attname, ',' ORDER BY k.i)
          FROM unnest(c.conkey) WITH ORDINALITY k (attnum, i)
          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum)
  FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid
 WHERE c.contype = 'p' AND c.connamespace = 'p2pay'::regnamespace});

# p2pay's own triggers: [table, trigger]
my @triggers = rows(
	'seed', q{
SELECT c.relname, t.tgname
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE NOT t.tgisinternal AND c.relnamespace = 'p2pay'::regnamespace
 ORDER BY 1, 2});
@triggers = grep { !$alike{ $_->[0] } } @triggers;

###########################################################################
# The steps.  Each is a name, its statements and, where a correct p2pay may
# legitimately answer differently from the unaltered database, which of the
# comparisons don't apply (differs => [...]): verdict (the inserts' scores
# and p2pay.score()), state, backtest, stream, history; unscored: an insert
# may go through unscored.
###########################################################################
my @steps;

sub step
{
	my ($name, $sql, %opt) = @_;
	push @steps, { name => $name, sql => $sql, %opt };
	return;
}

# The review queue is a view on payments that the C never reads; as a member
# of the extension it would take the extension with it when a column it
# shows is dropped with CASCADE, and it keeps a column's type from changing.
# A DBA takes it out first.  Likewise the identity sequences, which a DROP
# TABLE ... CASCADE would follow to the extension.
my %detach = (
	payments => [
		'ALTER EXTENSION p2pay DROP VIEW p2pay.review_queue',
		'DROP VIEW p2pay.review_queue'
	]);
my %identity_seq;
for my $table (@tables)
{
	$identity_seq{$table} = "p2pay.${table}_$_->[0]_seq"
	  for grep { $_->[4] eq 't' } @{ $columns{$table} };
}

# The tables p2pay's C reads through their indexes and heap directly
# (facts.c): every change to them gets every variant below.
my %direct = map { $_ => 1 }
  qw(payments account_stats pair_stats account_daily currencies users
  payment_methods user_payment_methods blocklist allowlist snoozes ruleset);
my %state_tables =
  map { $_ => 1 } qw(account_stats pair_stats account_daily);
# The tables the C reads through SPI (the configuration, backtest()).
my %via_spi = map { $_ => 1 } qw(rules settings decision_log fraud_labels);

# Columns nothing of p2pay reads (neither the C nor its SQL functions): they
# are only dropped, which must change nothing.
my %unread = map { $_ => 1 }
  qw(users.first_name users.last_name users.email_address currencies.name
  payment_methods.name user_payment_methods.details blocklist.reason
  blocklist.added_at blocklist.added_by allowlist.reason allowlist.added_at
  allowlist.added_by snoozes.reason snoozes.added_at snoozes.added_by
  rules.description fraud_labels.labelled_at fraud_labels.source);

# Which comparisons a change to a table's column leaves legitimately
# different: the stream shows payments' columns as they are, the state
# query shows the state tables' rows as they are (keys named after their
# columns); a column of another type holds the same values, and shows them
# the same way unless it is a time.
sub column_differs
{
	my ($table, $col, $to) = @_;
	my @d;
	if (!defined $to)
	{
		push @d, 'stream' if $table eq 'payments';
		push @d, 'state' if $state_tables{$table};
	}
	elsif ($to =~ /^timestamp/)
	{
		push @d, 'stream' if $table eq 'payments' && $col eq 'created_at';
		push @d, 'state' if $state_tables{$table};
	}
	return \@d;
}

# Compatible types a column may be given, by its type.
my %retype = (
	'uuid'                     => ['text'],
	'bigint'                   => [ 'integer', 'numeric' ],
	'numeric'                  => ['double precision'],
	'double precision'         => [ 'numeric', 'real' ],
	'timestamp with time zone' => ['timestamp without time zone'],
	'text'                     => ['character varying'],
	'character(3)'             => ['text'],
	'jsonb'                    => [ 'json', 'text' ],
	'boolean'                  => ['integer'],
	'date'                     => ['timestamp with time zone'],
	'name'                     => ['text'],
	'xid8'                     => ['text'],
	'text[]'                   => ['character varying[]'],
	'smallint[]'               => ['integer[]'],
	'numeric[]'                => ['double precision[]'],
);

my @all = qw(verdict state backtest stream history);

for my $table (@tables)
{
	my @pre = @{ $detach{$table} || [] };
	for my $c (@{ $columns{$table} })
	{
		my ($col, $type, $typtype, $hasdef, $identity) = @$c;
		my $differs = column_differs($table, $col);

		if ($unread{"$table.$col"})
		{
			step("$table: drop column $col",
				[ @pre, "ALTER TABLE p2pay.$table DROP COLUMN $col CASCADE" ],
				differs => $differs);
			next;
		}
		# an identity column's sequence is a member of the extension too
		my @seq = $identity eq 't' ? ("ALTER EXTENSION p2pay DROP SEQUENCE $identity_seq{$table}") : ();
		step("$table: drop column $col",
			[ @pre, @seq, "ALTER TABLE p2pay.$table DROP COLUMN $col CASCADE" ],
			differs => [ @$differs, 'backtest', 'history' ]);
		step("$table: rename column $col",
			[ "ALTER TABLE p2pay.$table RENAME COLUMN $col TO ${col}_renamed" ],
			differs => [ @$differs, 'backtest', 'history' ])
		  if $direct{$table} || $via_spi{$table};

		# The history is written by PL/pgSQL alone: dropped and renamed
		# columns are enough there.
		next if $table eq 'config_history';

		# The foreign keys on the column (either end) go first, as they
		# would keep the types from differing; so does a column default
		# that the new type can't take, and the partial index on decision,
		# which names an enum value.
		my @fk_drops;
		for my $fk (@fkeys)
		{
			my ($from, $name, $fcols, $to, $tcols) = @$fk;
			push @fk_drops, "ALTER TABLE $from DROP CONSTRAINT $name"
			  if ($from eq "p2pay.$table" && grep { $_ eq $col } split /,/, $fcols)
			  || ($to eq "p2pay.$table" && grep { $_ eq $col } split /,/, $tcols);
		}
		my @idx_drops =
		  $table eq 'payments' && $col eq 'decision'
		  ? ('DROP INDEX p2pay.payments_review_idx')
		  : ();
		for my $to ($typtype eq 'e' ? ('text') : @{ $retype{$type} || [] })
		{
			my @def =
			  $hasdef eq 't' && $identity ne 't'
			  ? ("ALTER TABLE p2pay.$table ALTER COLUMN $col DROP DEFAULT")
			  : ();
			step("$table: column $col $type -> $to",
				[
					@pre, @fk_drops, @idx_drops, @def,
					"ALTER TABLE p2pay.$table ALTER COLUMN $col TYPE $to USING $col\::$to"
				],
				differs => column_differs($table, $col, $to));
		}
	}

	# Added columns: a correct p2pay either ignores them or refuses them.
	step("$table: add column NOT NULL with a default",
		[ "ALTER TABLE p2pay.$table ADD COLUMN ddl_extra text NOT NULL DEFAULT 'x'" ],
		differs => $state_tables{$table} ? ['state'] : []);
	if ($direct{$table})
	{
		step("$table: add column", [ "ALTER TABLE p2pay.$table ADD COLUMN ddl_extra integer" ],
			differs => $state_tables{$table} ? ['state'] : []);
		step("$table: add column with a default",
			[ "ALTER TABLE p2pay.$table ADD COLUMN ddl_extra integer DEFAULT 7" ],
			differs => $state_tables{$table} ? ['state'] : []);
	}

	step("$table: rename table", [ "ALTER TABLE p2pay.$table RENAME TO ${table}_renamed" ],
		differs => [qw(backtest history)]);

	# Rewrites keep every row and every index: nothing may differ.
	my ($pkey, @pcols) = @{ $pkeys{$table} };
	step("$table: VACUUM FULL, CLUSTER, REINDEX",
		[ "VACUUM FULL p2pay.$table", "CLUSTER p2pay.$table USING $pkey", "REINDEX TABLE p2pay.$table" ]);

	step("$table: TRUNCATE", ["TRUNCATE p2pay.$table CASCADE"], differs => \@all);

	my @detach_seq =
	  $identity_seq{$table} ? ("ALTER EXTENSION p2pay DROP SEQUENCE $identity_seq{$table}") : ();
	step("$table: drop table",
		[ @pre, @detach_seq, "ALTER EXTENSION p2pay DROP TABLE p2pay.$table", "DROP TABLE p2pay.$table CASCADE" ],
		differs => \@all);

	# Keys: the primary key dropped; where the C scans it, also replaced by
	# an index of the same name on other columns, in another order or
	# direction, or of another access method.
	my $drop_pkey = "ALTER TABLE p2pay.$table DROP CONSTRAINT $pkey CASCADE";
	step("$table: drop primary key", [$drop_pkey], differs => ['history']);
	next unless $direct{$table} && $table ne 'payments' && $table ne 'snoozes' && $table ne 'ruleset';
	my @others = grep { my $n = $_; !grep { $_ eq $n } @pcols }
	  map { $_->[0] } @{ $columns{$table} };
	step("$table: $pkey on other columns",
		[ $drop_pkey, "CREATE INDEX $pkey ON p2pay.$table ($others[0])" ],
		differs => ['history']);
	step("$table: $pkey reversed",
		[ $drop_pkey, "CREATE UNIQUE INDEX $pkey ON p2pay.$table (" . join(', ', reverse @pcols) . ')' ],
		differs => ['history'])
	  if @pcols > 1;
	step("$table: $pkey descending",
		[ $drop_pkey, "CREATE UNIQUE INDEX $pkey ON p2pay.$table (" . join(', ', map { "$_ DESC" } @pcols) . ')' ],
		differs => ['history']);
	step("$table: $pkey a hash index",
		[ $drop_pkey, "CREATE INDEX $pkey ON p2pay.$table USING hash ($pcols[0])" ],
		differs => ['history']);

	# Indexes added beside p2pay's, where the C maintains or scans them:
	# an expression index and a partial one.
	next unless $state_tables{$table};
	step("$table: add an expression index",
		[ "CREATE INDEX ddl_expr_idx ON p2pay.$table (($pcols[0]\::text))" ]);
	step("$table: add a partial index",
		[ "CREATE INDEX ddl_partial_idx ON p2pay.$table ($pcols[0]) WHERE $pcols[0] IS NOT NULL" ]);
}
step("payments: add an expression index",
	[ "CREATE INDEX ddl_expr_idx ON p2pay.payments ((payer_id::text))" ]);
step("payments: add a partial index",
	[ "CREATE INDEX ddl_partial_idx ON p2pay.payments (payer_id) WHERE amount > 100" ]);

# The secondary indexes p2pay scans by name: dropped, or replaced by an index
# of the same name on other columns, in another order or direction, or of
# another access method.
for my $ix (
	[ 'payments',   'payments_payer_time_idx',   'payer_id', 'created_at' ],
	[ 'pair_stats', 'pair_stats_payer_last_idx', 'payer_id', 'last_at' ],
	[ 'pair_stats', 'pair_stats_payee_last_idx', 'payee_id', 'last_at' ])
{
	my ($table, $name, $a, $b) = @$ix;
	my $drop = "DROP INDEX p2pay.$name";
	step("$name: drop", [$drop]);
	step("$name: on other columns", [ $drop, "CREATE INDEX $name ON p2pay.$table ($b)" ]);
	step("$name: reversed", [ $drop, "CREATE INDEX $name ON p2pay.$table ($b, $a)" ]);
	step("$name: descending", [ $drop, "CREATE INDEX $name ON p2pay.$table ($a DESC, $b DESC)" ]);
	step("$name: a hash index", [ $drop, "CREATE INDEX $name ON p2pay.$table USING hash ($a)" ]);
	step("$name: a BRIN index", [ $drop, "CREATE INDEX $name ON p2pay.$table USING brin ($a, $b)" ]);
	step("$name: partial", [ $drop, "CREATE INDEX $name ON p2pay.$table ($a, $b) WHERE $b > '2024-05-31'" ]);
}

# Each of p2pay's triggers disabled: what it guarded goes unguarded, but
# nothing crashes.  Without the scoring trigger a payment goes in unscored.
for my $t (@triggers)
{
	my ($table, $trigger) = @$t;
	my $scoring = $trigger eq 'payments_score';
	step("$table: disable trigger $trigger",
		[ "ALTER TABLE p2pay.$table DISABLE TRIGGER $trigger" ],
		differs  => $scoring ? \@all : [],
		unscored => $scoring);
}

# p2pay's trigger functions on other tables, the way each is used (and the
# C ones also the wrong way), on a temporary table named as the function's
# own with p2pay's columns: once with their types, once all integers.  As a
# superuser and as a role with only USAGE on schema p2pay.
my %uses = (
	score_payment        => [ 'payments',        'BEFORE INSERT',                        'ROW' ],
	guard_payment        => [ 'payments',        'BEFORE UPDATE',                        'ROW' ],
	forget_payment       => [ 'payments',        'AFTER DELETE',                         'ROW' ],
	check_config         => [ 'rules',           'BEFORE INSERT OR UPDATE OR DELETE',    'ROW' ],
	config_changed       => [ 'rules',           'AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE', 'STATEMENT' ],
	record_config_change => [ 'rules',           'AFTER INSERT OR UPDATE OR DELETE',     'ROW' ],
	truncate_state       => [ 'payments',        'AFTER TRUNCATE',                       'STATEMENT' ],
	batch_payments       => [ 'payments',        'BEFORE INSERT',                        'STATEMENT' ],
	# merge_row() with each of its triggers' arguments
	'merge_row rules'           => [ 'rules',           'BEFORE INSERT', 'ROW', "merge_row('name')" ],
	'merge_row settings'        => [ 'settings',        'BEFORE INSERT', 'ROW', "merge_row('singleton')" ],
	'merge_row ruleset'         => [ 'ruleset',         'BEFORE INSERT', 'ROW', "merge_row('singleton', 'xact = NULL')" ],
	'merge_row currencies'      => [ 'currencies',      'BEFORE INSERT', 'ROW', "merge_row('code')" ],
	'merge_row payment_methods' => [ 'payment_methods', 'BEFORE INSERT', 'ROW', "merge_row('id')" ],
);
my %c_funcs = map { $_ => 1 } qw(score_payment guard_payment forget_payment check_config config_changed batch_payments);
my %misuses = (
	score_payment  => [ 'AFTER INSERT', 'ROW' ],
	guard_payment  => [ 'BEFORE INSERT', 'ROW' ],
	forget_payment => [ 'BEFORE DELETE', 'ROW' ],
	check_config   => [ 'AFTER INSERT', 'ROW' ],
	config_changed => [ 'BEFORE INSERT', 'ROW' ],
	batch_payments => [ 'BEFORE INSERT', 'ROW' ],
);

# A row for a table of p2pay's columns with their types: values that each
# type takes (users 1 and 2, the bank transfer, ...).
my %sample = (
	'uuid' => sub {
		return $_[0] eq 'payee_id' ? "'" . uid(2) . "'"
		  : $_[0] =~ /method/ ? "'$BANK'"
		  : "'" . uid(1) . "'";
	},
	'numeric'                  => sub { $_[0] eq 'amount_base' ? 'NULL' : '15000' },
	'character(3)'             => sub { "'USD'" },
	'timestamp with time zone' => sub { "'$T0'" },
	'double precision'         => sub { '0.5' },
	'bigint'                   => sub { '1' },
	'text'                     => sub { $_[0] eq 'name' ? "'amount_limit'" : "'x'" },
	'text[]'                   => sub { "'{x}'" },
	'boolean'                  => sub { 'true' },
	'jsonb'                    => sub { q('{"max_amount": 10000}') },
	'name'                     => sub { "'x'" },
	'xid8'                     => sub { 'NULL' },
	'p2pay.decision'           => sub { "'review'" },
	'p2pay.rule_mode'          => sub { "'active'" },
);

# attach_steps(FUNC, WHEN, LEVEL, ROLE, LAYOUT): the function attached to a
# temporary table named as its own, with p2pay's column types (LAYOUT
# typed), all integers (integer), or p2pay's types but one column an
# integer (that column's name).
sub attach_steps
{
	my ($func, $when, $level, $as, $layout) = @_;
	my $table = $uses{$func}[0];
	my @cols = grep { !($_->[4] eq 't') } @{ $columns{$table} };    # not identity
	my $type = sub {
		my ($c) = @_;
		return $layout eq 'integer' || $layout eq $c->[0] ? 'integer' : $c->[1];
	};
	my $value = sub {
		my ($c) = @_;
		return '1' if $type->($c) eq 'integer';
		# forget_payment() takes out of the state only a scored payment
		return '15000' if $c->[0] eq 'amount_base' && $func ne 'score_payment';
		return ($sample{ $c->[1] } || sub { 'NULL' })->($c->[0]);
	};
	my $defs   = join(', ', map { "$_->[0] " . $type->($_) } @cols);
	my $names  = join(', ', map { $_->[0] } @cols);
	my $values = join(', ', map { $value->($_) } @cols);
	my @sql = (
		"CREATE TEMP TABLE $table ($defs)",
		"CREATE TRIGGER ddl_attached $when ON pg_temp.$table FOR EACH $level EXECUTE FUNCTION p2pay."
		  . ($uses{$func}[3] // "$func()"),
		"INSERT INTO pg_temp.$table ($names) VALUES ($values)",
		"UPDATE pg_temp.$table SET $cols[0][0] = $cols[0][0]",
		"DELETE FROM pg_temp.$table",
		"INSERT INTO pg_temp.$table ($names) VALUES ($values)",
		"TRUNCATE pg_temp.$table");
	my $who = $as ? 'a role with USAGE only' : 'a superuser';
	my $kind =
	    $layout eq 'typed'   ? "p2pay's column types"
	  : $layout eq 'integer' ? 'integer columns'
	  :                        "p2pay's column types but $layout an integer";
	my $how = lc "$when $level";
	step("p2pay." . ($uses{$func}[3] // "$func()") . " $how on a temporary $table with $kind, by $who",
		\@sql,
		role => $as,
		# a superuser's merge_*(), truncate_state(), record_config_change()
		# and forget_payment() write p2pay's tables as they are written
		# to; a role with USAGE only may change nothing
		differs => !$as && $func =~ /^(merge_|truncate_state|record_config_change|forget_payment)/
		? \@all
		: []);
	return;
}

for my $func (sort keys %uses)
{
	for my $as (undef, $ROLE)
	{
		# PL/pgSQL reads a row's columns by name and type: other layouts
		# matter to the C functions only
		attach_steps($func, $uses{$func}[1], $uses{$func}[2], $as, 'typed');
		next unless $c_funcs{$func};
		attach_steps($func, $uses{$func}[1], $uses{$func}[2], $as, 'integer');
		attach_steps($func, @{ $misuses{$func} }, $as, 'typed') if $misuses{$func};
	}
}
# check_config() reads a valid rule row's params as jsonb.
attach_steps('check_config', @{ $uses{check_config} }[ 1, 2 ], $_, 'params') for (undef, $ROLE);

# A role that may read p2pay's tables (an analyst, say) makes temporary
# tables with the names of all those the trigger reads and writes, with its
# own types, and attaches score_payment() to its own payments: the trigger
# works as that role on that schema.
{
	my @sql = ("CREATE TEMP TABLE payments (LIKE p2pay.payments INCLUDING INDEXES)");
	for my $t (sort grep { $_ ne 'payments' && $direct{$_} } keys %direct)
	{
		my $defs = join(', ',
			map { "$_->[0] " . ($_->[1] eq 'numeric' ? 'double precision' : $_->[1]) }
			  @{ $columns{$t} });
		push @sql, "CREATE TEMP TABLE $t ($defs)";
		my ($pkey, @pcols) = @{ $pkeys{$t} };
		push @sql, "CREATE UNIQUE INDEX $pkey ON pg_temp.$t (" . join(', ', @pcols) . ')';
	}
	push @sql,
	  'CREATE INDEX payments_payer_time_idx ON pg_temp.payments (payer_id, created_at)',
	  'CREATE INDEX pair_stats_payer_last_idx ON pg_temp.pair_stats (payer_id, last_at)',
	  'CREATE INDEX pair_stats_payee_last_idx ON pg_temp.pair_stats (payee_id, last_at)',
	  'INSERT INTO pg_temp.currencies SELECT code, name, rate_to_base::float8 FROM p2pay.currencies',
	  'INSERT INTO pg_temp.users SELECT * FROM p2pay.users',
	  'INSERT INTO pg_temp.payment_methods SELECT * FROM p2pay.payment_methods',
	  'INSERT INTO pg_temp.ruleset SELECT * FROM p2pay.ruleset',
	  'CREATE TRIGGER ddl_attached BEFORE INSERT ON pg_temp.payments FOR EACH ROW EXECUTE FUNCTION p2pay.score_payment()',
	  "INSERT INTO pg_temp.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)"
	  . " VALUES ('" . uid(1) . "', '" . uid(2) . "', 15000, 'USD', '$BANK', '$T0')";
	step('p2pay.score_payment() on a temporary payments, with temporary state tables of other types, by a role that reads p2pay\'s tables',
		\@sql, role => 'ddl_reader');
}

# A role that may insert payments (the application) creates temporary types
# named as those p2pay's SQL names (the temporary schema is searched first
# for types), then inserts a payment large enough for the money-flow rules.
step('temporary types named text, numeric, float8 and int8, by a role that inserts payments',
	[
		'CREATE TYPE pg_temp.text AS (x integer)',
		'CREATE TYPE pg_temp.numeric AS (x integer)',
		'CREATE TYPE pg_temp.float8 AS (x integer)',
		'CREATE TYPE pg_temp.int8 AS (x integer)',
		"INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)"
		  . " VALUES ('" . uid(7) . "', '" . uid(3) . "', 5000, 'USD', '$BANK', timestamptz '$T0' - interval '30 seconds')"
	],
	role    => 'ddl_app',
	differs => [qw(state backtest stream)]);

# Partitions.  payments partitioned as a DBA would (by hand, the way a
# table is taken over from an extension, or with partition_payments());
# partitions attached, detached, dropped, rewritten, given indexes and
# triggers of their own, laid out differently, partitioned again.  In make
# test's partitioned run the seed is partitioned already: converting it
# again is then refused with a clear error, which the step accepts.
my $by_hand = [
	'ALTER EXTENSION p2pay DROP VIEW p2pay.review_queue',
	'DROP VIEW p2pay.review_queue',
	'ALTER EXTENSION p2pay DROP TABLE p2pay.payments',
	'ALTER EXTENSION p2pay DROP SEQUENCE p2pay.payments_id_seq',
	'ALTER TABLE p2pay.payments RENAME TO payments_old',
	'ALTER INDEX p2pay.payments_payer_time_idx RENAME TO payments_old_payer_time_idx',
	'CREATE TABLE p2pay.payments (LIKE p2pay.payments_old INCLUDING DEFAULTS INCLUDING IDENTITY'
	  . ' INCLUDING CONSTRAINTS) PARTITION BY RANGE (created_at)',
	'ALTER TABLE p2pay.payments ADD PRIMARY KEY (id, created_at)',
	'CREATE INDEX payments_payer_time_idx ON p2pay.payments (payer_id, created_at) INCLUDE (payee_id, amount_base)',
	'CREATE TRIGGER payments_score BEFORE INSERT ON p2pay.payments FOR EACH ROW EXECUTE FUNCTION p2pay.score_payment()',
	'CREATE TRIGGER payments_guard BEFORE UPDATE ON p2pay.payments FOR EACH ROW EXECUTE FUNCTION p2pay.guard_payment()',
	'CREATE TRIGGER payments_mark_delete BEFORE DELETE ON p2pay.payments FOR EACH ROW EXECUTE FUNCTION p2pay.mark_delete()',
	'CREATE TRIGGER payments_forget AFTER DELETE ON p2pay.payments FOR EACH ROW EXECUTE FUNCTION p2pay.forget_payment()',
	'ALTER TABLE p2pay.payments REPLICA IDENTITY FULL',
	"CREATE TABLE p2pay.payments_2024_05 PARTITION OF p2pay.payments FOR VALUES FROM ('2024-05-01') TO ('2024-06-01')",
	"CREATE TABLE p2pay.payments_2024_06 PARTITION OF p2pay.payments FOR VALUES FROM ('2024-06-01') TO ('2024-07-01')",
	'CREATE TABLE p2pay.payments_rest PARTITION OF p2pay.payments DEFAULT',
	'ALTER TABLE p2pay.payments_2024_05 REPLICA IDENTITY FULL',
	'ALTER TABLE p2pay.payments_2024_06 REPLICA IDENTITY FULL',
	'ALTER TABLE p2pay.payments_rest REPLICA IDENTITY FULL',
	# the scored rows move with the triggers off, as a restore does
	'SET session_replication_role = replica',
	'INSERT INTO p2pay.payments OVERRIDING SYSTEM VALUE SELECT * FROM p2pay.payments_old',
	'RESET session_replication_role',
	"SELECT setval(pg_get_serial_sequence('p2pay.payments', 'id'), (SELECT max(id) FROM p2pay.payments))",
	'DROP TABLE p2pay.payments_old',
];
# (moving the rows inserts them into the new payments: the stream has them)
step('payments: partitioned by hand', $by_hand, differs => [qw(history stream)]);
step('payments: partition_payments()',
	["SELECT count(*) FROM p2pay.partition_payments(start_at => '2024-01-01')"],
	differs => ['history']);
# on a partitioned payments: what DBAs do to partitions
my @on_partitions = (
	[ 'a partition of another column order attached',
		"CREATE TABLE p2pay.payments_2030 (LIKE p2pay.payments)",
		'ALTER TABLE p2pay.payments_2030 DROP COLUMN payee_id',
		'ALTER TABLE p2pay.payments_2030 ADD COLUMN payee_id uuid NOT NULL',
		"ALTER TABLE p2pay.payments ATTACH PARTITION p2pay.payments_2030 FOR VALUES FROM ('2030-01-01') TO ('2031-01-01')" ],
	[ "the seed's month detached",
		'ALTER TABLE p2pay.payments DETACH PARTITION p2pay.payments_2024_06' ],
	[ "the seed's month detached concurrently",
		'ALTER TABLE p2pay.payments DETACH PARTITION p2pay.payments_2024_06 CONCURRENTLY' ],
	[ "the seed's month dropped",
		'ALTER TABLE p2pay.payments DETACH PARTITION p2pay.payments_2024_06',
		'DROP TABLE p2pay.payments_2024_06' ],
	[ "the seed's month truncated", 'TRUNCATE p2pay.payments_2024_06' ],
	[ 'a partition with an index of its own',
		'CREATE INDEX ddl_own_idx ON p2pay.payments_2024_06 (payee_id, created_at DESC)' ],
	[ 'a partition with a trigger of its own',
		'CREATE FUNCTION public.ddl_noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$',
		'CREATE TRIGGER ddl_own BEFORE INSERT ON p2pay.payments_2024_06 FOR EACH ROW EXECUTE FUNCTION public.ddl_noop()' ],
	[ 'a partition clustered',
		'CLUSTER p2pay.payments_2024_06 USING payments_2024_06_pkey' ],
	[ 'a partition rewritten', 'VACUUM FULL p2pay.payments_2024_06' ],
	[ 'a partition reindexed', 'REINDEX TABLE p2pay.payments_2024_06' ],
	[ 'the default partition dropped',
		'ALTER TABLE p2pay.payments DETACH PARTITION p2pay.payments_rest',
		'DROP TABLE p2pay.payments_rest' ],
	[ 'a partition partitioned again',
		"CREATE TABLE p2pay.payments_2025 PARTITION OF p2pay.payments FOR VALUES FROM ('2025-01-01') TO ('2026-01-01') PARTITION BY RANGE (created_at)",
		"CREATE TABLE p2pay.payments_2025_h1 PARTITION OF p2pay.payments_2025 FOR VALUES FROM ('2025-01-01') TO ('2025-07-01')",
		"CREATE TABLE p2pay.payments_2025_rest PARTITION OF p2pay.payments_2025 DEFAULT" ],
	[ "a partition's replica identity set back", 'ALTER TABLE p2pay.payments_2024_06 REPLICA IDENTITY DEFAULT' ],
	[ 'a table with a column of another type attached',
		'CREATE TABLE p2pay.payments_2031 (LIKE p2pay.payments)',
		'ALTER TABLE p2pay.payments_2031 ALTER COLUMN amount_base TYPE float8',
		"ALTER TABLE p2pay.payments ATTACH PARTITION p2pay.payments_2031 FOR VALUES FROM ('2031-01-01') TO ('2032-01-01')" ],
	[ 'the index p2pay reads dropped from every partition', 'DROP INDEX p2pay.payments_payer_time_idx' ],
);
for my $p (@on_partitions)
{
	my ($what, @sql) = @$p;
	# the seed's payments gone from payments: rules that read them directly,
	# the backtest and the stream see less; the state keeps them
	my $gone = $what =~ /detached|dropped|truncated/ && $what !~ /default/;
	step("partitioned payments: $what", [ @$by_hand, @sql ],
		differs => $gone ? [qw(verdict backtest stream history)] : [qw(history stream)]);
}

# P2PAY_STEPS, a regular expression, runs only the steps it matches.
@steps = grep { $_->{name} =~ /$ENV{P2PAY_STEPS}/ } @steps if $ENV{P2PAY_STEPS};
note(scalar(@steps) . ' steps');

###########################################################################
# Running a step.
###########################################################################

# The checks, in order, each one statement; {slot} is the step's slot.
my $u1 = uid(1);
my $u2 = uid(2);
my @checks = (
	[ insert => insert_sql($CHECK_1, 1, 2, 15000, "'$T0'") ],
	[
		score => "SELECT risk_score, decision, reasons, shadow_risk_score, shadow_decision,"
		  . " shadow_reasons, ruleset_version FROM p2pay.score('$u1', '$u2', 20000, 'USD',"
		  . " '$BANK', timestamptz '$T0' + interval '1 minute')"
	],
	[
		state => "SELECT kind, row FROM (SELECT 'account' AS kind, to_jsonb(a) AS row"
		  . " FROM p2pay.account_stats a WHERE to_jsonb(a)->>'user_id' IN ('$u1', '$u2')"
		  . " UNION ALL SELECT 'pair', to_jsonb(s) FROM p2pay.pair_stats s"
		  . " WHERE to_jsonb(s)->>'payer_id' = '$u1') x ORDER BY kind, row::text"
	],
	[
		backtest => "SELECT * FROM p2pay.backtest(timestamptz '$T0' - interval '30 days',"
		  . " timestamptz '$T0' + interval '1 hour')"
	],
	[ resolve => "SELECT p2pay.resolve('$REVIEW', 'approve', 'checked')" ],
	[
		# (a ctid is unique within one table: with the table's oid, within
		# a partitioned payments too)
		delete => "DELETE FROM p2pay.payments WHERE (tableoid, ctid) = (SELECT p.tableoid, p.ctid FROM p2pay.payments p"
		  . " ORDER BY to_jsonb(p)->>'transaction_id' = '$DOOMED' DESC NULLS LAST, p.ctid LIMIT 1)"
	],
	[ prune_state   => 'SELECT * FROM p2pay.prune_state()' ],
	[ rebuild_state => 'SELECT p2pay.rebuild_state()' ],
	[ insert_after  => insert_sql($CHECK_2, 5, 6, 50, "timestamptz '$T0' + interval '2 minutes'") ],
	# the lists: user 20 is blocked, 21 trusted, 22 has amount_limit snoozed
	[ insert_blocked => insert_sql($BLOCKED, 20, 5, 50, "timestamptz '$T0' + interval '3 minutes'") ],
	[ insert_trusted => insert_sql($TRUSTED, 21, 6, 15000, "timestamptz '$T0' + interval '3 minutes'") ],
	[ insert_snoozed => insert_sql($SNOOZED, 22, 7, 15000, "timestamptz '$T0' + interval '3 minutes'") ],
	[
		history => 'SELECT (SELECT count(*) FROM p2pay.config_history),'
		  . ' (SELECT max(version) FROM p2pay.config_history), (SELECT version FROM p2pay.ruleset)'
	],
	[
		stream => "SELECT data FROM pg_logical_slot_get_changes('{slot}', NULL, NULL,"
		  . " 'include-approved', 'true',"
		  . " 'include-xids', 'false', 'include-lsn', 'false', 'include-timestamp', 'false')"
	]);

# An INSERT of a payment that names the payment columns as the table has
# them now (renamed ones by their new name, dropped ones left out), built
# in SQL, kept with \gset and run, returning the row as JSON.  Not run with
# \gexec: after a query \gexec ran fails, psql 17 leaves SQLSTATE and
# LAST_ERROR_MESSAGE empty (15 sets them), and the checks need the error.
# Unset first, so that a failed SELECT runs no earlier statement.
sub insert_sql
{
	my ($txn, $payer, $payee, $amount, $at) = @_;
	my %v = (
		transaction_id    => "'$txn'",
		payer_id          => "'" . uid($payer) . "'",
		payee_id          => "'" . uid($payee) . "'",
		amount            => "'$amount'",
		currency          => "'USD'",
		payment_method_id => "'$BANK'",
		created_at        => $at);
	my $vals = join(', ', map { "('$_', \$v\$$v{$_}\$v\$)" } sort keys %v);
	return <<"EOS";
\\unset p2pay_format
SELECT format('INSERT INTO p2pay.payments AS p (%s) VALUES (%s) RETURNING to_jsonb(p)',
              string_agg(quote_ident(a.attname), ', ' ORDER BY v.name),
              string_agg(v.value, ', ' ORDER BY v.name))
  FROM (VALUES $vals) v (name, value)
  JOIN pg_attribute a ON a.attrelid = (SELECT c.oid FROM pg_class c
                                        WHERE c.relnamespace = 'p2pay'::regnamespace
                                          AND c.relname IN ('payments', 'payments_renamed'))
                     AND a.attname IN (v.name, v.name || '_renamed') AND NOT a.attisdropped
\\gset p2pay_
\\if :{?p2pay_format}
:p2pay_format;
\\endif
EOS
}

# The statements of a step: [label, sql, is_check], in the order they run.
sub statements
{
	my ($step, $slot) = @_;
	my @st;
	push @st, [ 'create slot', "SELECT 'slot' FROM pg_create_logical_replication_slot('$slot', 'p2pay')", 0 ];
	push @st, [ 'warm-up insert', insert_sql($WARM, 9, 10, 20, "timestamptz '$T0' - interval '1 minute'"), 0 ];
	push @st, [ "set session authorization $step->{role}", "SET SESSION AUTHORIZATION $step->{role}", 0 ]
	  if $step->{role};
	my $i = 0;
	push @st, [ 'step statement ' . ++$i . ": $_", $_, 0 ] for @{ $step->{sql} };
	push @st, [ 'reset session authorization', 'RESET SESSION AUTHORIZATION', 0 ]
	  if $step->{role};
	push @st, [ 'extension still there', "SELECT extname FROM pg_extension WHERE extname = 'p2pay'", 1 ];
	for my $c (@checks)
	{
		(my $sql = $c->[1]) =~ s/\{slot\}/$slot/g;
		push @st, [ $c->[0], $sql, 1 ];
	}
	return @st;
}

# A psql script of statements, each between markers that give its SQLSTATE.
sub script
{
	my @st = @_;
	my $s = "\\set VERBOSITY verbose\nSET statement_timeout = '60s';\n";
	for my $i (0 .. $#st)
	{
		my $sql = $st[$i][1];
		$sql .= ';' unless $sql =~ /\\endif\s*$/;
		$s .= "\\echo '\@\@start $i'\n$sql\n"
		  . "\\if :ERROR\n\\echo '\@\@err $i' :SQLSTATE :LAST_ERROR_MESSAGE\n"
		  . "\\else\n\\echo '\@\@ok $i'\n\\endif\n";
	}
	return $s;
}

my $log_offset = 0;

# The crash reports written to the server log since the last look (whole
# lines only), with the statement the crashed process ran.
sub new_crashes
{
	my $log = slurp_file($node->logfile, $log_offset);
	$log =~ s/[^\n]*\z//;
	$log_offset += length($log);
	return grep { /terminated by signal|server process .* was terminated|PANIC|Failed process was running/ }
	  split /\n/, $log;
}

# Wait for the server to accept connections again after a crash.
sub wait_for_restart
{
	$node->poll_query_until('postgres', 'SELECT true')
	  or BAIL_OUT('the server did not come back after a crash');
	return;
}

# Run statements from index $from on in one session of database $db:
# results{i} = { state => ok|err|crash|lost, sqlstate, message, output }.
# Returns the index of the statement the session ended in, if it ended
# before the last.
sub run_statements
{
	my ($db, $st, $from, $results) = @_;
	my $script = script(@$st[ $from .. $#$st ]);
	my ($out, $err, $timed_out) = ('', '');
	my $ret = $node->psql($db, $script, stdout => \$out, stderr => \$err, on_error_stop => 0,
		timeout => $PostgreSQL::Test::Utils::timeout_default, timed_out => \$timed_out);

	my ($current, @buf);
	for my $line (split /\n/, $out)
	{
		if ($line =~ /^\@\@start (\d+)$/)
		{
			$current = $from + $1;
			@buf = ();
		}
		elsif ($line =~ /^\@\@ok (\d+)$/)
		{
			$results->{ $from + $1 } = { state => 'ok', output => join("\n", @buf) };
			undef $current;
		}
		elsif ($line =~ /^\@\@err (\d+) (\S+) ?(.*)$/)
		{
			$results->{ $from + $1 } =
			  { state => 'err', sqlstate => $2, message => $3, output => join("\n", @buf) };
			undef $current;
		}
		else
		{
			push @buf, $line;
		}
	}

	# The postmaster reports a crash after the client has seen its
	# connection go: give it time.
	my @crash = new_crashes();
	my $tries = 0;
	while (!@crash && (defined $current || $ret != 0) && $tries++ < 100)
	{
		usleep(100_000);
		@crash = new_crashes();
	}
	if (@crash)
	{
		wait_for_restart();
		push @crash, new_crashes();
		my $victim = defined $current ? $current : 'background';
		$results->{$victim} = { state => 'crash', message => join(' / ', @crash) };
		return defined $current ? $current : undef;
	}
	if (defined $current)
	{
		$results->{$current} =
		  { state => 'lost', message => $timed_out ? 'psql timed out' : "psql: $err" };
		return $current;
	}
	return;
}

# Run a step in a copy of the seeded database; the results by statement.
# The copy is dropped when the next one is made (or at the end).
my $n = 0;

sub drop_step_db
{
	my ($db) = @_;
	return "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
	  . " WHERE database = '$db';\nDROP DATABASE IF EXISTS $db;\n";
}

sub run_step
{
	my ($step) = @_;
	my $prev = 'step_' . $n;
	my $db   = 'step_' . ++$n;
	my $slot = "slot_$n";
	$node->safe_psql('postgres', drop_step_db($prev) . "CREATE DATABASE $db TEMPLATE seed;");
	my @st = statements($step, $slot);
	my %results;
	my $from = 0;
	while (defined(my $stopped = run_statements($db, \@st, $from, \%results)))
	{
		# a crash or a lost session: the session's state is gone, so the
		# step's own statements after it can't run; the checks can
		$from = $stopped + 1;
		$from++ while $from <= $#st && !$st[$from][2];
		last if $from > $#st;
	}
	return (\@st, \%results);
}

###########################################################################
# The unaltered database: what every check gives there.
###########################################################################
my %expected;
{
	my ($st, $res) = run_step({ name => 'control', sql => [] });
	for my $i (0 .. $#$st)
	{
		my $r = $res->{$i};
		is($r && $r->{state}, 'ok', "control: $st->[$i][0] works on the unaltered database")
		  or diag(explain($r));
		$expected{ $st->[$i][0] } = $r ? $r->{output} : '';
	}
	my $row = eval { decode_json($expected{insert}) } || {};
	is($row->{decision}, 'decline', 'control: the checked payment is declined');
	is( join(',', sort @{ $row->{reasons} || [] }),
		'amount_limit,cycle,new_payee_high_amount,pass_through',
		'control: the checked payment fires amount_limit, new_payee_high_amount, pass_through and cycle'
	);
	my %listed = map { $_ => eval { decode_json($expected{"insert_$_"}) } || {} }
	  qw(blocked trusted snoozed);
	ok( $listed{blocked}{decision} eq 'decline' && grep({ $_ eq 'blocklist' } @{ $listed{blocked}{reasons} }),
		'control: a blocked user\'s payment is declined by the blocklist');
	ok( $listed{trusted}{decision} eq 'approve' && grep({ $_ eq 'amount_limit' } @{ $listed{trusted}{reasons} }),
		'control: a trusted user\'s large payment is approved, amount_limit listed');
	ok(!grep({ $_ eq 'amount_limit' } @{ $listed{snoozed}{reasons} || ['amount_limit'] }),
		'control: amount_limit is snoozed for its user');
	like($expected{stream},
		qr/"event":"flagged".*"event":"decision_changed".*"event":"deleted".*"event":"approved"/s,
		'control: the stream has the resolution, the inserts and the delete');
	like($expected{backtest}, qr/^amount_limit\|/m, 'control: the backtest has a row per rule');
}

###########################################################################
# The steps.
###########################################################################

# The verdict columns of an inserted payment, for comparison.
sub verdict_of
{
	my ($json) = @_;
	my $row = eval { decode_json($json) };
	return undef unless ref $row eq 'HASH';
	my %v;
	for my $k (keys %$row)
	{
		(my $name = $k) =~ s/_renamed$//;
		next
		  unless $name =~
		  /^(risk_score|decision|reasons|shadow_risk_score|shadow_decision|shadow_reasons|is_approved|amount_base|ruleset_version)$/;
		# a boolean column made an integer holds the same truth
		$v{$name} = JSON::PP::is_bool($row->{$k}) ? 0 + $row->{$k} : $row->{$k};
	}
	return \%v;
}

# The checks that change what later checks see.
my %writes = map { $_ => 1 }
  qw(insert resolve delete prune_state rebuild_state insert_after insert_blocked
  insert_trusted insert_snoozed);

# The lines of two outputs that differ, marked - (expected) and + (got).
sub line_diff
{
	my ($want, $got) = @_;
	my %w = map { $_ => 1 } split /\n/, $want;
	my %g = map { $_ => 1 } split /\n/, $got;
	return join("\n",
		(map { "- $_" } grep { !$g{$_} } split /\n/, $want),
		(map { "+ $_" } grep { !$w{$_} } split /\n/, $got));
}

my %compare = (
	insert         => 'verdict',
	insert_after   => 'verdict',
	insert_blocked => 'verdict',
	insert_trusted => 'verdict',
	insert_snoozed => 'verdict',
	score        => 'verdict',
	state        => 'state',
	backtest     => 'backtest',
	stream       => 'stream',
	history      => 'history');

for my $step (@steps)
{
	my ($st, $res) = run_step($step);
	my %differs = map { $_ => 1 } @{ $step->{differs} || [] };
	subtest $step->{name} => sub {
		if (my $bg = $res->{background})
		{
			fail("$step->{name}: a crash outside the step's statements");
			diag("$step->{name}: $bg->{message}");
		}
		# a check is compared with the unaltered database's only while all
		# the checks before it that write worked, as they all do there
		my $all_worked = 1;
		for my $i (0 .. $#$st)
		{
			my ($label, $sql, $is_check) = @{ $st->[$i] };
			my $r = $res->{$i} || { state => 'not run' };
			my $what = "$step->{name}: $label";
			my $compared = $all_worked;
			$all_worked = 0 if $writes{$label} && $r->{state} ne 'ok';

			if ($r->{state} eq 'crash' || $r->{state} eq 'lost' || $r->{state} eq 'not run')
			{
				# statements after a crash in the step's own session are
				# not run; that is the crash's fault, reported once
				next if $r->{state} eq 'not run' && !$is_check;
				fail("$what: $r->{state}");
				diag("$what: $r->{state}: " . ($r->{message} || ''));
				next;
			}
			if ($r->{state} eq 'err')
			{
				my $bad = $r->{sqlstate} eq 'XX000' || $r->{sqlstate} eq '57014';
				ok(!$bad, "$what: no internal error")
				  or diag("$what: ERROR $r->{sqlstate}: $r->{message}");
				note("$what: ERROR $r->{sqlstate}: $r->{message}") unless $bad;

				# Every id this test uses starts so: an error quoting another
				# one read a column of another type as a uuid.
				my @foreign = grep { !/^00000000-0000-4000-[89]000-/ }
				  $r->{message} =~ /\b([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b/g;
				ok(!@foreign, "$what: the error quotes only ids the statement gave")
				  or diag("$what: ERROR $r->{sqlstate}: $r->{message}");
				next;
			}

			# It worked: it gives what the unaltered database gives.
			my $kind = $compare{$label};
			if ($label =~ /^insert/)
			{
				my $got  = verdict_of($r->{output});
				my $want = verdict_of($expected{$label});
				my $scored = $got && defined $got->{risk_score} && defined $got->{decision};
				if (!$scored && $step->{unscored})
				{
					pass("$what: inserted unscored, the scoring trigger being disabled");
					next;
				}
				ok($scored, "$what: the inserted payment is scored")
				  or diag("$what: inserted as $r->{output}");
				next unless $scored && $compared && !$differs{verdict};
				is_deeply($got, $want, "$what: scored as on the unaltered database")
				  or diag("$what: got $r->{output}\nexpected $expected{$label}");
			}
			elsif ($label eq 'extension still there')
			{
				is($r->{output}, 'p2pay', "$what: the step left the extension in place");
			}
			elsif ($kind && $compared && !$differs{$kind})
			{
				ok($r->{output} eq $expected{$label}, "$what: as on the unaltered database")
				  or diag("$what: differs from the unaltered database\n"
					  . line_diff($expected{$label}, $r->{output}));
			}
			else
			{
				pass("$what: works");
			}
		}
	};
}

$node->safe_psql('postgres', drop_step_db("step_$n"));

done_testing();
