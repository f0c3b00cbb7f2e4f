# t/015_http.pl: tools/p2pay-http over HTTP, against a node that asks for
# passwords (scram-sha-256), with the README's "Privileges" roles and login
# roles in them.  Every endpoint of the API is called with Perl's HTTP::Tiny
# and what it answers is compared with what the database holds; then the
# statuses a client relies on: 400 naming the field at fault (and nothing
# stored), 401, 403, 404, 405, 409, 413, and 503 with Retry-After while the
# database is down, after which the daemon serves again by itself.  A client
# that sends half a request doesn't hold up another one.  The live feed
# (Server-Sent Events) is read on a raw socket: a flagged payment arrives
# with its id, a reconnection with Last-Event-ID doesn't send again what came
# before (and after an id the daemon no longer holds, a gap and then every
# event it holds), and a role that may not read payments is refused.
#
# The roles are those of the README's "Privileges" section, created by
# scripts/roles.sql (as make demo creates them), and the README is checked
# to grant the same, so that the test runs the grants users are told to run.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/lib";

use HTTP::Tiny;
use IO::Select;
use IO::Socket::INET;
use IPC::Run;
use JSON::PP;
use MIME::Base64 qw(encode_base64);
use P2payNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $daemon_bin = "$FindBin::RealBin/../tools/p2pay-http";
if (!-x $daemon_bin)
{
	fail('tools/p2pay-http is built (run make first)');
	done_testing();
	exit;
}
my $timeout = $PostgreSQL::Test::Utils::timeout_default;

my $BANK = '00000000-0000-4000-8000-000000000001';
my $CARD = '00000000-0000-4000-8000-000000000002';

#
# The node: every login but the test's own superuser's (which the test uses
# through safe_psql) needs a password.
#
my $db   = 'p2pay_http';
my $node = P2payNode::start_node('http', "password_encryption = 'scram-sha-256'");
P2payNode::create_db($node, $db);
my $superuser = $node->safe_psql('postgres', 'SELECT current_user');
{
	open my $hba, '>', $node->data_dir . '/pg_hba.conf' or die "pg_hba.conf: $!";
	print $hba "local all $superuser trust\n",
	  "local all all scram-sha-256\n",
	  "host all all 127.0.0.1/32 scram-sha-256\n",
	  "host all all ::1/128 scram-sha-256\n";
	close $hba;
	$node->reload;
}

# query(SQL): its output, or "error: ..." (a check that fails, rather than
# a test that dies, when the SQL side lacks what the contract names).
sub query
{
	my ($rc, $out, $err) = $node->psql($db, $_[0]);
	return $rc == 0 ? $out : "error: $err";
}
sub ql { return P2payNode::quote_literal($_[0]); }

# The roles of README's "Privileges" section, as scripts/roles.sql creates
# them; the README shows the same statements (checked below).
my $roles_sql = slurp_file("$FindBin::RealBin/../scripts/roles.sql");
$node->safe_psql($db, $roles_sql);

# statements(SQL): its statements without comments, blank lines and
# indentation, one a line.
sub statements
{
	my ($sql) = @_;
	$sql =~ s/--[^\n]*//g;
	$sql =~ s/\s+/ /g;
	return join("\n", map { s/^ | $//gr } grep { /\S/ } split /;/, $sql);
}

# The README's block of the roles: the ```sql block of its "Privileges"
# section that creates p2pay_app.  It creates the same roles as
# scripts/roles.sql, and its other statements grant the same: each run, less
# its CREATE ROLE statements, in a database of its own (the roles are the
# cluster's), must leave the same privileges to the three roles on the
# schema and on every relation, column and function in it.
sub privileges
{
	my ($dbname) = @_;
	return $node->safe_psql(
		$dbname, q{
WITH roles(r) AS (VALUES ('p2pay_app'), ('p2pay_analyst'), ('p2pay_admin')),
acls(what, acl) AS (
  SELECT 'schema ' || n.nspname, n.nspacl FROM pg_namespace n WHERE n.nspname = 'p2pay'
  UNION ALL
  SELECT 'relation ' || c.oid::regclass, c.relacl FROM pg_class c
   WHERE c.relnamespace = 'p2pay'::regnamespace
  UNION ALL
  SELECT 'column ' || a.attrelid::regclass || '.' || a.attname, a.attacl FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
   WHERE c.relnamespace = 'p2pay'::regnamespace AND a.attacl IS NOT NULL
  UNION ALL
  SELECT 'function ' || p.oid::regprocedure, p.proacl FROM pg_proc p
   WHERE p.pronamespace = 'p2pay'::regnamespace)
SELECT a.what || ': ' || r.r || ' ' || x.privilege_type || ' ' || x.is_grantable
  FROM acls a, aclexplode(a.acl) x, roles r
 WHERE x.grantee = r.r::regrole
 ORDER BY 1});
}
{
	my $readme = slurp_file("$FindBin::RealBin/../README.md");
	my ($section) = $readme =~ /^## Privileges\n(.*?)(?=^## |\z)/ms;
	my ($block) = grep { /CREATE ROLE p2pay_app\b/ } (($section // '') =~ /^```sql\n(.*?)^```/msg);
	my $creates = sub { join("\n", grep { /^CREATE ROLE / } split /\n/, statements($_[0])) };
	my $grants  = sub { join(";\n", grep { !/^CREATE ROLE / } split /\n/, statements($_[0])) };
	is($creates->($block // ''), $creates->($roles_sql),
		'README "Privileges" creates the roles scripts/roles.sql creates');
	my %granted;
	for my $source ([ 'roles_sql', $roles_sql ], [ 'readme', $block // '' ])
	{
		my ($name, $sql) = @$source;
		P2payNode::create_db($node, "privileges_$name");
		$node->safe_psql("privileges_$name", $grants->($sql) . ';') if $grants->($sql) ne '';
		$granted{$name} = privileges("privileges_$name");
	}
	isnt($granted{roles_sql}, '', 'scripts/roles.sql grants the roles privileges');
	is($granted{readme}, $granted{roles_sql},
		'README "Privileges" grants what scripts/roles.sql grants');
}
my %password = (
	app_user    => 'app secret',
	analyst_ann => 'ann: secret',
	analyst_bob => 'bob secret',
	admin_ada   => 'ada secret',
	outsider    => 'outsider secret');
$node->safe_psql($db, qq{
CREATE ROLE app_user LOGIN PASSWORD 'app secret' IN ROLE p2pay_app;
CREATE ROLE analyst_ann LOGIN PASSWORD 'ann: secret' IN ROLE p2pay_analyst;
CREATE ROLE analyst_bob LOGIN PASSWORD 'bob secret' IN ROLE p2pay_analyst;
CREATE ROLE admin_ada LOGIN PASSWORD 'ada secret' IN ROLE p2pay_admin;
CREATE ROLE outsider LOGIN PASSWORD 'outsider secret';
CREATE ROLE feeder LOGIN REPLICATION PASSWORD 'feeder-secret';
});
is( query(
		"SELECT count(*) FROM pg_authid WHERE rolname IN ('app_user', 'analyst_ann', 'outsider') "
		  . "AND rolpassword LIKE 'SCRAM-SHA-256\$%'"),
	3,
	'the login roles have SCRAM passwords');
# The statement goes on psql's command line, not its input: psql exits as
# soon as the login fails, and writing to its input then would be a race.
my ($out, $err);
my $logged_in = IPC::Run::run(
	[
		'psql', '-X', '-w', '-h', $node->host, '-p', $node->port, '-U', 'app_user', '-d', $db,
		'-c', 'SELECT 1'
	],
	'<', \undef, '>', \$out, '2>', \$err);
ok(!$logged_in, 'the node refuses a login without a password');
like($err, qr/no password supplied/, 'the login without a password: libpq says why');

# Rules under which a payment's decision depends on its row alone: above
# 10000 in the base currency is review, a method the payer has not
# registered is decline, the blocklist declines.
$node->safe_psql($db, qq{
UPDATE p2pay.rules SET enabled = name IN ('amount_limit', 'unregistered_method', 'blocklist');
UPDATE p2pay.rules SET weight = 0.9 WHERE name = 'unregistered_method';
});

#
# The daemon.
#
my $port    = PostgreSQL::Test::Cluster::get_free_port();
my $base    = "http://127.0.0.1:$port";
my $dsn     = 'host=' . $node->host . ' port=' . $node->port . " dbname=$db";
# The feed's password comes from a password file, as docs/http.md says: a
# request must never log in with it.
my $feed_dsn = "$dsn user=feeder";
my $passfile = $node->basedir . '/daemon.pgpass';
PostgreSQL::Test::Utils::append_to_file($passfile, '*:*:*:feeder:feeder-secret' . "\n");
chmod 0600, $passfile;
my $log     = $node->basedir . '/p2pay-http.log';
my $max_body = 4096;
local $ENV{PGPASSFILE} = $passfile;
my $daemon = IPC::Run::start(
	[
		$daemon_bin, '--dsn', $dsn, '--listen', "127.0.0.1:$port", '--max-body', $max_body,
		'--feed-dsn', $feed_dsn, '--create-slot'
	],
	'<', '/dev/null', '>>', $log, '2>>', $log);
my $daemon_stopped = 0;
END { $daemon->kill_kill if $daemon && !$daemon_stopped; }

my $http = HTTP::Tiny->new(timeout => $timeout, keep_alive => 0);

# wait until it listens
my $deadline = time + $timeout;
while ($http->get("$base/api/v1/health")->{status} == 599 && time < $deadline)
{
	usleep(100_000);
}
isnt($http->get("$base/api/v1/health")->{status}, 599, 'p2pay-http listens');

# call(METHOD, PATH, USER, BODY, HEADERS): the status, the JSON answered
# (undef if none) and HTTP::Tiny's response.  USER is a login role of
# %password, [NAME, PASSWORD], or undef (no credentials); BODY a reference
# (sent as JSON) or a string (sent as it is).
sub call
{
	my ($method, $path, $user, $body, $headers) = @_;
	my %h = %{ $headers // {} };
	if (defined $user)
	{
		my ($name, $pw) = ref $user ? @$user : ($user, $password{$user});
		$h{Authorization} = 'Basic ' . encode_base64("$name:$pw", '');
	}
	my %opt = (headers => \%h);
	if (defined $body)
	{
		$opt{content} = ref $body ? encode_json($body) : $body;
		$h{'Content-Type'} = 'application/json';
	}
	my $r = $http->request($method, "$base$path", \%opt);
	my $json = eval { decode_json($r->{content}) };
	record($method, $path, $r, defined $json);
	return ($r->{status}, $json, $r);
}

# record(METHOD, PATH, RESPONSE, IS_JSON): a line of $responses, for
# test/http/check-responses.mjs to check against http/openapi.json.
my $responses = $node->basedir . '/responses.jsonl';
sub record
{
	my ($method, $path, $r, $is_json) = @_;
	return if $r->{status} == 599;
	(my $body = $is_json ? $r->{content} : 'null') =~ s/[\r\n]+/ /g;
	$path =~ s/\?.*//s;
	append_to_file($responses,
		'{"method": ' . encode_json($method) . ', "path": ' . encode_json($path)
		  . ', "status": ' . ($r->{status} + 0)
		  . ', "content_type": ' . encode_json($r->{headers}{'content-type'} // '')
		  . ', "body": ' . $body . "}\n");
	return;
}

# items(JSON): the elements of a JSON array, none for anything else;
# obj(JSON): a JSON object, an empty one for anything else.
sub items { return ref $_[0] eq 'ARRAY' ? @{ $_[0] } : (); }
sub obj { return ref $_[0] eq 'HASH' ? $_[0] : {}; }

# same_list(NAME, GOT, EXPECTED): two lists equal, and not empty (an empty
# list on both sides would prove nothing).
sub same_list
{
	my ($name, $got, $expected) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	is_deeply([ @$expected ? () : 'nothing to compare', @$got ], $expected, $name);
	return;
}

# is_error(NAME, STATUS, CODE, COLUMN, call(...)): the call answered
# STATUS with an error object whose code matches CODE (a string or a
# pattern) and whose column is COLUMN (undef: not checked).
sub is_error
{
	my ($name, $status, $code, $column, $got_status, $json, $r) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	is($got_status, $status, "$name: status $status")
	  or diag("$r->{status} $r->{reason}: $r->{content}");
	like(ref $json eq 'HASH' ? $json->{code} // '' : '', ref $code ? $code : qr/^\Q$code\E$/,
		"$name: code $code");
	is(ref $json eq 'HASH' ? $json->{column} : undef, $column, "$name: column $column")
	  if defined $column;
	is(($r->{headers}{'content-type'} // '') =~ m{^application/json} ? 1 : 0,
		1, "$name: the error is JSON");
	return;
}

# differs(TABLE, KEY, OBJECT, COLUMNS...): the columns of the row of TABLE
# whose KEY equals OBJECT's that differ from OBJECT's values (each read as
# the column's type by jsonb_populate_record), or "no row".
sub differs
{
	my ($table, $key, $obj, @cols) = @_;
	my $checks = join(', ', map { "CASE WHEN t.$_ IS DISTINCT FROM j.$_ THEN '$_' END" } @cols);
	return query(
		qq{SELECT coalesce((SELECT concat_ws(',', $checks)
             FROM $table t, jsonb_populate_record(NULL::$table, @{[ ql(encode_json($obj)) ]}) j
            WHERE t.$key = j.$key), 'no row')});
}

my @payment_keys = qw(transaction_id payer_id payee_id amount currency payment_method_id
  created_at risk_score decision is_approved reasons ruleset_version);

# payment_is_stored(NAME, OBJECT): OBJECT has a payment's keys, and the
# values of the stored payment with its transaction_id.
sub payment_is_stored
{
	my ($name, $obj) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	is_deeply([ sort keys %{ obj($obj) } ], [ sort @payment_keys ], "$name: a payment's fields");
	is(differs('p2pay.payments', 'transaction_id', obj($obj), @payment_keys),
		'', "$name: the payment as stored");
	return;
}

# ids(SQL): the transaction_ids (or ids) SQL lists, in order.
sub ids { return [ split /\n/, query($_[0]) ]; }

sub count_of { return query("SELECT count(*) FROM $_[0]"); }

#
# What needs no credentials.
#
{
	my ($st, $json, $r) = call('GET', '/api/v1/health');
	is($st, 200, 'health: 200 without credentials');
	is(obj($json)->{status}, 'ok', 'health: status ok');

	($st, $json, $r) = call('GET', '/api/v1/openapi.json');
	is($st, 200, 'openapi.json: 200 without credentials');
	like($r->{headers}{'content-type'} // '', qr{^application/json}, 'openapi.json: JSON');
	is_deeply($json, decode_json(slurp_file("$FindBin::RealBin/../http/openapi.json")),
		'openapi.json: the document of http/openapi.json');

	($st, $json, $r) = call('GET', '/api/v1/docs');
	is($st, 200, 'docs: 200 without credentials');
	like($r->{headers}{'content-type'} // '', qr{^text/html}, 'docs: an HTML page');
	like($r->{content}, qr{swagger-ui}i, 'docs: Swagger UI');
	($st, $json, $r) = call('GET', '/api/v1/docs/swagger-ui-bundle.js');
	is($st, 200, 'docs: Swagger UI is served from the daemon');
	like($r->{headers}{'content-type'} // '', qr{^text/javascript}, 'docs: Swagger UI is a script');

	# the pages (docs/http.md: the payment form and the analysts' console)
	for my $page ('/', '/console')
	{
		($st, $json, $r) = call('GET', $page);
		is($st, 200, "page $page: 200 without credentials");
		like($r->{headers}{'content-type'} // '', qr{^text/html}, "page $page: HTML");
	}
	for my $outside ('/static/..%2fopenapi.json', '/static/%2e%2e%2f%2e%2e%2fREADME.md', '/static/.gitignore')
	{
		($st, $json, $r) = call('GET', $outside);
		is($st, 404, "$outside: 404, nothing outside the pages is served");
	}
}

#
# Credentials.
#
{
	my $tid = '00000000-0000-4000-8000-0000000000ff';
	my @calls = (
		[ 'no credentials',  undef ],
		[ 'a wrong password', [ 'app_user', 'not the password' ] ],
		[ 'an unknown role',  [ 'nobody', 'app secret' ] ],
		# libpq would take what is empty from the daemon's own password
		# file, where the feed's role is
		[ 'an empty password', [ 'feeder', '' ] ],
		[ 'an empty name',     [ '', 'feeder-secret' ] ]);
	for my $c (@calls)
	{
		my ($st, $json, $r) = call('GET', "/api/v1/payments/$tid", $c->[1]);
		is_error("$c->[0]", 401, qr/^28/, undef, $st, $json, $r);
		like($r->{headers}{'www-authenticate'} // '', qr/^Basic realm="p2pay"/,
			"$c->[0]: the Basic challenge");
	}
	my ($st, $json, $r) = call('POST', '/api/v1/payments', undef,
		{ payer_id => $BANK, payee_id => $BANK, amount => 1, currency => 'USD', payment_method_id => $BANK });
	is_error('a payment without credentials', 401, qr/^28/, undef, $st, $json, $r);
	is(count_of('p2pay.payments'), 0, 'a payment without credentials: nothing stored');

	is_error('an unknown path', 404, '404', undef, call('GET', '/api/v1/nothing', 'app_user'));
	is_error('an unknown path outside /api/v1', 404, '404', undef, call('GET', '/nothing/here', 'app_user'));
	is_error('a method the path does not serve', 405, '405', undef, call('PUT', '/api/v1/payments', 'app_user', {}));
	is_error('DELETE of a payment', 405, '405', undef, call('DELETE', "/api/v1/payments/$tid", 'app_user'));
}

#
# Currencies and payment methods.
#
{
	my ($st, $json) = call('GET', '/api/v1/currencies', 'app_user');
	is($st, 200, 'GET currencies: 200');
	is_deeply(
		[ map { "$_->{code}|$_->{name}|" . ($_->{rate_to_base} + 0) } sort { $a->{code} cmp $b->{code} } items($json) ],
		ids("SELECT code || '|' || name || '|' || rate_to_base::float8 FROM p2pay.currencies ORDER BY code"),
		'GET currencies: the table');

	($st, $json) = call('GET', '/api/v1/currencies/EUR', 'app_user');
	is($st, 200, 'GET a currency: 200');
	is_deeply([ sort keys %{ obj($json) } ], [qw(code name rate_to_base)], 'GET a currency: its columns');
	is(differs('p2pay.currencies', 'code', obj($json), qw(name rate_to_base)), '', 'GET a currency: as stored');
	is_error('GET an unknown currency', 404, 'P0002', undef, call('GET', '/api/v1/currencies/XYZ', 'app_user'));

	my $gbp = { code => 'GBP', name => 'Pound Sterling', rate_to_base => 1.27 };
	is_error('the app adds a currency', 403, '42501', undef, call('POST', '/api/v1/currencies', 'app_user', $gbp));
	is_error('an analyst adds a currency', 403, '42501', undef, call('POST', '/api/v1/currencies', 'analyst_ann', $gbp));
	($st, $json) = call('POST', '/api/v1/currencies', 'admin_ada', $gbp);
	is($st, 201, 'POST a currency: 201');
	is_deeply($json, $gbp, 'POST a currency: the currency');
	is(differs('p2pay.currencies', 'code', $gbp, qw(name rate_to_base)), '', 'POST a currency: stored');
	is_error('POST a currency twice', 409, '23505', undef, call('POST', '/api/v1/currencies', 'admin_ada', $gbp));
	is_error('POST a currency with an unknown field', 400, '22023', 'symbol',
		call('POST', '/api/v1/currencies', 'admin_ada', { %$gbp, code => 'CHF', symbol => 'Fr' }));
	is_error('POST a currency without a rate', 400, '23502', 'rate_to_base',
		call('POST', '/api/v1/currencies', 'admin_ada', { code => 'CHF', name => 'Swiss Franc' }));
	is_error('POST a currency with a lower-case code', 400, '22023', 'code',
		call('POST', '/api/v1/currencies', 'admin_ada', { code => 'chf', name => 'Swiss Franc', rate_to_base => 1.1 }));
	is(count_of("p2pay.currencies WHERE code = 'CHF'"), 0, 'refused currencies: nothing stored');

	($st, $json) = call('GET', '/api/v1/payment-methods', 'app_user');
	is($st, 200, 'GET payment-methods: 200');
	is_deeply(
		[ sort map { "$_->{id}|$_->{name}" } items($json) ],
		[ sort @{ ids("SELECT id || '|' || name FROM p2pay.payment_methods") } ],
		'GET payment-methods: the table');
	($st, $json) = call('GET', "/api/v1/payment-methods/$CARD", 'app_user');
	is($st, 200, 'GET a payment method: 200');
	is_deeply($json, { id => $CARD, name => 'Credit card' }, 'GET a payment method: as stored');
	is_error('GET an unknown payment method', 404, 'P0002', undef,
		call('GET', '/api/v1/payment-methods/00000000-0000-4000-8000-0000000000ee', 'app_user'));
	is_error('GET a payment method by a bad id', 400, '22P02', undef,
		call('GET', '/api/v1/payment-methods/not-a-uuid', 'app_user'));

	is_error('the app adds a payment method', 403, '42501', undef,
		call('POST', '/api/v1/payment-methods', 'app_user', { name => 'Mobile wallet' }));
	($st, $json) = call('POST', '/api/v1/payment-methods', 'admin_ada', { name => 'Mobile wallet' });
	is($st, 201, 'POST a payment method: 201');
	is(differs('p2pay.payment_methods', 'id', obj($json), qw(name)), '', 'POST a payment method: stored');
	is_error('POST a payment method twice', 409, '23505', undef,
		call('POST', '/api/v1/payment-methods', 'admin_ada', { name => 'Mobile wallet' }));
	is_error('POST a payment method without a name', 400, '23502', 'name',
		call('POST', '/api/v1/payment-methods', 'admin_ada', { id => '00000000-0000-4000-8000-0000000000ab' }));
	is(count_of('p2pay.payment_methods'), 5, 'refused payment methods: nothing stored');
}

#
# Users and their payment methods.
#
# The payers and payees of the payments below are made in SQL, so that the
# payments' checks don't depend on these endpoints: alice, bob and carol
# with the bank transfer registered, dave with nothing.
my %user = (
	alice => '00000000-0000-4000-8000-00000000a11c',
	bob   => '00000000-0000-4000-8000-000000000b0b',
	carol => '00000000-0000-4000-8000-00000000ca01',
	dave  => '00000000-0000-4000-8000-00000000da7e');
$node->safe_psql(
	$db, qq{
INSERT INTO p2pay.users (id, first_name, created_at) VALUES
  ('$user{alice}', 'Alice', '2020-01-01'), ('$user{bob}', 'Bob', '2020-01-01'),
  ('$user{carol}', 'Carol', '2020-01-01'), ('$user{dave}', 'Dave', '2020-01-01');
INSERT INTO p2pay.user_payment_methods (user_id, payment_method_id)
  VALUES ('$user{alice}', '$BANK'), ('$user{bob}', '$BANK'), ('$user{carol}', '$BANK');
});
{
	my %made;
	for my $name (qw(erin frank grace))
	{
		my ($st, $json, $r) = call('POST', '/api/v1/users', 'app_user',
			{ first_name => ucfirst $name, email_address => "$name\@example.com", created_at => '2020-01-01T00:00:00Z' });
		is($st, 201, "POST user $name: 201") or diag($r->{content});
		$made{$name} = obj($json)->{id} // "no id for $name";
		is_deeply([ sort keys %{ obj($json) } ], [qw(created_at email_address first_name id last_name)],
			"POST user $name: a user's columns");
		is(differs('p2pay.users', 'id', obj($json), qw(first_name last_name email_address created_at)),
			'', "POST user $name: stored");
	}
	my ($st, $json) = call('POST', '/api/v1/users', 'app_user',
		{ id => '00000000-0000-4000-8000-000000000123', last_name => 'Hopper' });
	is($st, 201, 'POST a user with its id: 201');
	is(differs('p2pay.users', 'id', obj($json), qw(first_name last_name email_address)),
		'', 'POST a user with its id: stored with it');
	is(query("SELECT created_at > now() - interval '1 hour' FROM p2pay.users WHERE last_name = 'Hopper'"),
		't', 'POST a user without created_at: opened now');
	is_error('POST a user whose id is taken', 409, '23505', undef,
		call('POST', '/api/v1/users', 'app_user', { id => '00000000-0000-4000-8000-000000000123' }));
	is_error('POST a user with an unknown field', 400, '22023', 'nickname',
		call('POST', '/api/v1/users', 'app_user', { first_name => 'Eve', nickname => 'e' }));
	is_error('POST a user with a number for a name', 400, '22023', 'first_name',
		call('POST', '/api/v1/users', 'app_user', { first_name => 42 }));
	is_error('POST a user that is not JSON', 400, '22P02', undef,
		call('POST', '/api/v1/users', 'app_user', '{first_name: Eve}'));
	is(count_of("p2pay.users WHERE first_name = 'Eve'"), 0, 'refused users: nothing stored');
	is_error('POST a user as a role without INSERT', 403, '42501', undef,
		call('POST', '/api/v1/users', 'outsider', { first_name => 'Mallory' }));

	($st, $json) = call('GET', "/api/v1/users/$made{frank}", 'app_user');
	is($st, 200, 'GET a user: 200');
	is(obj($json)->{first_name} // '', 'Frank', 'GET a user: the user');
	is(differs('p2pay.users', 'id', obj($json), qw(first_name last_name email_address created_at)),
		'', 'GET a user: as stored');
	is_error('GET an unknown user', 404, 'P0002', undef,
		call('GET', '/api/v1/users/00000000-0000-4000-8000-0000000000ee', 'app_user'));
	is_error('GET a user by a bad id', 400, '22P02', undef, call('GET', '/api/v1/users/frank', 'app_user'));

	# every user, two a page
	my (@seen, $after);
	for my $page (1 .. 10)
	{
		($st, $json) = call('GET', '/api/v1/users?limit=2' . (defined $after ? "&after=$after" : ''), 'app_user');
		last if $st != 200 || !items($json);
		ok(items($json) <= 2, "GET users page $page: at most limit users");
		push @seen, map { $_->{id} } items($json);
		$after = (items($json))[-1]{id};
	}
	same_list('GET users by pages of 2: every user once', [ sort @seen ],
		[ sort @{ ids('SELECT id FROM p2pay.users') } ]);
	is_error('GET users with limit 0', 400, qr/^22/, 'limit', call('GET', '/api/v1/users?limit=0', 'app_user'));
	is_error('GET users with an unknown argument', 400, '22023', 'colour',
		call('GET', '/api/v1/users?colour=red', 'app_user'));

	for my $name (qw(erin frank))
	{
		($st, $json) = call('POST', "/api/v1/users/$made{$name}/payment-methods", 'app_user',
			{ payment_method_id => $CARD, details => "$name\'s card" });
		is($st, 201, "POST $name\'s payment method: 201");
		is_deeply($json, { user_id => $made{$name}, payment_method_id => $CARD, details => "$name\'s card" },
			"POST $name\'s payment method: the registration");
	}
	is(query("SELECT string_agg(details, ',' ORDER BY details) FROM p2pay.user_payment_methods "
		  . "WHERE payment_method_id = '$CARD'"),
		"erin's card,frank's card", 'the registrations are stored');
	is_error('POST a payment method twice for a user', 409, '23505', undef,
		call('POST', "/api/v1/users/$made{erin}/payment-methods", 'app_user', { payment_method_id => $CARD }));
	is_error('POST a payment method for an unknown user', 409, '23503', undef,
		call('POST', '/api/v1/users/00000000-0000-4000-8000-0000000000ee/payment-methods', 'app_user',
			{ payment_method_id => $BANK }));
	is_error('POST an unknown payment method for a user', 409, '23503', undef,
		call('POST', "/api/v1/users/$made{grace}/payment-methods", 'app_user',
			{ payment_method_id => '00000000-0000-4000-8000-0000000000ee' }));
	is_error('POST a payment method without its id', 400, '23502', 'payment_method_id',
		call('POST', "/api/v1/users/$made{grace}/payment-methods", 'app_user', { details => 'x' }));
	is_error('POST a payment method with an unknown field', 400, '22023', 'bank',
		call('POST', "/api/v1/users/$made{grace}/payment-methods", 'app_user', { payment_method_id => $BANK, bank => 'x' }));
	is(count_of("p2pay.user_payment_methods WHERE user_id = '$made{grace}'"), 0,
		'refused registrations: nothing stored');

	($st, $json) = call('GET', "/api/v1/users/$made{erin}/payment-methods", 'app_user');
	is($st, 200, "GET a user's payment methods: 200");
	is_deeply($json, [ { user_id => $made{erin}, payment_method_id => $CARD, details => "erin's card" } ],
		"GET a user's payment methods: erin's");
	($st, $json) = call('GET', "/api/v1/users/$made{grace}/payment-methods", 'app_user');
	is_deeply([ $st, $json ], [ 200, [] ], "GET a user's payment methods: none for grace");
	is_error("GET an unknown user's payment methods", 404, 'P0002', undef,
		call('GET', '/api/v1/users/00000000-0000-4000-8000-0000000000ee/payment-methods', 'app_user'));
}

#
# Payments.
#
my %tid;
{
	my @payments = (
		[ approved => alice => bob   => 20,     'USD', $BANK, '10:00', 'approve' ],
		[ review   => bob   => alice => 15000,  'USD', $BANK, '10:05', 'review' ],
		[ declined => alice => carol => 35,     'USD', $CARD, '10:10', 'decline' ],
		[ review2  => carol => alice => 12000,  'EUR', $BANK, '10:15', 'review' ],
		[ review3  => alice => bob   => 18000,  'USD', $BANK, '10:20', 'review' ],
		[ cents    => bob   => carol => '0.10', 'EUR', $BANK, '10:25', 'approve' ]);
	for my $p (@payments)
	{
		my ($name, $payer, $payee, $amount, $currency, $method, $at, $decision) = @$p;
		my ($st, $json, $r) = call('POST', '/api/v1/payments', 'app_user',
			{
				payer_id          => $user{$payer},
				payee_id          => $user{$payee},
				amount            => $amount,
				currency          => $currency,
				payment_method_id => $method,
				created_at        => "2026-11-01T$at:00Z"
			});
		is($st, 201, "POST payment $name: 201") or diag($r->{content});
		$tid{$name} = obj($json)->{transaction_id} // "no transaction_id for $name";
		is(obj($json)->{decision} // '', $decision, "POST payment $name: $decision");
		payment_is_stored("POST payment $name", $json);
	}
	my $given = 'aaaaaaaa-0000-4000-8000-000000000001';
	my ($st, $json) = call('POST', '/api/v1/payments', 'app_user',
		{
			transaction_id    => $given,
			payer_id          => $user{dave},
			payee_id          => $user{alice},
			amount            => '5.5',
			currency          => 'ILS',
			payment_method_id => $BANK,
			created_at        => '2026-11-01T10:30:00Z'
		});
	is($st, 201, 'POST a payment with its transaction_id: 201');
	is(obj($json)->{transaction_id} // '', $given, 'POST a payment with its transaction_id: kept');
	payment_is_stored('POST a payment with its transaction_id', $json);
	$tid{given} = $given;

	($st, $json) = call('GET', "/api/v1/payments/$tid{review}", 'app_user');
	is($st, 200, 'GET a payment: 200');
	payment_is_stored('GET a payment', $json);
	is_error('GET an unknown payment', 404, 'P0002', undef,
		call('GET', '/api/v1/payments/00000000-0000-4000-8000-0000000000ee', 'app_user'));
	is_error('GET a payment by a bad transaction_id', 400, '22P02', undef,
		call('GET', '/api/v1/payments/not-a-uuid', 'app_user'));

	# Refused payments: the field at fault named, nothing stored.
	my $stored = count_of('p2pay.payments');
	my %good = (
		payer_id          => $user{alice},
		payee_id          => $user{bob},
		amount            => 10,
		currency          => 'USD',
		payment_method_id => $BANK);
	my %without_payee = %good;
	delete $without_payee{payee_id};
	is_error('a payment that is not JSON', 400, '22P02', undef,
		call('POST', '/api/v1/payments', 'app_user', '{"payer_id": '));
	is_error('a payment that is a JSON array', 400, '22023', undef,
		call('POST', '/api/v1/payments', 'app_user', [ \%good ]));
	is_error('a payment with an unknown field', 400, '22023', 'colour',
		call('POST', '/api/v1/payments', 'app_user', { %good, colour => 'red' }));
	is_error('a payment with an amount of the wrong type', 400, '22023', 'amount',
		call('POST', '/api/v1/payments', 'app_user', { %good, amount => JSON::PP::true }));
	is_error('a payment with a payer of the wrong type', 400, '22023', 'payer_id',
		call('POST', '/api/v1/payments', 'app_user', { %good, payer_id => 7 }));
	is_error('a payment without a payee', 400, '23502', 'payee_id',
		call('POST', '/api/v1/payments', 'app_user', \%without_payee));
	is_error('a payment with a null payee', 400, '23502', 'payee_id',
		call('POST', '/api/v1/payments', 'app_user', { %good, payee_id => undef }));
	is_error('a payment with a payer that is no uuid', 400, '22P02', 'payer_id',
		call('POST', '/api/v1/payments', 'app_user', { %good, payer_id => 'not-a-uuid' }));
	is_error('a payment with an amount that is no number', 400, '22P02', 'amount',
		call('POST', '/api/v1/payments', 'app_user', { %good, amount => 'ten' }));
	is_error('a payment with a bad created_at', 400, qr/^22/, 'created_at',
		call('POST', '/api/v1/payments', 'app_user', { %good, created_at => 'yesterday at noon' }));
	is_error('a payment with a negative amount', 400, qr/^2[23]/, undef,
		call('POST', '/api/v1/payments', 'app_user', { %good, amount => -5 }));
	is_error('a payment by an unknown payer', 409, '23503', undef,
		call('POST', '/api/v1/payments', 'app_user', { %good, payer_id => '00000000-0000-4000-8000-0000000000ee' }));
	is_error('a payment in an unknown currency', 409, '23503', undef,
		call('POST', '/api/v1/payments', 'app_user', { %good, currency => 'XYZ' }));
	is_error('a payment with a transaction_id taken', 409, '23505', undef,
		call('POST', '/api/v1/payments', 'app_user', { %good, transaction_id => $given, created_at => '2026-11-01T10:30:00Z' }));
	is_error('a payment by a role without INSERT', 403, '42501', undef,
		call('POST', '/api/v1/payments', 'outsider', \%good));
	my ($big_st, $big_json, $big_r) = call('POST', '/api/v1/payments', 'app_user',
		encode_json({ %good, note => 'x' x ($max_body * 2) }));
	is_error('a body larger than --max-body', 413, qr/./, undef, $big_st, $big_json, $big_r);
	is(count_of('p2pay.payments'), $stored, 'refused payments: nothing stored');

	# Lists: newest first, filtered, by pages.
	my $order = 'ORDER BY created_at DESC, transaction_id DESC';
	my @lists = (
		[ '',                                         'TRUE' ],
		[ "payer_id=$user{alice}",                    "payer_id = '$user{alice}'" ],
		[ "payee_id=$user{alice}",                    "payee_id = '$user{alice}'" ],
		[ "user_id=$user{alice}",                     "'$user{alice}' IN (payer_id, payee_id)" ],
		[ 'decision=review',                          "decision = 'review'" ],
		[ 'decision=decline',                         "decision = 'decline'" ],
		[ 'from=2026-11-01T10:05:00Z&to=2026-11-01T10:20:00Z',
		  "created_at >= '2026-11-01T10:05:00Z' AND created_at < '2026-11-01T10:20:00Z'" ],
		[ "user_id=$user{bob}&decision=approve",      "'$user{bob}' IN (payer_id, payee_id) AND decision = 'approve'" ],
		[ 'limit=3',                                  "TRUE $order LIMIT 3" ],
		[ 'limit=0&limit=2',                          "TRUE $order LIMIT 2" ]);
	for my $l (@lists)
	{
		my ($args, $where) = @$l;
		($st, $json) = call('GET', "/api/v1/payments?$args", 'analyst_ann');
		is($st, 200, "GET payments?$args: 200");
		my $sql = $where =~ /LIMIT/ ? $where : "$where $order";
		same_list("GET payments?$args: the payments, newest first",
			[ map { $_->{transaction_id} } items($json) ],
			ids("SELECT transaction_id FROM p2pay.payments WHERE $sql"));
	}
	($st, $json) = call('GET', "/api/v1/payments?user_id=$user{carol}", 'analyst_ann');
	payment_is_stored('GET payments: an item', (items($json))[0]);
	($st, $json) = call('GET', '/api/v1/payments?limit=100', 'app_user');
	is($st, 200, 'GET payments as the app: 200');

	my (@pages, $after);
	for my $page (1 .. 10)
	{
		($st, $json) = call('GET', '/api/v1/payments?limit=3' . (defined $after ? "&after=$after" : ''), 'analyst_ann');
		last if $st != 200 || !items($json);
		push @pages, map { $_->{transaction_id} } items($json);
		$after = (items($json))[-1]{transaction_id};
	}
	same_list('GET payments by pages of 3 (after): every payment once, newest first',
		\@pages, ids("SELECT transaction_id FROM p2pay.payments $order"));

	is_error('GET payments with limit 0', 400, qr/^22/, 'limit', call('GET', '/api/v1/payments?limit=0', 'analyst_ann'));
	is_error('GET payments with limit 1001', 400, qr/^22/, 'limit', call('GET', '/api/v1/payments?limit=1001', 'analyst_ann'));
	is_error('GET payments with limit ten', 400, qr/^22/, 'limit', call('GET', '/api/v1/payments?limit=ten', 'analyst_ann'));
	is_error('GET payments with an unknown decision', 400, qr/^22/, 'decision',
		call('GET', '/api/v1/payments?decision=maybe', 'analyst_ann'));
	is_error('GET payments with a bad payer_id', 400, '22P02', 'payer_id',
		call('GET', '/api/v1/payments?payer_id=nobody', 'analyst_ann'));
	is_error('GET payments with a bad from', 400, qr/^22/, 'from',
		call('GET', '/api/v1/payments?from=someday', 'analyst_ann'));
	is_error('GET payments after an unknown payment', 400, '22023', 'after',
		call('GET', '/api/v1/payments?after=00000000-0000-4000-8000-0000000000ee', 'analyst_ann'));
	is_error('GET payments with an unknown argument', 400, '22023', 'colour',
		call('GET', '/api/v1/payments?colour=red', 'analyst_ann'));
	is_error('GET payments as a role without SELECT', 403, '42501', undef,
		call('GET', '/api/v1/payments', 'outsider'));
	is_error('GET a payment as a role without SELECT', 403, '42501', undef,
		call('GET', "/api/v1/payments/$tid{review}", 'outsider'));
}

#
# A client that sends half a request holds its own connection only.
#
{
	my @slow;
	for my $half (
		"GET /api/v1/payments HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthoriz",
		"POST /api/v1/payments HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
		. "Authorization: Basic " . encode_base64("app_user:$password{app_user}", '') . "\r\n"
		. "Content-Length: 200\r\n\r\n{\"payer_id\": ")
	{
		my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp')
		  or die "connect: $!";
		syswrite($s, $half);
		push @slow, $s;
	}
	my ($st, $json) = call('GET', "/api/v1/payments/$tid{review}", 'analyst_ann');
	is($st, 200, 'a request completes while two clients sit on half a request');
	payment_is_stored('a request next to slow clients', $json);
	close $_ for @slow;
}

#
# Reviews: the queue, claims, resolutions.
#
{
	my $queue_sql = 'SELECT transaction_id FROM p2pay.review_queue ORDER BY created_at, transaction_id';
	my ($st, $json) = call('GET', '/api/v1/reviews', 'analyst_ann');
	is($st, 200, 'GET reviews: 200');
	same_list('GET reviews: the queue, oldest first', [ map { $_->{transaction_id} } items($json) ],
		ids($queue_sql));
	my $item = obj((items($json))[0]);
	is_deeply(
		[ sort keys %$item ],
		[
			sort qw(transaction_id created_at payer_id payee_id amount currency amount_base risk_score
			  reasons ruleset_version waiting_seconds claimed_by claim_expires_at)
		],
		'GET reviews: an item has the queue\'s columns and its claim');
	is(differs('p2pay.review_queue', 'transaction_id', $item,
			qw(created_at payer_id payee_id amount currency amount_base risk_score reasons ruleset_version)),
		'', 'GET reviews: an item as the queue holds it');
	is_deeply([ %$item ? () : 'no item', $item->{claimed_by}, $item->{claim_expires_at} ], [ undef, undef ],
		'GET reviews: unclaimed');
	ok(($item->{waiting_seconds} // -1) > 0, 'GET reviews: waiting_seconds');

	($st, $json) = call('GET', '/api/v1/reviews?limit=1', 'analyst_ann');
	is(scalar items($json), 1, 'GET reviews?limit=1: one');
	my $first = obj((items($json))[0])->{transaction_id} // 'none';
	($st, $json) = call('GET', "/api/v1/reviews?after=$first", 'analyst_ann');
	same_list('GET reviews?after: the rest of the queue', [ $first, map { $_->{transaction_id} } items($json) ],
		ids($queue_sql));
	is_error('GET reviews with limit 0', 400, qr/^22/, 'limit', call('GET', '/api/v1/reviews?limit=0', 'analyst_ann'));
	is_error('GET reviews as the app', 403, '42501', undef, call('GET', '/api/v1/reviews', 'app_user'));
	is_error('GET reviews with an unknown argument', 400, '22023', 'colour',
		call('GET', '/api/v1/reviews?colour=red', 'analyst_ann'));

	# the application may not resolve
	is_error('the app resolves a review', 403, '42501', undef,
		call('POST', "/api/v1/reviews/$tid{review}", 'app_user', { decision => 'approve' }));
	is(query("SELECT decision FROM p2pay.payments WHERE transaction_id = '$tid{review}'"),
		'review', 'the app resolves a review: still under review');

	# claims
	($st, $json) = call('POST', "/api/v1/reviews/$tid{review}/claim", 'analyst_ann', {});
	is($st, 200, 'ann claims a review: 200');
	is_deeply([ sort keys %{ obj($json) } ], [qw(claimed_at claimed_by expires_at transaction_id)],
		'a claim: its fields');
	is_deeply([ obj($json)->{transaction_id}, obj($json)->{claimed_by} ], [ $tid{review}, 'analyst_ann' ],
		'a claim: the payment and the role that logged in');
	my $claim = obj($json);
	is(query("SELECT round(extract(epoch FROM '$claim->{expires_at}'::timestamptz - '$claim->{claimed_at}'::timestamptz))"),
		900, 'a claim: for 15 minutes by default');
	is(differs('p2pay.review_claims', 'transaction_id', obj($json), qw(claimed_by claimed_at expires_at)),
		'', 'a claim: stored');
	my $expires = obj($json)->{expires_at} // 'none';

	($st, $json) = call('GET', '/api/v1/reviews', 'analyst_bob');
	my ($claimed) = grep { $_->{transaction_id} eq $tid{review} } items($json);
	is_deeply([ $claimed->{claimed_by}, defined $claimed->{claim_expires_at} ], [ 'analyst_ann', 1 ],
		'GET reviews: the claim shows');

	is_error("bob claims ann's review", 409, '55000', undef,
		call('POST', "/api/v1/reviews/$tid{review}/claim", 'analyst_bob'));
	is_error("bob resolves ann's review", 409, '55000', undef,
		call('POST', "/api/v1/reviews/$tid{review}", 'analyst_bob', { decision => 'decline' }));
	is(query("SELECT decision FROM p2pay.payments WHERE transaction_id = '$tid{review}'"),
		'review', "bob resolves ann's review: still under review");
	is_error("bob releases ann's claim", 404, 'P0002', undef,
		call('DELETE', "/api/v1/reviews/$tid{review}/claim", 'analyst_bob'));

	($st, $json) = call('POST', "/api/v1/reviews/$tid{review}/claim", 'analyst_ann', { minutes => 60 });
	is($st, 200, 'ann claims her review again: 200');
	$claim = obj($json);
	is(query("SELECT '@{[ $claim->{expires_at} // 'none' ]}'::timestamptz > '$expires'::timestamptz"),
		't', 'ann claims her review again: the claim is extended');
	is(query("SELECT count(*) FROM p2pay.review_claims WHERE transaction_id = '$tid{review}'"),
		1, 'ann claims her review again: one claim');
	is_error('a claim of 0 minutes', 400, qr/^22/, 'minutes',
		call('POST', "/api/v1/reviews/$tid{review2}/claim", 'analyst_ann', { minutes => 0 }));
	is_error('a claim of 241 minutes', 400, qr/^22/, 'minutes',
		call('POST', "/api/v1/reviews/$tid{review2}/claim", 'analyst_ann', { minutes => 241 }));
	is_error('a claim with an unknown field', 400, '22023', 'hours',
		call('POST', "/api/v1/reviews/$tid{review2}/claim", 'analyst_ann', { hours => 1 }));
	is_error('a claim of an unknown payment', 404, 'P0002', undef,
		call('POST', '/api/v1/reviews/00000000-0000-4000-8000-0000000000ee/claim', 'analyst_ann'));
	is_error('a claim of an approved payment', 409, '55000', undef,
		call('POST', "/api/v1/reviews/$tid{approved}/claim", 'analyst_ann'));
	is_error('the app claims a review', 403, '42501', undef,
		call('POST', "/api/v1/reviews/$tid{review2}/claim", 'app_user'));
	is(query("SELECT count(*) FROM p2pay.review_claims WHERE transaction_id <> '$tid{review}'"),
		0, 'refused claims: nothing stored');

	($st, $json) = call('DELETE', "/api/v1/reviews/$tid{review}/claim", 'analyst_ann');
	is($st, 200, 'ann releases her claim: 200');
	is_deeply([ obj($json)->{transaction_id}, obj($json)->{claimed_by} ], [ $tid{review}, 'analyst_ann' ],
		'ann releases her claim: the claim');
	is(count_of('p2pay.review_claims'), 0, 'ann releases her claim: gone');
	is_error('ann releases it again', 404, 'P0002', undef,
		call('DELETE', "/api/v1/reviews/$tid{review}/claim", 'analyst_ann'));

	# resolutions
	call('POST', "/api/v1/reviews/$tid{review}/claim", 'analyst_ann');
	($st, $json) = call('POST', "/api/v1/reviews/$tid{review}", 'analyst_ann',
		{ decision => 'approve', note => 'known landlord' });
	is($st, 200, 'ann resolves her review: 200');
	is_deeply([ obj($json)->{decision}, obj($json)->{is_approved} ], [ 'approve', JSON::PP::true ],
		'ann resolves her review: approved');
	payment_is_stored('ann resolves her review', $json);
	is(query("SELECT old_decision || ' ' || new_decision || ' ' || note || ' ' || resolved_by "
		  . "FROM p2pay.decision_log WHERE transaction_id = '$tid{review}'"),
		'review approve known landlord analyst_ann', 'ann resolves her review: the decision log');
	is(count_of('p2pay.review_claims'), 0, 'ann resolves her review: the claim is gone');
	is_error('ann resolves it again', 409, '55000', undef,
		call('POST', "/api/v1/reviews/$tid{review}", 'analyst_ann', { decision => 'decline' }));
	is_error('bob resolves it too', 409, '55000', undef,
		call('POST', "/api/v1/reviews/$tid{review}", 'analyst_bob', { decision => 'decline' }));
	is(query("SELECT decision || ' ' || (SELECT count(*) FROM p2pay.decision_log) FROM p2pay.payments "
		  . "WHERE transaction_id = '$tid{review}'"),
		'approve 1', 'resolved twice: the first resolution stands');

	# an expired claim is no claim
	call('POST', "/api/v1/reviews/$tid{review2}/claim", 'analyst_ann', { minutes => 1 });
	query("UPDATE p2pay.review_claims SET claimed_at = claimed_at - interval '1 hour', "
		  . "expires_at = expires_at - interval '1 hour'");
	($st, $json) = call('GET', '/api/v1/reviews', 'analyst_bob');
	($claimed) = grep { $_->{transaction_id} eq $tid{review2} } items($json);
	is_deeply([ $claimed ? () : 'not in the queue', $claimed->{claimed_by}, $claimed->{claim_expires_at} ],
		[ undef, undef ], 'GET reviews: an expired claim shows as none');
	($st, $json) = call('POST', "/api/v1/reviews/$tid{review2}", 'analyst_bob', { decision => 'decline' });
	is($st, 200, "bob resolves a review whose claim expired: 200");
	is(query("SELECT decision FROM p2pay.payments WHERE transaction_id = '$tid{review2}'"),
		'decline', 'bob resolves a review whose claim expired: declined');

	# bad resolutions
	$st = count_of('p2pay.decision_log');
	is_error('a resolution that is not JSON', 400, '22P02', undef,
		call('POST', "/api/v1/reviews/$tid{review3}", 'analyst_ann', 'approve'));
	is_error('a resolution "maybe"', 400, '22023', 'decision',
		call('POST', "/api/v1/reviews/$tid{review3}", 'analyst_ann', { decision => 'maybe' }));
	is_error('a resolution "review"', 400, '22023', 'decision',
		call('POST', "/api/v1/reviews/$tid{review3}", 'analyst_ann', { decision => 'review' }));
	is_error('a resolution without a decision', 400, qr/^2[23]/, 'decision',
		call('POST', "/api/v1/reviews/$tid{review3}", 'analyst_ann', { note => 'hmm' }));
	is_error('a resolution with an unknown field', 400, '22023', 'reason',
		call('POST', "/api/v1/reviews/$tid{review3}", 'analyst_ann', { decision => 'approve', reason => 'x' }));
	is_error('a resolution with a number for a note', 400, '22023', 'note',
		call('POST', "/api/v1/reviews/$tid{review3}", 'analyst_ann', { decision => 'approve', note => 5 }));
	is_error('a resolution of an unknown payment', 404, 'P0002', undef,
		call('POST', '/api/v1/reviews/00000000-0000-4000-8000-0000000000ee', 'analyst_ann', { decision => 'approve' }));
	is(count_of('p2pay.decision_log') . ' ' . query("SELECT decision FROM p2pay.payments WHERE transaction_id = '$tid{review3}'"),
		"$st review", 'refused resolutions: nothing changed');
}

#
# Rules and backtests.
#
{
	my ($st, $json) = call('GET', '/api/v1/rules', 'analyst_ann');
	is($st, 200, 'GET rules: 200');
	my @rules = items($json);
	is_deeply([ sort map { $_->{name} } @rules ], [ sort @{ ids('SELECT name FROM p2pay.rules') } ],
		'GET rules: every rule');
	is(join(' ', @rules ? () : 'no rules', map { differs('p2pay.rules', 'name', $_, qw(mode weight params description)) || () } @rules),
		'', 'GET rules: as p2pay.rules holds them');
	my ($limit) = grep { $_->{name} eq 'amount_limit' } @rules;
	is(join(' ', map { $limit->{$_} // 'null' } qw(evaluations fires)),
		query("SELECT evaluations || ' ' || fires FROM p2pay.rule_stats WHERE rule = 'amount_limit'"),
		'GET rules: evaluations and fires as rule_stats counts them');
	is_error('GET rules as the app', 403, '42501', undef, call('GET', '/api/v1/rules', 'app_user'));

	my $period = { from => '2026-11-01T00:00:00Z', to => '2026-11-02T00:00:00Z' };
	($st, $json) = call('POST', '/api/v1/backtest', 'analyst_ann', $period);
	is($st, 200, 'POST backtest: 200');
	my $result = obj($json);
	is(query("SELECT '@{[ $result->{from} // 'none' ]}'::timestamptz = '2026-11-01T00:00:00Z' "
		  . "AND '@{[ $result->{to} // 'none' ]}'::timestamptz = '2026-11-02T00:00:00Z'"),
		't', 'POST backtest: the period');
	my $sort = sub { [ sort { $a->{rule} cmp $b->{rule} } items($_[0]) ] };
	is_deeply($sort->(obj($json)->{rules}),
		$sort->(decode_json(query("SELECT jsonb_agg(to_jsonb(b)) FROM p2pay.backtest('2026-11-01T00:00:00Z', '2026-11-02T00:00:00Z') b"))),
		'POST backtest: the rows of backtest()');
	my $change = [ { name => 'amount_limit', params => { max_amount => 100000 } } ];
	($st, $json) = call('POST', '/api/v1/backtest', 'analyst_ann', { %$period, rules => $change });
	is($st, 200, 'POST backtest with changed rules: 200');
	is_deeply($sort->(obj($json)->{rules}),
		$sort->(decode_json(query("SELECT jsonb_agg(to_jsonb(b)) FROM p2pay.backtest('2026-11-01T00:00:00Z', "
				  . "'2026-11-02T00:00:00Z', " . ql(encode_json($change)) . ') b'))),
		'POST backtest with changed rules: the rows of backtest() with them');
	is_error('POST backtest without a to', 400, qr/^2[23]/, 'to',
		call('POST', '/api/v1/backtest', 'analyst_ann', { from => $period->{from} }));
	is_error('POST backtest with a bad from', 400, qr/^22/, 'from',
		call('POST', '/api/v1/backtest', 'analyst_ann', { %$period, from => 'soon' }));
	is_error('POST backtest with an unknown field', 400, '22023', 'until',
		call('POST', '/api/v1/backtest', 'analyst_ann', { %$period, until => 'x' }));
	is_error('POST backtest as the app', 403, '42501', undef,
		call('POST', '/api/v1/backtest', 'app_user', $period));
}

#
# The live feed.
#

# sse_open(USER, LAST_EVENT_ID): a raw connection to /api/v1/flagged, its
# status and headers read.
sub sse_open
{
	my ($user, $last) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp')
	  or die "connect: $!";
	my $req = "GET /api/v1/flagged HTTP/1.1\r\nHost: 127.0.0.1:$port\r\nAccept: text/event-stream\r\n"
	  . 'Authorization: Basic ' . encode_base64("$user:$password{$user}", '') . "\r\n"
	  . (defined $last ? "Last-Event-ID: $last\r\n" : '') . "\r\n";
	syswrite($s, $req);
	my $c = { sock => $s, raw => '', text => '', status => 0, headers => {} };
	my $deadline = time + $timeout;
	while ($c->{raw} !~ /\r\n\r\n/)
	{
		last if !sse_read($c, $deadline);
	}
	if ($c->{raw} =~ s/^HTTP\/1\.\d (\d+)[^\r\n]*\r\n(.*?)\r\n\r\n//s)
	{
		$c->{status} = $1;
		for (split /\r\n/, $2)
		{
			$c->{headers}{ lc $1 } = $2 if /^([^:]+):\s*(.*)$/;
		}
	}
	$c->{chunked} = ($c->{headers}{'transfer-encoding'} // '') =~ /chunked/i;
	sse_decode($c);
	return $c;
}

# sse_read(C, DEADLINE): read what has arrived into C's raw bytes; false at
# the end of the stream or past DEADLINE.
sub sse_read
{
	my ($c, $deadline) = @_;
	my $left = $deadline - time;
	return 0 if $left <= 0 || !IO::Select->new($c->{sock})->can_read($left);
	my $n = sysread($c->{sock}, my $bytes, 65536);
	return 0 if !$n;
	$c->{raw} .= $bytes;
	return 1;
}

# sse_decode(C): C's raw bytes past the headers into its text, unchunked.
sub sse_decode
{
	my ($c) = @_;
	return if !$c->{status};
	if (!$c->{chunked})
	{
		$c->{text} .= $c->{raw};
		$c->{raw} = '';
		return;
	}
	while ($c->{raw} =~ /^([0-9A-Fa-f]+)[^\r\n]*\r\n/)
	{
		my ($size, $head) = (hex $1, length $&);
		last if length($c->{raw}) < $head + $size + 2;
		$c->{text} .= substr($c->{raw}, $head, $size);
		substr($c->{raw}, 0, $head + $size + 2, '');
	}
	return;
}

# sse_until(C, TID): the events read until one whose data holds TID (each
# {id, event, data}), or all that came before the timeout.
sub sse_until
{
	my ($c, $tid) = @_;
	my @events;
	return @events if $c->{status} != 200;
	my $deadline = time + $timeout;
	while (1)
	{
		$c->{text} =~ s/\r\n/\n/g;
		while ($c->{text} =~ s/^(.*?)\n\n//s)
		{
			my %e;
			for (split /\n/, $1)
			{
				next if /^:/;
				$e{$1} = defined $e{$1} ? "$e{$1}\n$2" : $2 if /^(id|event|data): ?(.*)$/;
			}
			next if !%e;
			push @events, \%e;
			return @events if index($e{data} // '', $tid) >= 0;
		}
		last if !sse_read($c, $deadline);
		sse_decode($c);
	}
	return @events;
}

# an LSN X/Y as a number
sub lsn { my ($hi, $lo) = split m{/}, $_[0] // '0/0'; return hex($hi) * 2**32 + hex($lo); }

# flag(MINUTE): a payment from the app that is under review, made at MINUTE.
sub flag
{
	my ($minute) = @_;
	my ($st, $json) = call('POST', '/api/v1/payments', 'app_user',
		{
			payer_id          => $user{alice},
			payee_id          => $user{bob},
			amount            => 50000,
			currency          => 'USD',
			payment_method_id => $BANK,
			created_at        => sprintf('2026-11-02T09:%02d:00Z', $minute)
		});
	is(obj($json)->{decision} // $st, 'review', "a flagged payment for the feed ($minute)");
	return obj($json)->{transaction_id} // 'none';
}

# feed_streaming(): wait until health says the feed streams; whether it does.
sub feed_streaming
{
	my $deadline = time + $timeout;
	while (time < $deadline)
	{
		my ($st, $json) = call('GET', '/api/v1/health');
		return 1 if (obj($json)->{feed} // '') eq 'streaming';
		usleep(100_000);
	}
	return 0;
}

{
	ok(feed_streaming(), 'health: the feed streams');
	my $refused = sse_open('outsider');
	is($refused->{status}, 403, 'the feed refuses a role without SELECT on payments');
	close $refused->{sock};

	my $feed = sse_open('analyst_ann');
	is($feed->{status}, 200, 'the feed: 200');
	like($feed->{headers}{'content-type'} // '', qr{^text/event-stream}, 'the feed: text/event-stream');
	my $first = flag(1);
	my ($ev_a) = grep { index($_->{data} // '', $first) >= 0 } sse_until($feed, $first);
	ok($ev_a, 'the feed: a flagged payment arrives');
	like($ev_a->{id} // '', qr{^[0-9A-F]+/[0-9A-F]+$}i, 'the feed: the event has an LSN for its id');
	my $data = eval { decode_json($ev_a->{data} // '') } // {};
	is_deeply([ $data->{transaction_id}, $data->{decision} ], [ $first, 'review' ],
		'the feed: the event is the payment, flagged for review');
	my $second = flag(2);
	my ($ev_b) = grep { index($_->{data} // '', $second) >= 0 } sse_until($feed, $second);
	ok($ev_b && lsn($ev_b->{id}) > lsn($ev_a->{id}), 'the feed: the next payment comes after it');
	close $feed->{sock};

	# Reconnect after the first: the second comes again, nothing at or before the first.
	my $again = sse_open('analyst_ann', $ev_a->{id});
	is($again->{status}, 200, 'the feed with Last-Event-ID: 200');
	my $third = flag(3);
	my @events = sse_until($again, $third);
	ok((grep { index($_->{data} // '', $third) >= 0 } @events), 'the feed with Last-Event-ID: a new payment arrives');
	ok((grep { index($_->{data} // '', $second) >= 0 } @events),
		'the feed with Last-Event-ID: what came after that id is sent again');
	is_deeply([ @events ? () : 'no events', map { $_->{id} } grep { defined $_->{id} && lsn($_->{id}) <= lsn($ev_a->{id}) } @events ],
		[], 'the feed with Last-Event-ID: nothing at or before that id');
	is_deeply([ @events ? () : 'no events', grep { ($_->{event} // '') eq 'gap' } @events ], [],
		'the feed with Last-Event-ID: no gap');
	close $again->{sock};

	# Reconnect after an event the daemon no longer holds: a gap, then every
	# event it holds, in the stream's order, and what comes next.
	my $lost = sse_open('analyst_ann', '0/1');
	is($lost->{status}, 200, 'the feed with a Last-Event-ID it no longer holds: 200');
	my $fourth = flag(4);
	@events = sse_until($lost, $fourth);
	is(($events[0] // {})->{event}, 'gap', 'the feed with a Last-Event-ID it no longer holds: a gap first');
	ok((grep { index($_->{data} // '', $fourth) >= 0 } @events),
		'the feed with a Last-Event-ID it no longer holds: a new payment arrives');
	my @held = map { my $e = $_; grep { index($e->{data} // '', $_) >= 0 } $first, $second, $third, $fourth } @events;
	is_deeply(\@held, [ $first, $second, $third, $fourth ],
		'the feed with a Last-Event-ID it no longer holds: then every event held, in order');
	close $lost->{sock};
}

#
# The database goes away, and comes back.
#
{
	$node->stop('fast');
	for my $c (
		[ 'GET a payment', 'GET', "/api/v1/payments/$tid{review}", 'analyst_ann' ],
		[ 'POST a payment', 'POST', '/api/v1/payments', 'app_user',
			{ payer_id => $user{alice}, payee_id => $user{bob}, amount => 1, currency => 'USD', payment_method_id => $BANK } ],
		[ 'health', 'GET', '/api/v1/health' ])
	{
		my ($name, @args) = @$c;
		my ($st, $json, $r) = call(@args);
		is($st, 503, "$name while the database is down: 503");
		is($r->{headers}{'retry-after'}, 1, "$name while the database is down: Retry-After 1");
		like(ref $json eq 'HASH' ? $json->{code} // '' : '', qr/^08/, "$name while the database is down: code 08xxx")
		  if @args > 2;
	}
	my $feed = sse_open('analyst_ann');
	is($feed->{status}, 503, 'the feed while the database is down: 503');
	close $feed->{sock};

	$node->start;
	my $deadline = time + $timeout;
	while ((call('GET', '/api/v1/health'))[0] =~ /^(503|599)$/ && time < $deadline)
	{
		usleep(100_000);
	}
	my ($st, $json) = call('GET', '/api/v1/health');
	is($st, 200, 'health after the database restarted: 200');
	($st, $json) = call('GET', "/api/v1/payments/$tid{review}", 'analyst_ann');
	is($st, 200, 'GET a payment after the database restarted: 200');
	payment_is_stored('GET a payment after the database restarted', $json);

	ok(feed_streaming(), 'health after the database restarted: the feed streams again');
	$feed = sse_open('analyst_ann');
	is($feed->{status}, 200, 'the feed after the database restarted: 200');
	my $d = flag(5);
	ok((grep { index($_->{data} // '', $d) >= 0 } sse_until($feed, $d)),
		'the feed after the database restarted: a flagged payment arrives');
	close $feed->{sock};
}

#
# HTTPS: the same API behind --tls-cert and --tls-key (a certificate made
# here), read with curl; plain HTTP to that port gets no answer.
#
{
	my $dir  = $node->basedir;
	my ($o, $e) = ('', '');
	IPC::Run::run([ 'openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
			'-subj', '/CN=127.0.0.1', '-keyout', "$dir/tls.key", '-out', "$dir/tls.crt" ],
		'<', '/dev/null', '>', \$o, '2>', \$e)
	  or die "openssl: $e";
	my $tls_port = PostgreSQL::Test::Cluster::get_free_port();
	my $tls_log  = "$dir/p2pay-http-tls.log";
	my $tls = IPC::Run::start(
		[ $daemon_bin, '--dsn', $dsn, '--listen', "127.0.0.1:$tls_port",
			'--tls-cert', "$dir/tls.crt", '--tls-key', "$dir/tls.key" ],
		'<', '/dev/null', '>>', $tls_log, '2>>', $tls_log);
	my $curl = sub {
		my ($url, @args) = @_;
		my ($out, $err) = ('', '');
		IPC::Run::run([ 'curl', '-s', '--max-time', '10', '--cacert', "$dir/tls.crt",
				'-w', '\n%{http_code}', @args, $url ], '>', \$out, '2>', \$err);
		my ($body, $code) = $out =~ /^(.*)\n(\d+)$/s;
		return ($code // '000', $body // '');
	};
	my $deadline = time + $timeout;
	usleep(100_000) while ($curl->("https://127.0.0.1:$tls_port/api/v1/health"))[0] eq '000' && time < $deadline;
	my ($code, $body) = $curl->("https://127.0.0.1:$tls_port/api/v1/health");
	is($code, 200, 'HTTPS: health answers, with the certificate given');
	($code, $body) = $curl->("https://127.0.0.1:$tls_port/api/v1/payments/$tid{review}",
		'-u', "analyst_ann:$password{analyst_ann}");
	is($code, 200, 'HTTPS: a payment, logged in');
	is((eval { decode_json($body) } // {})->{transaction_id}, $tid{review}, 'HTTPS: the payment asked for');
	($code) = $curl->("http://127.0.0.1:$tls_port/api/v1/health");
	isnt($code, 200, 'HTTPS: plain HTTP to its port gets no answer');
	$tls->signal('TERM');
	$tls->finish;
	is($tls->full_result(0), 0, 'HTTPS: p2pay-http exits 0 on SIGTERM');
}

#
# Every response above, against the OpenAPI document.
#
SKIP:
{
	my $checker = "$FindBin::RealBin/../test/http/check-responses.mjs";
	my $have_node = grep { -x "$_/node" } split /:/, $ENV{PATH} // '';
	skip 'node and http/node_modules (make runs npm ci) are needed to check responses against http/openapi.json', 1
	  if !$have_node || !-d "$FindBin::RealBin/../http/node_modules/\@apidevtools/swagger-parser";
	my ($stdout, $stderr) = ('', '');
	IPC::Run::run([ 'node', $checker, $responses ], '>', \$stdout, '2>', \$stderr);
	is($? >> 8, 0, 'every response matches http/openapi.json')
	  or diag($stderr);
	note($stdout);
}

$daemon->signal('TERM');
$daemon->finish;
$daemon_stopped = 1;
is($daemon->full_result(0), 0, 'p2pay-http exits 0 on SIGTERM');
note('p2pay-http log: ' . slurp_file($log));

$node->stop;
done_testing();
