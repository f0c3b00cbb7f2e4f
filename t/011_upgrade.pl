# t/011_upgrade.pl: every upgrade path to the default version.
#
# The versions come from the scripts in the tree: install scripts
# p2pay--V.sql and update scripts p2pay--A--B.sql.  Every version one of
# them names that is older than the control file's default_version is a
# version someone may have installed (make checks that update scripts lead
# from each to the default, and so does this test, through the server); for
# each, in its own database, with the current library (the only one
# installed, as after a package upgrade and a restart):
#
# a. CREATE EXTENSION p2pay VERSION 'V', a logical slot on the p2pay output
#    plugin, and the ledger filled as one in use would be: users and their
#    methods, rule changes (rule-set versions, config_history), lists and a
#    snooze, payments through the trigger that make the rules fire, fraud
#    labels; the stream read so far is consumed.
# b. Before the update, V's SQL objects work on the current library: score()
#    agrees with the insert it predicts, payments are scored, backtest()
#    replays them as they were scored, resolve(), DELETE, prune_state() and
#    rebuild_state() work, the state equals a recount, the stream decodes.
# c. ALTER EXTENSION p2pay UPDATE: the extension is at the default version,
#    every row of every table is kept (columns the update adds aside), no
#    sequence has gone back.
# d. After the update: new payments are scored exactly as in a database
#    that was created at the default version and went through the same
#    steps (the fresh database below), score() agrees, the state equals a
#    recount and the fresh database's state, the slot made before the update
#    delivers the events from before and after it, the extension's catalog
#    description equals the fresh database's, and pg_dump of the updated
#    database restores.
#
# The catalog description (extension_catalog) is what keeps update scripts
# honest: whatever a fresh install makes, the update must make the same.
# Its own reach is checked first: each of a list of changes to the fresh
# database, rolled back, must show in it.
use strict;
use warnings;

use lib 't/lib';

use JSON::PP;
use P2payNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $BANK   = '00000000-0000-4000-8000-000000000001';    # registered by every user
my $CARD   = '00000000-0000-4000-8000-000000000002';    # registered by no one
my $WALLET = '00000000-0000-4000-8000-0000000000aa';    # added by fill()

my @STATE_TABLES = @P2payNode::STATE_TABLES;

# Rows an update script is meant to add or change, which the check that
# every row is kept leaves out: TABLE => SQL condition on its row t.  An
# update that seeds a table (a new rule, say) declares it here.
my $RULES_1_1 =
  "'payer_velocity_count', 'payer_fan_out', 'payee_fan_in', 'new_payee_high_amount', 'young_payee_high_amount'";
my %UPDATE_CHANGES_ROWS = (
	# 1.1: four rules learn about accounts with little history, one is new,
	# and the update records that as a rule-set version of its own
	'p2pay.rules'          => "t.name IN ($RULES_1_1)",
	'p2pay.config_history' => "t.table_name = 'rules' AND coalesce(t.new_row, t.old_row)->>'name' IN ($RULES_1_1)",
	'p2pay.ruleset'        => 'true');

# Tables an update drops, whose rows it moves elsewhere: the comparison
# with a fresh install and the recount after the update judge where they
# went.  1.2: a payer's amounts per hour move into its account_daily rows.
my %UPDATE_DROPS_TABLES = ('p2pay.payer_hourly' => 1);

# The rules fill() must make fire (as a reason or a shadow reason), so that
# the state and the history an update must keep are those of a ledger in
# use.
my @FILL_FIRES = qw(amount_limit new_payee_high_amount new_account_high_amount
  pass_through cycle payer_velocity_count unregistered_method blocklist
  amount_deviation);

###########################################################################
# The versions, from the scripts.
###########################################################################
my $default = P2payNode::default_version();
my (%install, %versions);
for my $file (glob('p2pay--*.sql'))
{
	my ($name) = $file =~ /^p2pay--(.+)\.sql$/;
	my @v = split /--/, $name, -1;
	BAIL_OUT("$file is neither p2pay--VERSION.sql nor p2pay--FROM--TO.sql")
	  if @v < 1 || @v > 2 || grep { $_ eq '' } @v;
	$install{ $v[0] } = 1 if @v == 1;
	$versions{$_} = 1 for @v;
}
ok(%install, 'the tree has an install script');
ok($versions{$default}, "default_version $default has a script");

# Older versions first, by their numbers.
sub version_cmp
{
	my ($x, $y) = @_;
	my @x = split /\./, $x;
	my @y = split /\./, $y;
	while (@x && @y)
	{
		my ($p, $q) = (shift @x, shift @y);
		my $c = ($p =~ /^\d+$/ && $q =~ /^\d+$/) ? $p <=> $q : $p cmp $q;
		return $c if $c;
	}
	return @x <=> @y;
}
my @from = sort { version_cmp($a, $b) } grep { version_cmp($_, $default) < 0 } keys %versions;
note('versions updated from: ' . join(', ', @from) . "; to: $default");
my @newer = grep { version_cmp($_, $default) > 0 } keys %versions;
note('versions after the default, not tested: ' . join(', ', sort @newer)) if @newer;

# Plain payments in both of make test's runs: an installation being
# updated starts from a version older than partitioning, and the fresh
# install it is compared with must be made the same way.
local $ENV{P2PAY_PARTITIONED} = '';
my $node = P2payNode::start_node('upgrade');
my $started = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

# The server installs these very scripts, and finds the paths between them.
my $extdir = $node->config_data('--sharedir') . '/extension';
for my $file (sort glob('p2pay--*.sql'))
{
	ok(-f "$extdir/$file" && slurp_file("$extdir/$file") eq slurp_file($file),
		"$file is installed as it is in the tree");
}
is( $node->safe_psql('postgres',
		"SELECT default_version FROM pg_available_extensions WHERE name = 'p2pay'"),
	$default, 'the server installs the control file\'s default_version');
is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(version, ' ' ORDER BY version COLLATE "C")
  FROM pg_available_extension_versions WHERE name = 'p2pay'}),
	join(' ', sort keys %versions),
	'the server can install every version the scripts name');
for my $v (@from)
{
	isnt(
		$node->safe_psql(
			'postgres',
			"SELECT path FROM pg_extension_update_paths('p2pay') WHERE source = "
			  . P2payNode::quote_literal($v)
			  . ' AND target = '
			  . P2payNode::quote_literal($default)),
		'',
		"update scripts lead from $v to $default");
}

###########################################################################
# Helpers.  Payments happen at fixed times from $T, so that every database
# sees the same history: [n, payer, payee, amount, currency, method,
# minutes after $T], with users by number (uid(n)) and transaction_id
# tid(n).
###########################################################################
my $T = $node->safe_psql('postgres',
	"SELECT date_trunc('hour', now()) - interval '2 days'");

# The columns score() returns and the trigger writes, as compared.
my $VERDICT = 'risk_score, decision, reasons, shadow_risk_score, shadow_decision, shadow_reasons';

# What each database's stream must hold, in commit order: "event
# transaction_id decision" per event.
my %expected;

sub tid { return sprintf("'00000000-0000-4000-9000-%012d'::uuid", $_[0]) }

sub at { return "'$T'::timestamptz + interval '$_[0] minutes'" }

sub query { my ($db, $sql) = @_; return $node->safe_psql($db, $sql) }

# pay(DB, PAYMENT...): one INSERT of the payments, scored by the trigger.
# Returns per payment, in order: [transaction_id, decision, ruleset_version,
# verdict].
sub pay
{
	my ($db, @payments) = @_;
	my $values = join(
		",\n  ",
		map {
			my ($n, $payer, $payee, $amount, $currency, $method, $m) = @$_;
			sprintf("(%s, uid(%d), uid(%d), %s, '%s', '%s', %s)",
				tid($n), $payer, $payee, $amount, $currency, $method, at($m))
		} @payments);
	my $out = query(
		$db, qq{
INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency,
                            payment_method_id, created_at)
VALUES $values
RETURNING transaction_id, decision, ruleset_version, $VERDICT});
	my @rows = map { [ split /\|/, $_, 4 ] } split /\n/, $out;
	for my $r (@rows)
	{
		push @{ $expected{$db} }, "flagged $r->[0] $r->[1]"
		  if $r->[1] eq 'review' || $r->[1] eq 'decline';
	}
	return @rows;
}

# score(DB, PAYMENT): the dry run's "ruleset_version|verdict".
sub score
{
	my ($db, $p) = @_;
	my (undef, $payer, $payee, $amount, $currency, $method, $m) = @$p;
	return query($db,
		"SELECT ruleset_version, $VERDICT FROM p2pay.score(uid($payer), uid($payee), $amount, '$currency', '$method', "
		  . at($m) . ')');
}

# stream(DB, FUNCTION): the slot's events, by pg_logical_slot_get_changes
# (FUNCTION 'get', which consumes them) or _peek_changes ('peek').
sub stream
{
	my ($db, $function) = @_;
	my $out = query($db,
		"SELECT data FROM pg_logical_slot_${function}_changes('upgrade', NULL, NULL, "
		  . "'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0')");
	return map {
		my $e = decode_json($_);
		"$e->{event} $e->{transaction_id} $e->{decision}"
	} split /\n/, $out;
}

# The extension's relations of the given relkinds (partitions are read
# through their parents).
sub ext_relations
{
	my ($db, $kinds) = @_;
	return split /\n/, query(
		$db, qq{
SELECT c.oid::regclass
  FROM pg_depend d
  JOIN pg_extension e ON e.oid = d.refobjid
  JOIN pg_class c ON c.oid = d.objid
 WHERE d.refclassid = 'pg_extension'::regclass AND d.classid = 'pg_class'::regclass
   AND d.deptype = 'e' AND e.extname = 'p2pay'
   AND c.relkind IN ($kinds) AND NOT c.relispartition
 ORDER BY 1});
}

sub columns
{
	my ($db, $table) = @_;
	return split /\n/, query(
		$db, qq{
SELECT attname FROM pg_attribute
 WHERE attrelid = '$table'::regclass AND attnum > 0 AND NOT attisdropped
 ORDER BY attnum});
}

# rows(DB, TABLE, DROP, WHERE): TABLE's rows as jsonb text without the
# columns in DROP, sorted.
sub rows
{
	my ($db, $table, $drop, $where) = @_;
	my $minus =
	  @$drop
	  ? ' - ARRAY[' . join(', ', map { P2payNode::quote_literal($_) } @$drop) . ']::text[]'
	  : '';
	$where = defined $where ? "WHERE $where" : '';
	return split /\n/,
	  query($db, "SELECT (to_jsonb(t)$minus)::text FROM $table t $where ORDER BY 1");
}

# Lines in the first list and not in the second, as a multiset.
sub minus
{
	my ($x, $y) = @_;
	my %n;
	$n{$_}++ for @$y;
	return grep { !($n{$_} && $n{$_}--) } @$x;
}

# is_same(X, Y, NAME, X_NAME, Y_NAME): two lists hold the same lines; a
# failure shows the lines only one of them has, under X_NAME or Y_NAME.
sub is_same
{
	my ($x, $y, $name, $x_name, $y_name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my @only_x = minus($x, $y);
	my @only_y = minus($y, $x);
	ok(!@only_x && !@only_y, $name)
	  or diag(join("\n",
			(map { "only $x_name: $_" } @only_x),
			(map { "only $y_name: $_" } @only_y)));
	return;
}

# state_vs_recount(DB, NAME, BEFORE): P2payNode's, on this node, named by DB.
sub state_vs_recount
{
	my ($db, $name, $before) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	return P2payNode::state_vs_recount($node, $db, "$db: $name", $before);
}

# snapshot(DB): every table's columns and rows, every sequence's position.
sub snapshot
{
	my ($db) = @_;
	my %s;
	for my $table (ext_relations($db, "'r', 'p'"))
	{
		my $where = $UPDATE_CHANGES_ROWS{$table};
		$s{table}{$table} = {
			count   => query($db, "SELECT count(*) FROM $table"),
			columns => [ columns($db, $table) ],
			rows    => [ rows($db, $table, [], defined $where ? "NOT ($where)" : undef) ]
		};
	}
	for my $seq (ext_relations($db, "'S'"))
	{
		$s{sequence}{$seq} = query($db, "SELECT last_value, is_called FROM $seq");
	}
	return \%s;
}

###########################################################################
# The catalog description of the extension's objects.
###########################################################################

# extension_catalog(DB, BEFORE): one line per fact about the extension's
# objects, sorted: its members; the tables dumped by pg_dump and their
# conditions; relations (kind, replica identity, options, row security,
# partition key, owner, ACL), their columns (position, type, NOT NULL,
# default, identity, generated, collation, ACL), constraints, indexes,
# triggers and their enabled state, policies, rules, statistics,
# inheritance; functions (definition with language, volatility,
# strictness, security, parallel safety, cost, settings and body or C
# symbol; owner; ACL); views' definitions; types (enum labels in order,
# domains); sequences; the schema; comments.  No OID appears, so two
# databases compare.  BEFORE, if given, is SQL run first in a transaction
# that is rolled back.
sub extension_catalog
{
	my ($db, $before) = @_;
	my $sql = q{
WITH ext AS (
  SELECT e.oid, e.extnamespace FROM pg_catalog.pg_extension e WHERE e.extname = 'p2pay'),
members AS (
  SELECT d.classid, d.objid, d.objsubid FROM pg_catalog.pg_depend d, ext
   WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
     AND d.refobjid = ext.oid AND d.deptype = 'e'),
types AS (
  SELECT objid AS oid FROM members WHERE classid = 'pg_catalog.pg_type'::pg_catalog.regclass),
rels AS (
  SELECT objid AS oid FROM members WHERE classid = 'pg_catalog.pg_class'::pg_catalog.regclass
  UNION
  SELECT t.typrelid FROM pg_catalog.pg_type t JOIN types USING (oid) WHERE t.typrelid <> 0),
cons AS (
  SELECT c.oid FROM pg_catalog.pg_constraint c
   WHERE c.conrelid IN (SELECT oid FROM rels) OR c.contypid IN (SELECT oid FROM types)),
items(item) AS (
  SELECT pg_catalog.format('extension %s schema %s relocatable %s owner %s',
                           e.extname, n.nspname, e.extrelocatable,
                           pg_catalog.pg_get_userbyid(e.extowner))
    FROM pg_catalog.pg_extension e JOIN ext USING (oid)
    JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
  UNION ALL
  SELECT pg_catalog.format('schema %s owner %s acl %s', n.nspname,
                           pg_catalog.pg_get_userbyid(n.nspowner), n.nspacl)
    FROM pg_catalog.pg_namespace n JOIN ext ON n.oid = ext.extnamespace
  UNION ALL
  SELECT 'member ' || pg_catalog.pg_describe_object(m.classid, m.objid, m.objsubid)
    FROM members m
  UNION ALL
  SELECT pg_catalog.format('dumped by pg_dump: %s %L', c.rel::pg_catalog.regclass, c.cond)
    FROM pg_catalog.pg_extension e JOIN ext USING (oid),
         unnest(e.extconfig, e.extcondition) AS c(rel, cond)
  UNION ALL
  SELECT pg_catalog.format('relation %s kind %s persistence %s replica identity %s options %s '
                           'row security %s/%s partition key %s owner %s acl %s',
                           c.oid::pg_catalog.regclass, c.relkind, c.relpersistence,
                           c.relreplident, c.reloptions, c.relrowsecurity,
                           c.relforcerowsecurity, pg_catalog.pg_get_partkeydef(c.oid),
                           pg_catalog.pg_get_userbyid(c.relowner), c.relacl)
    FROM pg_catalog.pg_class c JOIN rels USING (oid)
  UNION ALL
  SELECT pg_catalog.format('column %s.%I position %s type %s not null %s default %s '
                           'identity %s generated %s collation %s acl %s',
                           a.attrelid::pg_catalog.regclass, a.attname,
                           pg_catalog.row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum),
                           pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
                           pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), a.attidentity,
                           a.attgenerated, co.collname, a.attacl)
    FROM pg_catalog.pg_attribute a
    JOIN pg_catalog.pg_class c ON c.oid = a.attrelid AND c.relkind <> 'S'
    JOIN rels ON rels.oid = a.attrelid
    LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
    LEFT JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
    LEFT JOIN pg_catalog.pg_collation co
           ON co.oid = a.attcollation AND a.attcollation <> t.typcollation
   WHERE a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT pg_catalog.format('constraint %I on %s: %s', c.conname,
                           coalesce(c.conrelid::pg_catalog.regclass::text,
                                    c.contypid::pg_catalog.regtype::text),
                           pg_catalog.pg_get_constraintdef(c.oid))
    FROM pg_catalog.pg_constraint c JOIN cons USING (oid)
  UNION ALL
  SELECT pg_catalog.format('index %s: %s replica identity %s clustered %s valid %s',
                           i.indexrelid::pg_catalog.regclass,
                           pg_catalog.pg_get_indexdef(i.indexrelid),
                           i.indisreplident, i.indisclustered, i.indisvalid)
    FROM pg_catalog.pg_index i JOIN rels ON rels.oid = i.indrelid
  UNION ALL
  SELECT pg_catalog.format('trigger %s enabled %s', pg_catalog.pg_get_triggerdef(t.oid),
                           t.tgenabled)
    FROM pg_catalog.pg_trigger t JOIN rels ON rels.oid = t.tgrelid
   WHERE NOT t.tgisinternal
  UNION ALL
  SELECT pg_catalog.format('function %s owner %s acl %s: %s', p.oid::pg_catalog.regprocedure,
                           pg_catalog.pg_get_userbyid(p.proowner), p.proacl,
                           CASE WHEN p.prokind = 'a' THEN 'aggregate'
                                ELSE pg_catalog.pg_get_functiondef(p.oid) END)
    FROM pg_catalog.pg_proc p JOIN members m
      ON m.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND m.objid = p.oid
  UNION ALL
  SELECT pg_catalog.format('view %s: %s', c.oid::pg_catalog.regclass,
                           pg_catalog.pg_get_viewdef(c.oid, true))
    FROM pg_catalog.pg_class c JOIN rels USING (oid) WHERE c.relkind IN ('v', 'm')
  UNION ALL
  SELECT pg_catalog.format('type %s kind %s owner %s acl %s labels %s base %s not null %s '
                           'default %s',
                           t.oid::pg_catalog.regtype, t.typtype,
                           pg_catalog.pg_get_userbyid(t.typowner), t.typacl,
                           (SELECT pg_catalog.string_agg(pg_catalog.quote_literal(e.enumlabel),
                                                         ', ' ORDER BY e.enumsortorder)
                              FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid),
                           CASE WHEN t.typbasetype <> 0
                                THEN pg_catalog.format_type(t.typbasetype, t.typtypmod) END,
                           t.typnotnull, t.typdefault)
    FROM pg_catalog.pg_type t JOIN types USING (oid)
  UNION ALL
  SELECT pg_catalog.format('sequence %s type %s start %s increment %s min %s max %s cache %s '
                           'cycle %s owned by %s',
                           s.seqrelid::pg_catalog.regclass, s.seqtypid::pg_catalog.regtype,
                           s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache,
                           s.seqcycle,
                           (SELECT pg_catalog.string_agg(pg_catalog.format('%s.%I (%s)',
                                     d.refobjid::pg_catalog.regclass, a.attname, d.deptype), ', ')
                              FROM pg_catalog.pg_depend d
                              JOIN pg_catalog.pg_attribute a
                                ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                             WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                               AND d.objid = s.seqrelid
                               AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                               AND d.deptype IN ('a', 'i')))
    FROM pg_catalog.pg_sequence s JOIN rels ON rels.oid = s.seqrelid
  UNION ALL
  SELECT pg_catalog.format('policy %I on %s: %s permissive %s roles %s using %s check %s',
                           p.polname, p.polrelid::pg_catalog.regclass, p.polcmd,
                           p.polpermissive, p.polroles::pg_catalog.regrole[],
                           pg_catalog.pg_get_expr(p.polqual, p.polrelid),
                           pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid))
    FROM pg_catalog.pg_policy p JOIN rels ON rels.oid = p.polrelid
  UNION ALL
  SELECT 'rule ' || pg_catalog.pg_get_ruledef(r.oid)
    FROM pg_catalog.pg_rewrite r JOIN rels ON rels.oid = r.ev_class
   WHERE r.rulename <> '_RETURN'
  UNION ALL
  SELECT 'statistics ' || pg_catalog.pg_get_statisticsobjdef(s.oid)
    FROM pg_catalog.pg_statistic_ext s JOIN rels ON rels.oid = s.stxrelid
  UNION ALL
  SELECT pg_catalog.format('inherits %s from %s', i.inhrelid::pg_catalog.regclass,
                           i.inhparent::pg_catalog.regclass)
    FROM pg_catalog.pg_inherits i
   WHERE i.inhrelid IN (SELECT oid FROM rels) OR i.inhparent IN (SELECT oid FROM rels)
  UNION ALL
  SELECT pg_catalog.format('comment on %s: %s',
                           pg_catalog.pg_describe_object(d.classoid, d.objoid, d.objsubid),
                           d.description)
    FROM pg_catalog.pg_description d
   WHERE (d.classoid, d.objoid) IN (SELECT classid, objid FROM members)
      OR (d.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass
          AND d.objoid IN (SELECT i.indexrelid FROM pg_catalog.pg_index i
                            WHERE i.indrelid IN (SELECT oid FROM rels)))
      OR (d.classoid = 'pg_catalog.pg_constraint'::pg_catalog.regclass
          AND d.objoid IN (SELECT oid FROM cons))
      OR (d.classoid = 'pg_catalog.pg_trigger'::pg_catalog.regclass
          AND d.objoid IN (SELECT t.oid FROM pg_catalog.pg_trigger t
                            WHERE t.tgrelid IN (SELECT oid FROM rels))))
SELECT pg_catalog.string_agg(item, E'\x1e' ORDER BY item) FROM items;
};
	$sql = "BEGIN;\n$before;\n$sql\nROLLBACK;" if defined $before;
	return split /\x1e/, query($db, $sql);
}

###########################################################################
# The steps each database goes through.
###########################################################################

# fill(DB, VERSION): a ledger in use, made with what version 1.0 has.  A
# version that adds a table adds here, for VERSION from it on
# (version_cmp), what fills it: the update from it must show that the
# table's rows are kept.
sub fill
{
	my ($db, $version) = @_;
	P2payNode::seed_users($node, $db, 41);

	# Each transaction that changes rules, thresholds or lists is a
	# rule-set version of its own.
	query($db, q{
UPDATE p2pay.rules SET params = params || '{"max_count": 3}' WHERE name = 'payer_velocity_count'});
	query($db, q{
BEGIN;
UPDATE p2pay.rules SET mode = 'shadow' WHERE name = 'amount_deviation';
UPDATE p2pay.settings SET review_threshold = 0.25;
COMMIT;});
	query(
		$db, qq{
INSERT INTO p2pay.currencies (code, name, rate_to_base) VALUES ('GBP', 'Pound sterling', 1.25);
INSERT INTO p2pay.payment_methods (id, name) VALUES ('$WALLET', 'Wallet');
INSERT INTO p2pay.user_payment_methods (user_id, payment_method_id, details)
  VALUES (uid(22), '$WALLET', 'wallet of user 22');
UPDATE p2pay.users SET created_at = '$T'::timestamptz - interval '1 day',
                       email_address = 'new\@example.com'
 WHERE id = uid(41);
INSERT INTO p2pay.blocklist (user_id, reason) VALUES (uid(30), 'chargeback fraud');
INSERT INTO p2pay.blocklist (user_id, reason, expires_at)
  VALUES (uid(33), 'disputed, then cleared', '$T');
INSERT INTO p2pay.allowlist (user_id, reason) VALUES (uid(31), 'payroll account');
SELECT p2pay.snooze('amount_limit', uid(32), now() + interval '30 days', 'known large payer');
});

	# Old history first (prune_state() has something to prune), then a day.
	pay($db, [ 1, 27, 28, 100, 'USD', $BANK, -80 * 1440 ]);
	pay($db, [ 2, 27, 28, 100, 'USD', $BANK, -79 * 1440 ]);
	pay($db, [ 3, 28, 27, 50,  'USD', $BANK, -78 * 1440 ]);
	# amount_limit; a new payee under 1.0 (1.1 waits until p2pay has known
	# the payer for 30 days)
	pay($db, [ 10, 1, 2, 15000, 'USD', $BANK, 0 ]);
	pay($db, [ 11, 3, 4, 1500,  'USD', $BANK, 1 ]);
	pay($db, [ 41, 27, 29, 1500, 'USD', $BANK, 2 ]);    # new payee of a payer known 80 days
	# pass_through: five payers into 10 (one multi-row INSERT), 10 pays on
	pay($db, map { [ 11 + $_, 4 + $_, 10, 400, 'USD', $BANK, 10 + $_ ] } 1 .. 5);
	pay($db, [ 17, 10, 11, 1000, 'USD', $BANK, 20 ]);
	# cycle: 12 -> 13 -> 14 -> 12
	pay($db, [ 18, 12, 13, 5000, 'USD', $BANK, 30 ]);
	pay($db, [ 19, 13, 14, 4800, 'USD', $BANK, 40 ]);
	pay($db, [ 20, 14, 12, 4600, 'USD', $BANK, 50 ]);
	# payer_velocity_count (max_count 3)
	pay($db, [ 20 + $_, 15, 16, 20, 'USD', $BANK, 60 + $_ ]) for 1 .. 5;
	pay($db, [ 26, 17, 30, 10,    'USD', $BANK, 74 ]);     # blocklisted payee
	pay($db, [ 27, 31, 18, 15000, 'USD', $BANK, 75 ]);     # allowlisted payer
	pay($db, [ 28, 32, 19, 15000, 'USD', $BANK, 76 ]);     # amount_limit snoozed
	pay($db, [ 29, 20, 21, 50,    'USD', $CARD, 77 ]);     # unregistered method
	pay($db, [ 30, 22, 23, 100, 'EUR', $BANK, 78 ], [ 31, 23, 22, 80, 'GBP', $WALLET, 79 ]);
	pay($db, [ 32, 41, 24, 2000, 'USD', $BANK, 80 ]);      # new account
	pay($db, [ 33, 33, 24, 10,   'USD', $BANK, 81 ]);      # blocklist entry expired
	# amount_deviation, in shadow mode
	pay($db, [ 33 + $_, 25, 26, 30, 'USD', $BANK, 90 + $_ ]) for 1 .. 6;
	pay($db, [ 40, 25, 26, 5000, 'USD', $BANK, 100 ]);

	query(
		$db, qq{
INSERT INTO p2pay.fraud_labels (transaction_id, is_fraud, source) VALUES
  (@{[tid(26)]}, true, 'chargeback'), (@{[tid(20)]}, true, 'investigation'),
  (@{[tid(11)]}, false, 'confirmed by the payer')});

	my %fired = map { $_ => 1 } split /\n/, query(
		$db, q{
SELECT DISTINCT r FROM p2pay.payments,
       unnest(coalesce(reasons, '{}') || coalesce(shadow_reasons, '{}')) r});
	is(join(' ', grep { !$fired{$_} } @FILL_FIRES), '', "$db: the filled ledger has every rule fired");
	return;
}

# before_update(DB): what an installation does between the library's
# upgrade and ALTER EXTENSION ... UPDATE, checked as it goes.
sub before_update
{
	my ($db) = @_;

	my $probe  = [ 100, 15, 16, 20, 'USD', $BANK, 110 ];
	my $scored = score($db, $probe);
	my ($row) = pay($db, $probe);
	is($scored, "$row->[2]|$row->[3]",
		"$db: score() gives the verdict the insert of the same payment then gets");

	# structuring and payer_velocity_amount; pass_through again
	pay($db, [ 100 + $_, 1, 2, 9400 + 100 * $_, 'USD', $BANK, 110 + $_ ]) for 1 .. 3;
	pay($db, [ 104, 10, 11, 1200, 'USD', $BANK, 114 ]);

	# Every payment of the day was scored under the rules as they are now.
	my @bt = map { [ split /\|/ ] } split /\n/, query(
		$db, qq{
SELECT b.rule, b.payments, b.fired, b.fired_at_time, b.labelled_fraud
  FROM p2pay.backtest('$T', '$T'::timestamptz + interval '1 day') b});
	is( join("\n",
			map { "$_->[0]: fired $_->[2] in the replay, $_->[3] at the time" }
			grep { $_->[2] != $_->[3] } @bt),
		'',
		"$db: backtest() replays the day's payments as the trigger scored them");
	my ($overall) = grep { $_->[0] eq 'overall' } @bt;
	is( "$overall->[1]|$overall->[2]|$overall->[4]",
		query(
			$db, qq{
SELECT count(*), count(*) FILTER (WHERE reasons <> '{}' OR shadow_reasons <> '{}'),
       count(*) FILTER (WHERE l.is_fraud)
  FROM p2pay.payments p LEFT JOIN p2pay.fraud_labels l USING (transaction_id)
 WHERE p.created_at >= '$T' AND p.created_at < '$T'::timestamptz + interval '1 day'}),
		"$db: backtest() counts the day's payments, those a rule fired on, and the fraud labelled");

	ok(query($db, 'SELECT count(*) FROM p2pay.rule_stats WHERE evaluations > 0') > 0,
		"$db: rule_stats reads the shared counters");

	# The oldest payment under review, approved by an analyst.
	my $review = query($db, 'SELECT transaction_id FROM p2pay.review_queue LIMIT 1');
	isnt($review, '', "$db: the review queue holds payments");
	query($db, "SELECT p2pay.resolve('$review', 'approve', 'checked with the payer')");
	is( query(
			$db, qq{
SELECT p.decision, l.old_decision, l.new_decision, l.note
  FROM p2pay.payments p JOIN p2pay.decision_log l USING (transaction_id)
 WHERE p.transaction_id = '$review'}),
		'approve|review|approve|checked with the payer',
		"$db: resolve() approves the payment and logs it");
	push @{ $expected{$db} }, "decision_changed $review approve";

	# A payment deleted: the state forgets it.
	my $out = "SELECT out_count FROM p2pay.account_stats WHERE user_id = uid(15)";
	my $n   = query($db, $out);
	my ($tid, $decision) = split /\|/,
	  query($db, 'DELETE FROM p2pay.payments WHERE transaction_id = ' . tid(21)
		  . ' RETURNING transaction_id, decision');
	is(query($db, $out), $n - 1, "$db: a DELETE takes the payment out of account_stats");
	push @{ $expected{$db} }, "deleted $tid $decision";

	state_vs_recount($db, 'before the update');

	# prune_state() deletes the old hours and days; rebuild_state() counts them
	# back: the recount equals the state as it was before the prune.
	my ($pruned) = state_vs_recount($db, 'pruned and rebuilt',
		q{SELECT 'pruned', hours, days FROM p2pay.prune_state();});
	my (undef, $hours, $days) = split /\|/, $pruned;
	ok($hours > 0 && $days > 0,
		"$db: prune_state() deletes old hourly and daily rows ($hours, $days)");
	return;
}

# after_update(DB): payments and dry runs after the update; returns what
# must be the same in every database: the verdicts (without rule-set
# versions, which count the configuration changes an update may make) and
# the state.
sub after_update
{
	my ($db) = @_;
	my @verdicts;
	my @payments = (
		[ [ 200, 15, 16, 20,    'USD', $BANK,   200 ] ],    # velocity
		[ [ 201, 13, 14, 3000,  'USD', $BANK,   201 ] ],
		[ [ 202, 14, 12, 3000,  'USD', $BANK,   202 ] ],    # cycle
		[ map { [ 202 + $_, 33 + $_, 39, 500, 'USD', $BANK, 202 + $_ ] } 1 .. 5 ],
		[ [ 208, 39, 40, 2000,  'USD', $BANK,   208 ] ],    # pass_through
		[ [ 209, 25, 26, 6000,  'USD', $BANK,   209 ] ],    # amount_deviation
		[ [ 210, 1,  2,  500,   'USD', $BANK,   210 ] ],    # payer_velocity_amount
		[ [ 211, 31, 18, 20000, 'USD', $BANK,   211 ] ],    # allowlist
		[ [ 212, 17, 30, 5,     'USD', $BANK,   212 ] ],    # blocklist
		[ [ 213, 32, 19, 20000, 'USD', $BANK,   213 ] ],    # snoozed
		[ [ 214, 41, 35, 3000,  'USD', $BANK,   214 ] ],    # new account
		[ [ 215, 20, 21, 50,    'USD', $CARD,   215 ], [ 216, 22, 23, 70, 'GBP', $WALLET, 216 ] ]);
	for my $p (@payments)
	{
		push @verdicts, map { "insert $_->[0]: $_->[3]" } pay($db, @$p);
	}
	for my $p ([ 0, 1, 2, 100, 'USD', $BANK, 300 ], [ 0, 30, 1, 10, 'EUR', $BANK, 300 ],
		[ 0, 15, 16, 20, 'USD', $BANK, 300 ], [ 0, 39, 40, 5000, 'USD', $BANK, 300 ],
		[ 0, 41, 3, 5000, 'USD', $CARD, 300 ], [ 0, 25, 26, 10000, 'USD', $BANK, 300 ])
	{
		push @verdicts, "score() of @$p[1 .. 3]: " . (split /\|/, score($db, $p), 2)[1];
	}

	my $review = query($db,
		"SELECT transaction_id FROM p2pay.review_queue WHERE created_at >= " . at(200) . ' LIMIT 1');
	isnt($review, '', "$db: payments after the update are held for review");
	query($db, "SELECT p2pay.resolve('$review', 'decline', 'fraud ring')");
	push @{ $expected{$db} }, "decision_changed $review decline";
	my ($tid, $decision) = split /\|/,
	  query($db, 'DELETE FROM p2pay.payments WHERE transaction_id = ' . tid(200)
		  . ' RETURNING transaction_id, decision');
	push @{ $expected{$db} }, "deleted $tid $decision";

	state_vs_recount($db, 'after the update');
	return (\@verdicts,
		[ map { my $t = $_; map { "$t $_" } rows($db, "p2pay.$t", []) } @STATE_TABLES ]);
}

###########################################################################
# The fresh database: created at the default version, same steps.
###########################################################################
P2payNode::create_db($node, 'fresh');
is(query('fresh', "SELECT extversion FROM pg_extension WHERE extname = 'p2pay'"),
	$default, "fresh: CREATE EXTENSION p2pay installs $default");
fill('fresh', $default);
before_update('fresh');
my ($fresh_verdicts, $fresh_state) = after_update('fresh');
my @fresh_catalog = extension_catalog('fresh');

# The description sees each of these changes.
my @drifts = (
	[ 'a column default', q{ALTER TABLE p2pay.payments ALTER COLUMN reasons SET DEFAULT '{}'} ],
	[ 'a column added',   q{ALTER TABLE p2pay.users ADD COLUMN phone text} ],
	[ 'a column type',    q{ALTER TABLE p2pay.users ALTER COLUMN first_name TYPE varchar(200)} ],
	[ 'a NOT NULL',       q{ALTER TABLE p2pay.fraud_labels ALTER COLUMN source SET NOT NULL} ],
	[ 'a constraint', q{ALTER TABLE p2pay.settings DROP CONSTRAINT settings_thresholds_ordered} ],
	[ 'an index',          q{DROP INDEX p2pay.payments_review_idx} ],
	[ 'a trigger',         q{DROP TRIGGER payments_truncate ON p2pay.payments} ],
	[ 'a trigger enabled', q{ALTER TABLE p2pay.rules ENABLE ALWAYS TRIGGER rules_history} ],
	[
		'a function body', q{
CREATE OR REPLACE FUNCTION p2pay.rules_at(version bigint) RETURNS jsonb
  LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  AS $$ SELECT '[]'::jsonb $$}
	],
	[ 'a function setting', q{ALTER FUNCTION p2pay.rebuild_state() RESET search_path} ],
	[ 'a function volatility', q{ALTER FUNCTION p2pay.rules_at(bigint) VOLATILE} ],
	[
		'a function ACL',
		q{GRANT EXECUTE ON FUNCTION p2pay.backtest(timestamptz, timestamptz, jsonb) TO PUBLIC}
	],
	[ 'a table ACL',        q{GRANT SELECT ON p2pay.rules TO PUBLIC} ],
	[ 'a column ACL',       q{GRANT SELECT (name) ON p2pay.rules TO PUBLIC} ],
	[ 'a schema ACL',       q{GRANT USAGE ON SCHEMA p2pay TO PUBLIC} ],
	[
		'a view',
		q{CREATE OR REPLACE VIEW p2pay.rule_stats AS
            SELECT r.*, p2pay.stats_overflow() AS overflow
              FROM p2pay.rule_stats_read() r WHERE evaluations >= 0}
	],
	[ 'the replica identity', q{ALTER TABLE p2pay.payments REPLICA IDENTITY DEFAULT} ],
	[ 'an enum label',      q{ALTER TYPE p2pay.rule_mode ADD VALUE 'paused'} ],
	[ 'a comment',          q{COMMENT ON TABLE p2pay.users IS NULL} ],
	[ 'a sequence',         q{ALTER SEQUENCE p2pay.decision_log_id_seq CACHE 10} ],
	[ 'a member',           q{ALTER EXTENSION p2pay DROP FUNCTION p2pay.rules_at(bigint)} ],
	[
		'a dumped table',
		q{UPDATE pg_extension SET extconfig = extconfig[2:], extcondition = extcondition[2:]
           WHERE extname = 'p2pay'}
	],
	[
		'a dump condition', q{
UPDATE pg_extension SET extcondition = array_replace(extcondition, 'WHERE version > 1', '')
 WHERE extname = 'p2pay'}
	]);
for my $d (@drifts)
{
	my ($what, $sql) = @$d;
	my @changed = extension_catalog('fresh', $sql);
	ok(minus(\@changed, \@fresh_catalog) + minus(\@fresh_catalog, \@changed) > 0,
		"the catalog description sees $what");
}

###########################################################################
# Every older version, updated.
###########################################################################
for my $v (@from)
{
	(my $db = "from_$v") =~ s/\W/_/g;
	P2payNode::create_db($node, $db, $v);
	is(query($db, "SELECT extversion FROM pg_extension WHERE extname = 'p2pay'"),
		$v, "$db: CREATE EXTENSION p2pay VERSION '$v'");
	query($db, "SELECT 'created' FROM pg_create_logical_replication_slot('upgrade', 'p2pay')");

	fill($db, $v);
	my @events = stream($db, 'get');
	ok(@events > 0, "$db: the stream has events of the filled ledger");
	is(join("\n", @events), join("\n", @{ $expected{$db} }),
		"$db: the stream holds the filled ledger's flagged payments");
	$expected{$db} = [];

	before_update($db);
	is(join("\n", stream($db, 'peek')), join("\n", @{ $expected{$db} }),
		"$db: before the update, the stream decodes inserts, a decision change and a delete");

	my $before = snapshot($db);
	my $version_before = query($db, 'SELECT version FROM p2pay.ruleset');
	query($db, 'ALTER EXTENSION p2pay UPDATE');
	is(query($db, "SELECT extversion FROM pg_extension WHERE extname = 'p2pay'"),
		$default, "$db: ALTER EXTENSION p2pay UPDATE brings it to $default");
	if ($v eq '1.0')
	{
		is( query(
				$db, "SELECT r.name, r.params->'short_history_min_amount', r.params->'min_known_days',
				             r.params->'max_count'
				        FROM p2pay.rules r WHERE r.name IN ($RULES_1_1) ORDER BY r.name"),
			"new_payee_high_amount||30|\npayee_fan_in|100||\npayer_fan_out|||\npayer_velocity_count|||3\nyoung_payee_high_amount|||",
			"$db: the update adds short_history_min_amount, min_known_days and young_payee_high_amount, keeping the params it doesn't touch");
		is( query(
				$db, "SELECT r.version - $version_before, count(*) FROM p2pay.ruleset r
				        JOIN p2pay.config_history c ON c.version = r.version GROUP BY r.version"),
			'1|5', "$db: the update's five rule changes are one new rule-set version");
	}

	# Every row kept; only added columns differ.
	my $after_tables = { map { $_ => 1 } ext_relations($db, "'r', 'p'") };
	for my $table (sort keys %{ $before->{table} })
	{
		my $b = $before->{table}{$table};
		if ($UPDATE_DROPS_TABLES{$table})
		{
			ok(!$after_tables->{$table}, "$db: the update drops $table");
			next;
		}
		ok($after_tables->{$table}, "$db: $table is still a table of the extension") or next;
		my %had  = map { $_ => 1 } @{ $b->{columns} };
		my @cols = columns($db, $table);
		my %has  = map { $_ => 1 } @cols;
		is(join(', ', grep { !$has{$_} } @{ $b->{columns} }),
			'', "$db: $table keeps its columns");
		my @added = grep { !$had{$_} } @cols;
		ok($b->{count} > 0, "$db: $table has rows before the update");
		my $where = $UPDATE_CHANGES_ROWS{$table};
		is_same([ rows($db, $table, \@added, defined $where ? "NOT ($where)" : undef) ],
			$b->{rows},
			"$db: $table keeps every row"
			  . (@added ? ' (added columns: ' . join(', ', @added) . ')' : ''),
			'after the update', 'before it');
	}
	# A sequence the update drops (with a table it replaces, say) is for
	# the comparison with a fresh install to judge.
	my %sequences = map { $_ => 1 } ext_relations($db, "'S'");
	for my $seq (sort keys %{ $before->{sequence} })
	{
		if (!$sequences{$seq})
		{
			note("$db: the update dropped $seq");
			next;
		}
		my ($was) = split /\|/, $before->{sequence}{$seq};
		my $is = query($db, "SELECT last_value FROM $seq");
		ok($is >= $was, "$db: $seq has not gone back ($was, now $is)");
	}

	my ($verdicts, $state) = after_update($db);
	is_same($verdicts, $fresh_verdicts,
		"$db: after the update, payments and dry runs are scored as in the fresh database",
		'updated', 'fresh');
	is_same($state, $fresh_state, "$db: the state equals the fresh database's",
		'updated', 'fresh');
	is(join("\n", stream($db, 'get')), join("\n", @{ $expected{$db} }),
		"$db: the slot made before the update delivers the events from before and after it");

	is_same([ extension_catalog($db) ], \@fresh_catalog,
		"$db: the extension's objects are those of a fresh install of $default",
		"updated from $v", "installed at $default");

	# pg_dump of the updated database restores, as README says.
	my $dump = $node->basedir . "/$db.sql";
	$node->command_ok([ 'pg_dump', '-f', $dump, '-d', $db ], "$db: pg_dump");
	query('postgres', "CREATE DATABASE ${db}_restored");
	{
		local $ENV{PGOPTIONS} = '-c session_replication_role=replica';
		$node->command_checks_all(
			[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', "${db}_restored", '-f', $dump ],
			0, [qr//], [qr/^$/], "$db: the dump restores with no error or warning");
	}
	for my $table (sort keys %$after_tables)
	{
		# config_history's version 1 is CREATE EXTENSION's, remade by the
		# restore; ruleset's xact names a transaction of the dumped database.
		my $where = $table eq 'p2pay.config_history' ? 'version > 1' : undef;
		my $drop  = $table eq 'p2pay.ruleset' ? ['xact'] : [];
		is_same([ rows("${db}_restored", $table, $drop, $where) ],
			[ rows($db, $table, $drop, $where) ],
			"$db: $table restored", 'restored', 'dumped');
	}
	query($db, "SELECT pg_drop_replication_slot('upgrade')");
}

is(query('postgres', 'SELECT pg_postmaster_start_time()'),
	$started, 'no backend crashed: the server never restarted');
unlike(slurp_file($node->logfile), qr/terminated by signal|TRAP:|PANIC:/,
	'the server log has no crash');

$node->stop;
done_testing();
