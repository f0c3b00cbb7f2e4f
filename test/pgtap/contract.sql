-- test/pgtap/contract.sql: the schema and behaviour applications build on.
--
-- Tables, column types, keys and seeded rows of CREATE EXTENSION p2pay; the
-- decision enum; the scoring trigger; and the privilege model: a role with
-- nothing but USAGE on the schema and INSERT, SELECT on payments gets its
-- payments scored (the trigger works as the table owner) and can't touch the
-- rules or the state.  Everything happens in one transaction that is rolled
-- back, the role included.
\ir preamble.psql

SELECT plan(94);

------------------------------------------------------------------------------
-- Tables and columns
------------------------------------------------------------------------------
SELECT has_schema('p2pay');

-- currencies
SELECT has_table('p2pay', 'currencies', 'table p2pay.currencies exists');
SELECT col_type_is('p2pay', 'currencies', 'code', 'character(3)', 'currencies.code is char(3)');
SELECT col_is_pk('p2pay', 'currencies', 'code', 'currencies.code is the primary key');
SELECT col_type_is('p2pay', 'currencies', 'name', 'text', 'currencies.name is text');
SELECT col_type_is('p2pay', 'currencies', 'rate_to_base', 'numeric', 'currencies.rate_to_base is numeric');
SELECT col_not_null('p2pay', 'currencies', 'rate_to_base', 'currencies.rate_to_base is not null');

-- payment_methods
SELECT has_table('p2pay', 'payment_methods', 'table p2pay.payment_methods exists');
SELECT col_type_is('p2pay', 'payment_methods', 'id', 'uuid', 'payment_methods.id is uuid');
SELECT col_is_pk('p2pay', 'payment_methods', 'id', 'payment_methods.id is the primary key');
SELECT col_type_is('p2pay', 'payment_methods', 'name', 'text', 'payment_methods.name is text');
SELECT col_is_unique('p2pay', 'payment_methods', 'name', 'payment_methods.name is unique');

-- users
SELECT has_table('p2pay', 'users', 'table p2pay.users exists');
SELECT col_type_is('p2pay', 'users', 'id', 'uuid', 'users.id is uuid');
SELECT col_is_pk('p2pay', 'users', 'id', 'users.id is the primary key');
SELECT col_has_default('p2pay', 'users', 'id', 'users.id has a default');
SELECT col_type_is('p2pay', 'users', 'first_name', 'text', 'users.first_name is text');
SELECT col_type_is('p2pay', 'users', 'last_name', 'text', 'users.last_name is text');
SELECT col_type_is('p2pay', 'users', 'email_address', 'text', 'users.email_address is text');
SELECT col_type_is('p2pay', 'users', 'created_at', 'timestamp with time zone', 'users.created_at is timestamptz');

-- user_payment_methods
SELECT has_table('p2pay', 'user_payment_methods', 'table p2pay.user_payment_methods exists');
SELECT col_type_is('p2pay', 'user_payment_methods', 'user_id', 'uuid', 'user_payment_methods.user_id is uuid');
SELECT col_type_is('p2pay', 'user_payment_methods', 'payment_method_id', 'uuid',
                   'user_payment_methods.payment_method_id is uuid');
SELECT col_is_pk('p2pay', 'user_payment_methods', ARRAY['user_id', 'payment_method_id'],
                 'user_payment_methods has the primary key (user_id, payment_method_id)');
SELECT fk_ok('p2pay', 'user_payment_methods', 'user_id', 'p2pay', 'users', 'id',
             'user_payment_methods.user_id references users');
SELECT fk_ok('p2pay', 'user_payment_methods', 'payment_method_id', 'p2pay', 'payment_methods', 'id',
             'user_payment_methods.payment_method_id references payment_methods');

-- payments
SELECT has_table('p2pay', 'payments', 'table p2pay.payments exists');
SELECT col_type_is('p2pay', 'payments', 'id', 'bigint', 'payments.id is bigint');
-- a partitioned payments' keys also hold its partition key, created_at
SELECT col_is_pk('p2pay', 'payments',
                 CASE WHEN (SELECT relkind FROM pg_catalog.pg_class
                             WHERE oid = 'p2pay.payments'::regclass) = 'p'
                      THEN ARRAY['id', 'created_at'] ELSE ARRAY['id'] END,
                 'payments.id is the primary key (with created_at, when partitioned)');
SELECT is((SELECT attidentity::text FROM pg_catalog.pg_attribute
            WHERE attrelid = 'p2pay.payments'::regclass AND attname = 'id'),
          'a', 'payments.id is GENERATED ALWAYS AS IDENTITY');
SELECT col_type_is('p2pay', 'payments', 'transaction_id', 'uuid', 'payments.transaction_id is uuid');
SELECT col_is_unique('p2pay', 'payments',
                     CASE WHEN (SELECT relkind FROM pg_catalog.pg_class
                                 WHERE oid = 'p2pay.payments'::regclass) = 'p'
                          THEN ARRAY['transaction_id', 'created_at'] ELSE ARRAY['transaction_id'] END,
                     'payments.transaction_id is unique (with created_at, when partitioned)');
SELECT col_not_null('p2pay', 'payments', 'transaction_id', 'payments.transaction_id is not null');
SELECT col_has_default('p2pay', 'payments', 'transaction_id', 'payments.transaction_id has a default');
SELECT col_type_is('p2pay', 'payments', 'payer_id', 'uuid', 'payments.payer_id is uuid');
SELECT col_not_null('p2pay', 'payments', 'payer_id', 'payments.payer_id is not null');
SELECT fk_ok('p2pay', 'payments', 'payer_id', 'p2pay', 'users', 'id', 'payments.payer_id references users');
SELECT col_type_is('p2pay', 'payments', 'payee_id', 'uuid', 'payments.payee_id is uuid');
SELECT col_not_null('p2pay', 'payments', 'payee_id', 'payments.payee_id is not null');
SELECT fk_ok('p2pay', 'payments', 'payee_id', 'p2pay', 'users', 'id', 'payments.payee_id references users');
SELECT col_type_is('p2pay', 'payments', 'amount', 'numeric', 'payments.amount is numeric');
SELECT col_not_null('p2pay', 'payments', 'amount', 'payments.amount is not null');
SELECT col_type_is('p2pay', 'payments', 'currency', 'character(3)', 'payments.currency is char(3)');
SELECT col_not_null('p2pay', 'payments', 'currency', 'payments.currency is not null');
SELECT fk_ok('p2pay', 'payments', 'currency', 'p2pay', 'currencies', 'code',
             'payments.currency references currencies');
SELECT col_type_is('p2pay', 'payments', 'payment_method_id', 'uuid', 'payments.payment_method_id is uuid');
SELECT col_not_null('p2pay', 'payments', 'payment_method_id', 'payments.payment_method_id is not null');
SELECT fk_ok('p2pay', 'payments', 'payment_method_id', 'p2pay', 'payment_methods', 'id',
             'payments.payment_method_id references payment_methods');
SELECT col_type_is('p2pay', 'payments', 'created_at', 'timestamp with time zone',
                   'payments.created_at is timestamptz');
SELECT col_not_null('p2pay', 'payments', 'created_at', 'payments.created_at is not null');
SELECT col_has_default('p2pay', 'payments', 'created_at', 'payments.created_at has a default');
SELECT col_type_is('p2pay', 'payments', 'risk_score', 'double precision', 'payments.risk_score is double precision');
SELECT col_type_is('p2pay', 'payments', 'decision', 'p2pay', 'decision', 'payments.decision is p2pay.decision');
SELECT col_type_is('p2pay', 'payments', 'is_approved', 'boolean', 'payments.is_approved is boolean');
SELECT col_type_is('p2pay', 'payments', 'reasons', 'text[]', 'payments.reasons is text[]');

-- rules
SELECT has_table('p2pay', 'rules', 'table p2pay.rules exists');
SELECT col_type_is('p2pay', 'rules', 'name', 'text', 'rules.name is text');
SELECT col_is_pk('p2pay', 'rules', 'name', 'rules.name is the primary key');
SELECT col_type_is('p2pay', 'rules', 'enabled', 'boolean', 'rules.enabled is boolean');
SELECT col_type_is('p2pay', 'rules', 'weight', 'double precision', 'rules.weight is double precision');
SELECT col_type_is('p2pay', 'rules', 'params', 'jsonb', 'rules.params is jsonb');

-- blocklist
SELECT has_table('p2pay', 'blocklist', 'table p2pay.blocklist exists');
SELECT col_type_is('p2pay', 'blocklist', 'user_id', 'uuid', 'blocklist.user_id is uuid');
SELECT col_is_pk('p2pay', 'blocklist', 'user_id', 'blocklist.user_id is the primary key');
SELECT fk_ok('p2pay', 'blocklist', 'user_id', 'p2pay', 'users', 'id', 'blocklist.user_id references users');
SELECT col_type_is('p2pay', 'blocklist', 'reason', 'text', 'blocklist.reason is text');
SELECT col_type_is('p2pay', 'blocklist', 'added_at', 'timestamp with time zone', 'blocklist.added_at is timestamptz');
SELECT col_type_is('p2pay', 'blocklist', 'expires_at', 'timestamp with time zone',
                   'blocklist.expires_at is timestamptz');

-- settings
SELECT has_table('p2pay', 'settings', 'table p2pay.settings exists');
SELECT col_type_is('p2pay', 'settings', 'review_threshold', 'double precision',
                   'settings.review_threshold is double precision');
SELECT col_type_is('p2pay', 'settings', 'decline_threshold', 'double precision',
                   'settings.decline_threshold is double precision');

-- the decision enum, in order
SELECT has_enum('p2pay', 'decision', 'enum p2pay.decision exists');
SELECT enum_has_labels('p2pay', 'decision', ARRAY['approve', 'review', 'decline'],
                       'p2pay.decision is approve, review, decline');

------------------------------------------------------------------------------
-- The scoring trigger
------------------------------------------------------------------------------
SELECT has_trigger('p2pay', 'payments', 'payments_score', 'payments has the trigger payments_score');
SELECT trigger_is('p2pay', 'payments', 'payments_score', 'p2pay', 'score_payment',
                  'payments_score runs p2pay.score_payment()');
-- tgtype bits: 1 row, 2 before, 4 insert, 8 delete, 16 update, 32 truncate, 64 instead
SELECT is((SELECT tgtype::integer & 127 FROM pg_catalog.pg_trigger
            WHERE tgrelid = 'p2pay.payments'::regclass AND tgname = 'payments_score'),
          1 | 2 | 4, 'payments_score fires BEFORE INSERT, FOR EACH ROW, and on nothing else');

------------------------------------------------------------------------------
-- Seeded rows
------------------------------------------------------------------------------
SELECT results_eq(
  'SELECT code::text, name, rate_to_base FROM p2pay.currencies ORDER BY code',
  $$VALUES ('EUR', 'Euro', 1.08), ('ILS', 'Israeli New Shekel', 0.27), ('USD', 'US Dollar', 1)$$,
  'currencies USD, EUR and ILS are seeded with their rates');
SELECT results_eq(
  'SELECT id, name FROM p2pay.payment_methods ORDER BY id',
  $$VALUES ('00000000-0000-4000-8000-000000000001'::uuid, 'Bank transfer'),
           ('00000000-0000-4000-8000-000000000002'::uuid, 'Credit card'),
           ('00000000-0000-4000-8000-000000000003'::uuid, 'Check'),
           ('00000000-0000-4000-8000-000000000004'::uuid, 'Cash')$$,
  'the four payment methods are seeded with fixed ids');
SELECT set_eq(
  'SELECT name FROM p2pay.rules',
  ARRAY['amount_limit', 'payer_velocity_count', 'payer_velocity_amount', 'payer_fan_out',
        'payee_fan_in', 'structuring', 'new_payee_high_amount', 'new_account_high_amount',
        'round_trip', 'unregistered_method', 'amount_deviation', 'dormant_reactivation',
        'blocklist', 'pass_through', 'cycle', 'young_payee_high_amount'],
  'the rules of the catalogue are seeded');
SELECT is_empty('SELECT name FROM p2pay.rules WHERE NOT enabled',
                'every seeded rule is enabled');
SELECT results_eq(
  $$SELECT name, weight, params FROM p2pay.rules
     WHERE name IN ('payer_velocity_count', 'payee_fan_in', 'blocklist') ORDER BY name$$,
  $$VALUES ('blocklist', 1.0::float8, '{}'::jsonb),
           ('payee_fan_in', 0.4, '{"max_payers": 20, "window": "24 hours", "baseline_factor": 3, "baseline_days": 7,
                                    "short_history_min_amount": 100}'),
           ('payer_velocity_count', 0.4, '{"max_count": 10, "window": "1 hour", "baseline_factor": 3, "baseline_days": 7}')$$,
  'velocity, fan-in and blocklist rules have their documented weights and params');
SELECT results_eq(
  'SELECT review_threshold, decline_threshold FROM p2pay.settings',
  $$VALUES (0.3::float8, 0.8::float8)$$,
  'settings hold one row: review at 0.3, decline at 0.8');

------------------------------------------------------------------------------
-- An application role with INSERT, SELECT on payments only
------------------------------------------------------------------------------
CREATE ROLE p2pay_contract_app NOLOGIN;
GRANT USAGE ON SCHEMA p2pay TO p2pay_contract_app;
GRANT INSERT, SELECT ON p2pay.payments TO p2pay_contract_app;

-- The payer has no registered method: unregistered_method (0.3) fires,
-- which needs the rules, the thresholds and user_payment_methods read and
-- account_stats written, none of which the role may touch.
INSERT INTO p2pay.users (id, first_name) VALUES
  ('00000000-0000-4000-8000-0000000c0001', 'payer'),
  ('00000000-0000-4000-8000-0000000c0002', 'payee');

SELECT is_empty(
  $$SELECT privilege_type FROM information_schema.role_table_grants
     WHERE grantee = 'PUBLIC' AND table_schema = 'p2pay'$$,
  'nothing in p2pay is granted to PUBLIC');

SET LOCAL ROLE p2pay_contract_app;

SELECT lives_ok(
  $$INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency, payment_method_id)
    VALUES ('00000000-0000-4000-8000-0000000c00aa', '00000000-0000-4000-8000-0000000c0001',
            '00000000-0000-4000-8000-0000000c0002', 25, 'EUR',
            '00000000-0000-4000-8000-000000000002')$$,
  'the application role can insert a payment');
SELECT results_eq(
  $$SELECT risk_score, decision, is_approved, reasons, amount_base
      FROM p2pay.payments WHERE transaction_id = '00000000-0000-4000-8000-0000000c00aa'$$,
  $$VALUES (0.25::float8, 'approve'::p2pay.decision, true, ARRAY['unregistered_method'], 27.00::numeric)$$,
  'the application role''s payment is scored by the trigger');
SELECT throws_ok(
  $$UPDATE p2pay.rules SET enabled = false$$,
  '42501', NULL, 'the application role cannot change p2pay.rules');
SELECT throws_ok(
  $$INSERT INTO p2pay.rules (name, weight) VALUES ('amount_limit', 0)$$,
  '42501', NULL, 'the application role cannot insert into p2pay.rules');
SELECT throws_ok(
  $$UPDATE p2pay.settings SET review_threshold = 1$$,
  '42501', NULL, 'the application role cannot change p2pay.settings');
SELECT throws_ok(
  $$INSERT INTO p2pay.account_stats (user_id) VALUES ('00000000-0000-4000-8000-0000000c0001')$$,
  '42501', NULL, 'the application role cannot insert into p2pay.account_stats');
SELECT throws_ok(
  $$UPDATE p2pay.account_stats SET out_count = 0$$,
  '42501', NULL, 'the application role cannot change p2pay.account_stats');
SELECT throws_ok(
  $$DELETE FROM p2pay.blocklist$$,
  '42501', NULL, 'the application role cannot change p2pay.blocklist');
SELECT throws_ok(
  $$UPDATE p2pay.payments SET decision = 'approve'$$,
  '42501', NULL, 'the application role cannot change a scored payment');

RESET ROLE;

SELECT results_eq(
  $$SELECT user_id, out_count, out_sum, in_count, in_sum FROM p2pay.account_stats ORDER BY user_id$$,
  $$VALUES ('00000000-0000-4000-8000-0000000c0001'::uuid, 1::bigint, 27.00::numeric, 0::bigint, 0::numeric),
           ('00000000-0000-4000-8000-0000000c0002'::uuid, 0::bigint, 0::numeric, 1::bigint, 27.00::numeric)$$,
  'the trigger recorded the application role''s payment in account_stats');
SELECT results_eq(
  $$SELECT count(*)::integer FROM p2pay.rules WHERE enabled$$,
  $$VALUES (16)$$,
  'the rules are unchanged');

SELECT * FROM finish();
ROLLBACK;
