# t/019_fact_agreement.pl: the backtest replays what the trigger decided,
# payment by payment.
#
# The trigger reads the rules' facts from the per-account state tables;
# p2pay.backtest() and p2pay.backtest_payments() rebuild them in memory from
# the payments.  A seeded network from eval/simulate.py (honest circles,
# rent, shops, and every planted fraud typology) is inserted through the
# trigger in created_at order, and backtest_payments() must give every
# payment the reasons, shadow reasons, scores and decisions the trigger
# wrote on it:
#   - under the default rules, over all time and over the evaluation period
#     alone (whose history the backtest reads from before its range);
#   - under two changed rule sets (windows, limits and params changed, rules
#     in shadow or off, normals compared with baseline_factor, loops of 3
#     and 4): each is applied to a database of its own before the payments
#     are inserted, and what the trigger wrote there must equal what
#     backtest_payments(from, to, that rule set as JSON) replays on the
#     database the default rules scored, over both ranges.
# A difference fails the test and names the first payments that differ.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/lib";

use P2payNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# A network of some 31,000 payments: every typology, four instances each.
my @network = (
	'--seed', '19', '--people', '600', '--tenants', '120', '--landlords', '24',
	'--businesses', '3', '--busy-businesses', '1', '--new-businesses', '2',
	'--days', '21', '--warmup-days', '21', '--instances', '4');

# The rule sets, as SQL run before the payments are inserted.
my %rule_sets = (
	changed => q{
UPDATE p2pay.rules SET params = params || '{"max_amount": 3000}' WHERE name = 'amount_limit';
UPDATE p2pay.rules SET params = params || '{"max_count": 4, "window": "30 minutes", "baseline_factor": 2, "baseline_days": 3}'
 WHERE name = 'payer_velocity_count';
UPDATE p2pay.rules SET params = params || '{"max_amount": 2000, "window": "6 hours"}'
 WHERE name = 'payer_velocity_amount';
UPDATE p2pay.rules SET mode = 'shadow', params = params || '{"max_payees": 3, "window": "6 hours"}'
 WHERE name = 'payer_fan_out';
UPDATE p2pay.rules SET params = params || '{"max_payers": 5, "window": "12 hours", "baseline_factor": 0}'
 WHERE name = 'payee_fan_in';
UPDATE p2pay.rules SET params = params || '{"threshold": 1000, "band": 0.3, "min_count": 2, "window": "48 hours"}'
 WHERE name = 'structuring';
UPDATE p2pay.rules SET params = params || '{"min_amount": 200, "min_known_days": 5}'
 WHERE name = 'new_payee_high_amount';
UPDATE p2pay.rules SET params = params || '{"window": "72 hours", "min_amount": 100}'
 WHERE name = 'round_trip';
UPDATE p2pay.rules SET mode = 'shadow', params = params || '{"factor": 2, "min_history": 3}'
 WHERE name = 'amount_deviation';
UPDATE p2pay.rules SET params = params || '{"idle": "5 days", "min_amount": 50}'
 WHERE name = 'dormant_reactivation';
UPDATE p2pay.rules SET params = params || '{"window": "48 hours", "min_payers": 2, "share": 0.3, "min_amount": 100}'
 WHERE name = 'pass_through';
UPDATE p2pay.rules SET params = params || '{"window": "72 hours", "min_amount": 50, "max_length": 4}'
 WHERE name = 'cycle';
},
	baselines => q{
UPDATE p2pay.rules SET params = params || '{"max_count": 3, "window": "2 hours", "baseline_factor": 1.5, "baseline_days": 10, "short_history_min_amount": 20}'
 WHERE name = 'payer_velocity_count';
UPDATE p2pay.rules SET params = params || '{"max_payees": 2, "window": "12 hours", "baseline_factor": 1, "baseline_days": 14, "short_history_min_amount": 50}'
 WHERE name = 'payer_fan_out';
UPDATE p2pay.rules SET mode = 'shadow', params = params || '{"max_payers": 3, "window": "36 hours", "baseline_factor": 2, "baseline_days": 30, "short_history_min_amount": 10}'
 WHERE name = 'payee_fan_in';
UPDATE p2pay.rules SET params = params || '{"max_amount": 500, "window": "3 days"}'
 WHERE name = 'payer_velocity_amount';
UPDATE p2pay.rules SET params = params || '{"min_amount": 100, "min_known_days": 12}'
 WHERE name = 'new_payee_high_amount';
UPDATE p2pay.rules SET params = params || '{"max_age": "30 days", "min_amount": 100}'
 WHERE name = 'new_account_high_amount';
UPDATE p2pay.rules SET params = params || '{"max_age": "400 days", "min_amount": 100}'
 WHERE name = 'young_payee_high_amount';
UPDATE p2pay.rules SET mode = 'off' WHERE name = 'unregistered_method';
UPDATE p2pay.rules SET mode = 'shadow', params = params || '{"window": "6 hours", "min_payers": 3, "share": 0.5, "min_amount": 200}'
 WHERE name = 'pass_through';
UPDATE p2pay.rules SET mode = 'shadow', params = params || '{"window": "36 hours", "min_amount": 100, "max_length": 3}'
 WHERE name = 'cycle';
UPDATE p2pay.rules SET weight = 0.15 WHERE name = 'structuring';
},);

my $node = P2payNode::start_node('agreement');

my $gen = PostgreSQL::Test::Utils::tempdir();
system('python3', "$FindBin::RealBin/../eval/simulate.py", '--out', $gen, @network) == 0
  or BAIL_OUT('eval/simulate.py failed');

# load(DB, RULES_SQL): a database holding the network, its payments inserted
# through the trigger in created_at order, 2000 a transaction, after
# RULES_SQL.
sub load
{
	my ($db, $rules_sql) = @_;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql('postgres', "ALTER DATABASE $db SET TimeZone = 'UTC'");
	$node->safe_psql($db, 'CREATE EXTENSION p2pay');
	$node->safe_psql($db, $rules_sql) if defined $rules_sql;
	$node->safe_psql(
		$db, qq{
CREATE TABLE public.input (
  seq bigint PRIMARY KEY, transaction_id uuid, payer_id uuid, payee_id uuid, amount numeric,
  currency char(3), payment_method_id uuid, created_at timestamptz,
  typology text, instance integer, step text, is_fraud boolean, in_period boolean);
COPY p2pay.users (id, first_name, last_name, email_address, created_at)
  FROM '$gen/users.csv' WITH (FORMAT csv, HEADER true);
COPY p2pay.user_payment_methods (user_id, payment_method_id, details)
  FROM '$gen/user_payment_methods.csv' WITH (FORMAT csv, HEADER true);
COPY public.input FROM '$gen/payments.csv' WITH (FORMAT csv, HEADER true);
CREATE PROCEDURE public.insert_all(batch integer) LANGUAGE plpgsql AS \$\$
DECLARE
  total bigint := (SELECT max(seq) FROM public.input);
  done  bigint := 0;
BEGIN
  WHILE done < total LOOP
    INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency,
                                payment_method_id, created_at)
      SELECT transaction_id, payer_id, payee_id, amount, currency, payment_method_id, created_at
        FROM public.input WHERE seq > done AND seq <= done + batch ORDER BY seq;
    done := done + batch;
    COMMIT;
  END LOOP;
END \$\$;
CALL public.insert_all(2000);
});
	return;
}

# The columns compared, as text, in an order both sides share.
my $verdict_cols =
  "b.transaction_id || ' ' || b.created_at || ' reasons=' || b.reasons::text"
  . " || ' shadow=' || b.shadow_reasons::text || ' score=' || b.risk_score"
  . " || ' ' || b.decision || ' shadow_score=' || b.shadow_risk_score || ' ' || b.shadow_decision";

# same_lines(LABEL, GOT, WANT): fails unless the lines are the same,
# naming the first ten that differ.
sub same_lines
{
	my ($label, $got, $want) = @_;
	my @got  = split /\n/, $got;
	my @want = split /\n/, $want;
	my @diff;
	for my $i (0 .. ($#got > $#want ? $#got : $#want))
	{
		my $g = $got[$i]  // '(none)';
		my $w = $want[$i] // '(none)';
		push @diff, "  trigger:  $w\n  backtest: $g" if $g ne $w;
	}
	ok(@diff == 0 && @got > 0, "$label: " . scalar(@want) . ' payments agree')
	  or diag(scalar(@diff) . " payments differ; the first:\n"
		  . join("\n", @diff[ 0 .. ($#diff < 9 ? $#diff : 9) ]));
	return;
}

# The default rules: the replay, over all time and over the period alone,
# against what the trigger wrote on the same payments.
load('agree_default');
my $total = $node->safe_psql('agree_default', 'SELECT count(*) FROM p2pay.payments');
cmp_ok($total, '>', 30000, "the network has $total payments");
my $period = $node->safe_psql('agree_default',
	'SELECT min(created_at) FROM public.input WHERE in_period');
my $fired = $node->safe_psql('agree_default',
	"SELECT count(DISTINCT r) FROM p2pay.payments, unnest(reasons) r");
cmp_ok($fired, '>=', 10, "the trigger fired $fired distinct rules under the default rules");

for my $range (["'-infinity'", 'all time'], ["'$period'", 'the period'])
{
	my ($from, $label) = @$range;
	my $at_time = $verdict_cols;
	$at_time =~ s/b\.(reasons|shadow_reasons|risk_score|decision|shadow_risk_score|shadow_decision)\b/b.$1_at_time/g;
	my $replayed = $node->safe_psql('agree_default',
		"SELECT $verdict_cols FROM p2pay.backtest_payments($from, 'infinity') b");
	my $stored = $node->safe_psql('agree_default',
		"SELECT $at_time FROM p2pay.backtest_payments($from, 'infinity') b");
	my $direct = $node->safe_psql(
		'agree_default', qq{
SELECT $verdict_cols
  FROM (SELECT p.transaction_id, p.created_at, p.reasons, p.shadow_reasons, p.risk_score,
               p.decision, p.shadow_risk_score, p.shadow_decision, p.id
          FROM p2pay.payments p WHERE p.created_at >= $from) b
 ORDER BY b.created_at, b.id});
	is($stored, $direct, "default rules, $label: the rows at the time are the payments' own");
	same_lines("default rules, $label", $replayed, $direct);
}
my $default_stored = $node->safe_psql('agree_default',
	"SELECT $verdict_cols FROM p2pay.payments b ORDER BY b.created_at, b.id");

# Each changed rule set: the trigger in a database of its own, against the
# replay under the same rows on the default database.
for my $name (sort keys %rule_sets)
{
	my $db = "agree_$name";
	load($db, $rule_sets{$name});
	my $rules = $node->safe_psql($db,
		"SELECT jsonb_agg(jsonb_build_object('name', name, 'mode', mode, 'weight', weight, 'params', params)) FROM p2pay.rules"
	);
	$rules =~ s/'/''/g;
	for my $range (["'-infinity'", 'all time'], ["'$period'", 'the period'])
	{
		my ($from, $label) = @$range;
		my $stored = $node->safe_psql(
			$db, qq{
SELECT $verdict_cols FROM p2pay.payments b WHERE b.created_at >= $from ORDER BY b.created_at, b.id});
		my $replayed = $node->safe_psql('agree_default',
			"SELECT $verdict_cols FROM p2pay.backtest_payments($from, 'infinity', '$rules') b");
		same_lines("rule set $name, $label", $replayed, $stored);
	}
	my $stored = $node->safe_psql($db,
		"SELECT $verdict_cols FROM p2pay.payments b ORDER BY b.created_at, b.id");
	my @mine     = split /\n/, $stored;
	my @defaults = split /\n/, $default_stored;
	my $changed  = grep { $mine[$_] ne ($defaults[$_] // '') } 0 .. $#mine;
	cmp_ok($changed, '>=', 100,
		"rule set $name: $changed payments were scored otherwise than under the default rules");
	my $fired_here = $node->safe_psql($db,
		"SELECT count(DISTINCT r) FROM p2pay.payments, unnest(reasons || shadow_reasons) r");
	cmp_ok($fired_here, '>=', 8, "rule set $name: $fired_here distinct rules fired");
}

$node->stop;
done_testing();
