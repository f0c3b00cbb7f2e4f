-- pgTAP: the three roles of the README's "Privileges" section, created with
-- exactly its GRANT statements, each exercised as a non-superuser (SET LOCAL
-- ROLE): what it may do, and what it is refused with SQLSTATE 42501.  The
-- audit columns (decision_log.resolved_by, config_history.changed_by) record
-- SESSION_USER, the role that logged in; SET ROLE keeps the session user, so
-- two LOGIN-less test users entered with SET SESSION AUTHORIZATION stand in
-- for an analyst and an admin who log in as themselves.  Everything happens
-- in one transaction that is rolled back, the roles included.
\ir preamble.psql

SELECT plan(97);

------------------------------------------------------------------------------
-- The roles, as the README grants them: scripts/roles.sql holds the
-- README's statements (t/015_http.pl checks that they are the same)
------------------------------------------------------------------------------

\ir ../../scripts/roles.sql

-- People who log in as themselves (here entered with SET SESSION
-- AUTHORIZATION): the audit columns must name them.
CREATE ROLE p2pay_roles_alice NOLOGIN IN ROLE p2pay_analyst;
CREATE ROLE p2pay_roles_bob NOLOGIN IN ROLE p2pay_admin;

-- backtest() and rule_stats_reset() may still be stand-ins that fail when
-- run, so the right to run them is checked in the catalogue, not by a call.
SELECT is(has_function_privilege('p2pay_analyst', 'p2pay.backtest(timestamptz, timestamptz, jsonb)', 'EXECUTE'),
          true, 'analysts may run backtest()');
SELECT is(has_function_privilege('p2pay_admin', 'p2pay.backtest(timestamptz, timestamptz, jsonb)', 'EXECUTE'),
          true, 'admins may run backtest(), as analysts');
SELECT is(has_function_privilege('p2pay_analyst', 'p2pay.backtest_payments(timestamptz, timestamptz, jsonb)', 'EXECUTE'),
          true, 'analysts may run backtest_payments()');
SELECT is(has_function_privilege('p2pay_admin', 'p2pay.rule_stats_reset()', 'EXECUTE'),
          true, 'admins may run rule_stats_reset()');
SELECT is(has_function_privilege('p2pay_admin', 'p2pay.decision_stats_reset()', 'EXECUTE'),
          true, 'admins may run decision_stats_reset()');
SELECT is(has_function_privilege('p2pay_analyst', 'p2pay.flagged_since(timestamptz, p2pay.decision, interval)', 'EXECUTE'),
          true, 'analysts may run flagged_since(), a consumer''s catch-up after a failover');

------------------------------------------------------------------------------
-- The application
------------------------------------------------------------------------------
SET LOCAL ROLE p2pay_app;

-- users[1] pays; users[2..4] are paid; users[4] is blocklisted and users[5]
-- allowlisted by the admin further down.  All accounts are new, so a
-- payment above 1000 to a new payee fires new_account_high_amount (0.3)
-- and young_payee_high_amount (0.3): 1 - 0.7 * 0.7 = 0.51, a review
-- (new_payee_high_amount waits until p2pay has known the payer 30 days).
SELECT lives_ok(
  $$INSERT INTO p2pay.users (id, first_name) VALUES
      ('00000000-0000-4000-8000-0000000e0001', 'payer'),
      ('00000000-0000-4000-8000-0000000e0002', 'payee'),
      ('00000000-0000-4000-8000-0000000e0003', 'payee'),
      ('00000000-0000-4000-8000-0000000e0004', 'payee'),
      ('00000000-0000-4000-8000-0000000e0005', 'trusted')$$,
  'the application inserts users');
SELECT lives_ok(
  $$INSERT INTO p2pay.user_payment_methods (user_id, payment_method_id, details)
    VALUES ('00000000-0000-4000-8000-0000000e0001', '00000000-0000-4000-8000-000000000001', 'IBAN')$$,
  'the application registers a payment method');
SELECT lives_ok(
  $$INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency, payment_method_id)
    VALUES ('00000000-0000-4000-8000-0000000ea001', '00000000-0000-4000-8000-0000000e0001',
            '00000000-0000-4000-8000-0000000e0002', 25, 'USD', '00000000-0000-4000-8000-000000000001')$$,
  'the application inserts a payment');
-- The verdict a client writes is overwritten by the trigger.
SELECT lives_ok(
  $$INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency, payment_method_id,
                                risk_score, decision, is_approved, reasons)
    VALUES ('00000000-0000-4000-8000-0000000ea002', '00000000-0000-4000-8000-0000000e0001',
            '00000000-0000-4000-8000-0000000e0003', 5000, 'USD', '00000000-0000-4000-8000-000000000001',
            0, 'approve', true, '{}'),
           ('00000000-0000-4000-8000-0000000ea003', '00000000-0000-4000-8000-0000000e0001',
            '00000000-0000-4000-8000-0000000e0004', 5000, 'USD', '00000000-0000-4000-8000-000000000001',
            DEFAULT, DEFAULT, DEFAULT, DEFAULT)$$,
  'the application inserts payments that come out for review, one claiming approval');
SELECT results_eq(
  $$SELECT transaction_id, risk_score, decision, is_approved, reasons, ruleset_version
      FROM p2pay.payments ORDER BY id$$,
  $$VALUES ('00000000-0000-4000-8000-0000000ea001'::uuid, 0::float8, 'approve'::p2pay.decision, true,
            '{}'::text[], 2::bigint),
           ('00000000-0000-4000-8000-0000000ea002', 0.51, 'review', false,
            '{new_account_high_amount,young_payee_high_amount}', 2),
           ('00000000-0000-4000-8000-0000000ea003', 0.51, 'review', false,
            '{new_account_high_amount,young_payee_high_amount}', 2)$$,
  'the application reads its payments back, scored by the trigger (not as the client claimed)');
SELECT results_eq(
  $$SELECT count(*)::integer FROM p2pay.currencies$$, $$VALUES (3)$$,
  'the application reads the currencies');

SELECT throws_ok($$UPDATE p2pay.rules SET mode = 'off' WHERE name = 'amount_limit'$$,
                 '42501', NULL, 'the application cannot change a rule');
SELECT throws_ok($$UPDATE p2pay.settings SET review_threshold = 1$$,
                 '42501', NULL, 'the application cannot change the thresholds');
SELECT throws_ok($$INSERT INTO p2pay.blocklist (user_id, reason)
                   VALUES ('00000000-0000-4000-8000-0000000e0002', 'app')$$,
                 '42501', NULL, 'the application cannot add to the blocklist');
SELECT throws_ok($$INSERT INTO p2pay.allowlist (user_id, reason)
                   VALUES ('00000000-0000-4000-8000-0000000e0001', 'app')$$,
                 '42501', NULL, 'the application cannot add to the allowlist');
SELECT throws_ok($$INSERT INTO p2pay.snoozes (rule, user_id, until)
                   VALUES ('amount_limit', '00000000-0000-4000-8000-0000000e0001', now() + interval '1 day')$$,
                 '42501', NULL, 'the application cannot write a snooze');
SELECT throws_ok($$SELECT p2pay.resolve('00000000-0000-4000-8000-0000000ea002', 'approve', 'app')$$,
                 '42501', NULL, 'the application cannot run resolve()');
SELECT throws_ok($$SELECT p2pay.snooze('amount_limit', '00000000-0000-4000-8000-0000000e0001',
                                       now() + interval '1 day', 'app')$$,
                 '42501', NULL, 'the application cannot run snooze()');
SELECT throws_ok($$SELECT * FROM p2pay.backtest(now() - interval '1 day', now())$$,
                 '42501', NULL, 'the application cannot run backtest()');
SELECT throws_ok($$SELECT * FROM p2pay.backtest_payments(now() - interval '1 day', now())$$,
                 '42501', NULL, 'the application cannot run backtest_payments()');
SELECT throws_ok($$SELECT p2pay.rule_stats_reset()$$,
                 '42501', NULL, 'the application cannot run rule_stats_reset()');
SELECT throws_ok($$SELECT * FROM p2pay.score('00000000-0000-4000-8000-0000000e0002',
                   '00000000-0000-4000-8000-0000000e0001', 1, 'USD', '00000000-0000-4000-8000-000000000001')$$,
                 '42501', NULL, 'the application cannot run score(), whose verdict would reveal the lists');
SELECT throws_ok($$SELECT * FROM p2pay.rule_stats_read()$$,
                 '42501', NULL, 'the application cannot read the rule statistics through their function');
SELECT throws_ok($$SELECT * FROM p2pay.decision_stats_read()$$,
                 '42501', NULL, 'the application cannot read the decision statistics through their function');
SELECT throws_ok($$SELECT p2pay.decision_stats_reset()$$,
                 '42501', NULL, 'the application cannot run decision_stats_reset()');
SELECT throws_ok($$SELECT * FROM p2pay.flagged_since(now() - interval '1 hour')$$,
                 '42501', NULL, 'the application cannot run flagged_since(), which reads every flagged payment');
SELECT throws_ok($$UPDATE p2pay.payments SET decision = 'approve'
                    WHERE transaction_id = '00000000-0000-4000-8000-0000000ea002'$$,
                 '42501', NULL, 'the application cannot update a payment''s decision');
SELECT throws_ok($$INSERT INTO p2pay.account_stats (user_id) VALUES ('00000000-0000-4000-8000-0000000e0005')$$,
                 '42501', NULL, 'the application cannot insert into account_stats');
SELECT throws_ok($$UPDATE p2pay.account_stats SET out_count = 0$$,
                 '42501', NULL, 'the application cannot update account_stats');
SELECT throws_ok($$SELECT * FROM p2pay.config_history$$,
                 '42501', NULL, 'the application cannot read config_history');
SELECT throws_ok($$INSERT INTO p2pay.fraud_labels (transaction_id, is_fraud)
                   VALUES ('00000000-0000-4000-8000-0000000ea002', false)$$,
                 '42501', NULL, 'the application cannot label fraud');

-- The HTTP API's functions run as the caller: the same rights, the same
-- refusals.
SELECT is(p2pay.api_create_user('{"id": "00000000-0000-4000-8000-0000000e0006"}') ->> 'id',
          '00000000-0000-4000-8000-0000000e0006', 'the application creates a user through the API');
SELECT is(jsonb_array_length(p2pay.api_payments('{"payer_id": "00000000-0000-4000-8000-0000000e0001"}')), 3,
          'the application lists its payments through the API');
SELECT throws_ok($$SELECT p2pay.api_claim('00000000-0000-4000-8000-0000000ea002')$$,
                 '42501', NULL, 'the application cannot claim a review');
SELECT throws_ok($$SELECT p2pay.api_resolve('00000000-0000-4000-8000-0000000ea002', '{"decision": "approve"}')$$,
                 '42501', NULL, 'the application cannot resolve a review through the API');
SELECT throws_ok($$SELECT p2pay.api_reviews()$$,
                 '42501', NULL, 'the application cannot read the review queue through the API');
SELECT throws_ok($$SELECT p2pay.api_rules()$$,
                 '42501', NULL, 'the application cannot read the rules through the API');
SELECT throws_ok($$SELECT p2pay.api_create_currency('{"code": "CHF", "name": "Swiss franc", "rate_to_base": 1.1}')$$,
                 '42501', NULL, 'the application cannot add a currency');

RESET ROLE;

-- Even granted UPDATE on payments, a non-owner is refused the verdict
-- columns by the guard (its own message, not "permission denied").  The
-- grant lives in a savepoint that is rolled back; the TAP lines printed
-- inside it stand.
SAVEPOINT app_may_update;
GRANT UPDATE ON p2pay.payments TO p2pay_app;
SET LOCAL ROLE p2pay_app;
SELECT throws_ok($$UPDATE p2pay.payments SET decision = 'approve'
                    WHERE transaction_id = '00000000-0000-4000-8000-0000000ea002'$$,
                 '42501', 'column decision of a payment is changed only by p2pay',
                 'granted UPDATE, the application is still refused a change of decision by the guard');
SELECT throws_ok($$UPDATE p2pay.payments SET risk_score = 0, reasons = '{}'
                    WHERE transaction_id = '00000000-0000-4000-8000-0000000ea002'$$,
                 '42501', 'column risk_score of a payment is changed only by p2pay',
                 'granted UPDATE, the application is still refused a change of score by the guard');
RESET ROLE;
ROLLBACK TO SAVEPOINT app_may_update;
RELEASE SAVEPOINT app_may_update;

SELECT is(has_table_privilege('p2pay_app', 'p2pay.payments', 'UPDATE'), false,
          'the UPDATE grant went with its savepoint');
SELECT results_eq(
  $$SELECT decision FROM p2pay.payments WHERE transaction_id = '00000000-0000-4000-8000-0000000ea002'$$,
  $$VALUES ('review'::p2pay.decision)$$,
  'the payment is still under review');
SELECT results_eq(
  $$SELECT user_id, out_count, in_count FROM p2pay.account_stats ORDER BY user_id$$,
  $$VALUES ('00000000-0000-4000-8000-0000000e0001'::uuid, 3::bigint, 0::bigint),
           ('00000000-0000-4000-8000-0000000e0002', 0, 1),
           ('00000000-0000-4000-8000-0000000e0003', 0, 1),
           ('00000000-0000-4000-8000-0000000e0004', 0, 1)$$,
  'the trigger kept account_stats for the application''s payments');

------------------------------------------------------------------------------
-- The analyst
------------------------------------------------------------------------------
SET LOCAL ROLE p2pay_analyst;

SELECT results_eq(
  $$SELECT decision FROM p2pay.score('00000000-0000-4000-8000-0000000e0001',
      '00000000-0000-4000-8000-0000000e0002', 5, 'USD', '00000000-0000-4000-8000-000000000001',
      now())$$,
  $$VALUES ('approve'::p2pay.decision)$$,
  'the analyst runs a dry run with score()');

SELECT results_eq(
  $$SELECT transaction_id, decision FROM p2pay.payments ORDER BY id$$,
  $$VALUES ('00000000-0000-4000-8000-0000000ea001'::uuid, 'approve'::p2pay.decision),
           ('00000000-0000-4000-8000-0000000ea002', 'review'),
           ('00000000-0000-4000-8000-0000000ea003', 'review')$$,
  'the analyst reads payments');
SELECT results_eq(
  $$SELECT transaction_id, risk_score, reasons FROM p2pay.review_queue$$,
  $$VALUES ('00000000-0000-4000-8000-0000000ea002'::uuid, 0.51::float8,
            '{new_account_high_amount,young_payee_high_amount}'::text[]),
           ('00000000-0000-4000-8000-0000000ea003', 0.51,
            '{new_account_high_amount,young_payee_high_amount}')$$,
  'the analyst reads the review queue, oldest first');
SELECT results_eq(
  $$SELECT count(*)::integer FROM p2pay.decision_log$$, $$VALUES (0)$$,
  'the analyst reads decision_log (empty so far)');
SELECT results_eq(
  $$SELECT table_name, count(*)::integer FROM p2pay.config_history
     WHERE version = 1 GROUP BY table_name ORDER BY table_name$$,
  $$VALUES ('rules', 15), ('settings', 1)$$,
  'the analyst reads config_history: version 1 is the catalogue of 1.0');
SELECT results_eq(
  $$SELECT count(*)::integer FROM p2pay.rules WHERE mode = 'active'$$, $$VALUES (16)$$,
  'the analyst reads the rules');

SELECT is(jsonb_array_length(p2pay.api_reviews()), 2, 'the analyst reads the review queue through the API');
SELECT is(jsonb_array_length(p2pay.api_rules()), (SELECT count(*)::integer FROM p2pay.rules),
          'the analyst reads the rules and their statistics through the API');
SELECT is(p2pay.api_claim('00000000-0000-4000-8000-0000000ea002', '{"minutes": 5}') ->> 'claimed_by',
          session_user::text, 'the analyst claims a review, under the role that logged in');
SELECT is(p2pay.api_release('00000000-0000-4000-8000-0000000ea002') ->> 'transaction_id',
          '00000000-0000-4000-8000-0000000ea002', 'the analyst releases the claim');
SELECT throws_ok($$SELECT p2pay.api_create_currency('{"code": "CHF", "name": "Swiss franc", "rate_to_base": 1.1}')$$,
                 '42501', NULL, 'the analyst cannot add a currency');

SELECT lives_ok(
  $$SELECT p2pay.resolve('00000000-0000-4000-8000-0000000ea002', 'approve', 'known customer')$$,
  'the analyst resolves a review with resolve()');
SELECT results_eq(
  $$SELECT decision, is_approved, risk_score, reasons FROM p2pay.payments
     WHERE transaction_id = '00000000-0000-4000-8000-0000000ea002'$$,
  $$VALUES ('approve'::p2pay.decision, true, 0.51::float8, '{new_account_high_amount,young_payee_high_amount}'::text[])$$,
  'resolve() approved the payment, keeping its score and reasons');
SELECT results_eq(
  $$SELECT transaction_id FROM p2pay.review_queue$$,
  $$VALUES ('00000000-0000-4000-8000-0000000ea003'::uuid)$$,
  'the resolved payment left the review queue');
-- SET ROLE changes current_user, not session_user: as the README says, the
-- log names the role that logged in.
SELECT results_eq(
  $$SELECT transaction_id, old_decision, new_decision, note, resolved_by FROM p2pay.decision_log$$,
  $$VALUES ('00000000-0000-4000-8000-0000000ea002'::uuid, 'review'::p2pay.decision,
            'approve'::p2pay.decision, 'known customer', session_user)$$,
  'decision_log records the resolution under SESSION_USER, the role that logged in');

SELECT lives_ok(
  $$INSERT INTO p2pay.fraud_labels (transaction_id, is_fraud, source)
    VALUES ('00000000-0000-4000-8000-0000000ea003', true, 'chargeback')$$,
  'the analyst labels a payment as fraud');
SELECT lives_ok(
  $$UPDATE p2pay.fraud_labels SET source = 'chargeback, confirmed'
     WHERE transaction_id = '00000000-0000-4000-8000-0000000ea003'$$,
  'the analyst corrects a label');
SELECT results_eq(
  $$SELECT transaction_id, is_fraud, source FROM p2pay.fraud_labels$$,
  $$VALUES ('00000000-0000-4000-8000-0000000ea003'::uuid, true, 'chargeback, confirmed')$$,
  'the label is stored');

SELECT throws_ok($$UPDATE p2pay.rules SET mode = 'off' WHERE name = 'amount_limit'$$,
                 '42501', NULL, 'the analyst cannot change a rule');
SELECT throws_ok($$UPDATE p2pay.settings SET review_threshold = 1$$,
                 '42501', NULL, 'the analyst cannot change the thresholds');
SELECT throws_ok($$INSERT INTO p2pay.blocklist (user_id, reason)
                   VALUES ('00000000-0000-4000-8000-0000000e0002', 'analyst')$$,
                 '42501', NULL, 'the analyst cannot add to the blocklist');
SELECT throws_ok($$SELECT p2pay.snooze('amount_limit', '00000000-0000-4000-8000-0000000e0001',
                                       now() + interval '1 day', 'analyst')$$,
                 '42501', NULL, 'the analyst cannot run snooze()');
SELECT throws_ok($$SELECT p2pay.rule_stats_reset()$$,
                 '42501', NULL, 'the analyst cannot run rule_stats_reset()');
SELECT throws_ok($$UPDATE p2pay.payments SET decision = 'decline'
                    WHERE transaction_id = '00000000-0000-4000-8000-0000000ea003'$$,
                 '42501', NULL, 'the analyst cannot update a payment''s decision directly');
SELECT throws_ok($$INSERT INTO p2pay.decision_log (transaction_id, old_decision, new_decision, resolved_by, resolved_at)
                   VALUES ('00000000-0000-4000-8000-0000000ea003', 'review', 'approve', 'someone', now())$$,
                 '42501', NULL, 'the analyst cannot forge decision_log');

RESET ROLE;

-- An analyst who logged in as herself claims a review: no other analyst
-- may resolve it meanwhile.
SET LOCAL SESSION AUTHORIZATION p2pay_roles_alice;
SELECT is(p2pay.api_claim('00000000-0000-4000-8000-0000000ea003') ->> 'claimed_by',
          'p2pay_roles_alice', 'an analyst who logged in as herself claims a review');
RESET SESSION AUTHORIZATION;
SET LOCAL ROLE p2pay_analyst;
SELECT throws_ok($$SELECT p2pay.api_resolve('00000000-0000-4000-8000-0000000ea003', '{"decision": "approve"}')$$,
                 '55000', 'p2pay: review 00000000-0000-4000-8000-0000000ea003 is claimed by p2pay_roles_alice',
                 'another analyst cannot resolve a review she has claimed');
RESET ROLE;

-- An analyst who logged in as herself is named in the log.
SET LOCAL SESSION AUTHORIZATION p2pay_roles_alice;
SELECT lives_ok(
  $$SELECT p2pay.resolve('00000000-0000-4000-8000-0000000ea003', 'decline', 'chargeback')$$,
  'an analyst who logged in as herself resolves a review');
RESET SESSION AUTHORIZATION;
SELECT results_eq(
  $$SELECT old_decision, new_decision, resolved_by FROM p2pay.decision_log
     WHERE transaction_id = '00000000-0000-4000-8000-0000000ea003'$$,
  $$VALUES ('review'::p2pay.decision, 'decline'::p2pay.decision, 'p2pay_roles_alice'::name)$$,
  'decision_log names the analyst who logged in');
SELECT results_eq(
  $$SELECT decision, is_approved FROM p2pay.payments
     WHERE transaction_id = '00000000-0000-4000-8000-0000000ea003'$$,
  $$VALUES ('decline'::p2pay.decision, false)$$,
  'her resolution declined the payment');

------------------------------------------------------------------------------
-- The admin
------------------------------------------------------------------------------
SELECT results_eq($$SELECT version FROM p2pay.ruleset$$, $$VALUES (2::bigint)$$,
                  'nothing has changed the rule set since it was installed: version 2 (1.0, then 1.1)');

SET LOCAL ROLE p2pay_admin;

SELECT lives_ok($$UPDATE p2pay.rules SET mode = 'shadow' WHERE name = 'unregistered_method'$$,
                'the admin puts a rule in shadow mode');
SELECT lives_ok($$UPDATE p2pay.settings SET review_threshold = 0.25, decline_threshold = 0.75$$,
                'the admin changes the thresholds');
SELECT lives_ok($$INSERT INTO p2pay.blocklist (user_id, reason)
                  VALUES ('00000000-0000-4000-8000-0000000e0004', 'chargeback fraud')$$,
                'the admin adds a user to the blocklist');
SELECT lives_ok($$INSERT INTO p2pay.allowlist (user_id, reason)
                  VALUES ('00000000-0000-4000-8000-0000000e0005', 'payroll')$$,
                'the admin adds a user to the allowlist');
SELECT lives_ok($$SELECT p2pay.snooze('amount_limit', '00000000-0000-4000-8000-0000000e0001',
                                      now() + interval '1 day', 'known large payer')$$,
                'the admin snoozes a rule for a user');

SELECT is(p2pay.api_create_currency('{"code": "CHF", "name": "Swiss franc", "rate_to_base": 1.1}') ->> 'code',
          'CHF', 'the admin adds a currency through the API');

SELECT results_eq(
  $$SELECT mode::text, enabled FROM p2pay.rules WHERE name = 'unregistered_method'$$,
  $$VALUES ('shadow', false)$$,
  'the rule is in shadow mode');
SELECT results_eq(
  $$SELECT review_threshold, decline_threshold FROM p2pay.settings$$,
  $$VALUES (0.25::float8, 0.75::float8)$$,
  'the thresholds are changed');
SELECT results_eq(
  $$SELECT rule, user_id, reason FROM p2pay.snoozes$$,
  $$VALUES ('amount_limit', '00000000-0000-4000-8000-0000000e0001'::uuid, 'known large payer')$$,
  'the snooze is stored');
-- One transaction makes one version, however many changes it holds (the
-- update to 1.1 ran in this transaction too: its rule rows are left out).
SELECT results_eq(
  $$SELECT version, changed_by FROM p2pay.ruleset$$,
  $$VALUES (2::bigint, session_user)$$,
  'the admin''s changes made rule-set version 2, by the role that logged in');
SELECT results_eq(
  $$SELECT version, changed_by, table_name, operation FROM p2pay.config_history
     WHERE version > 1 AND table_name <> 'rules' OR version > 1 AND new_row->>'name' = 'unregistered_method'
     ORDER BY id$$,
  $$VALUES (2::bigint, session_user, 'rules', 'UPDATE'),
           (2, session_user, 'settings', 'UPDATE'),
           (2, session_user, 'blocklist', 'INSERT'),
           (2, session_user, 'allowlist', 'INSERT'),
           (2, session_user, 'snoozes', 'INSERT')$$,
  'config_history holds one row per change, under version 2');
SELECT results_eq(
  $$SELECT old_row->>'mode', new_row->>'mode' FROM p2pay.config_history
     WHERE version = 2 AND table_name = 'rules' AND new_row->>'name' = 'unregistered_method'$$,
  $$VALUES ('active', 'shadow')$$,
  'config_history keeps the rule row before and after');
SELECT results_eq(
  $$SELECT e->>'mode' FROM jsonb_array_elements(p2pay.rules_at(1)) e WHERE e->>'name' = 'unregistered_method'
    UNION ALL
    SELECT e->>'mode' FROM jsonb_array_elements(p2pay.rules_at(2)) e WHERE e->>'name' = 'unregistered_method'$$,
  $$VALUES ('active'), ('shadow')$$,
  'rules_at() gives the rule as it was at versions 1 and 2');
SELECT results_eq(
  $$SELECT count(*)::integer FROM jsonb_array_elements(p2pay.rules_at(1)) e
     WHERE e->>'name' = 'young_payee_high_amount'
    UNION ALL
    SELECT count(*)::integer FROM jsonb_array_elements(p2pay.rules_at(2)) e
     WHERE e->>'name' = 'young_payee_high_amount'$$,
  $$VALUES (0), (1)$$,
  'rules_at(): young_payee_high_amount came with 1.1 (version 2), not with 1.0 (version 1)');

SELECT throws_ok($$UPDATE p2pay.payments SET decision = 'approve'
                    WHERE transaction_id = '00000000-0000-4000-8000-0000000ea003'$$,
                 '42501', NULL, 'the admin cannot update a payment''s decision directly');
SELECT throws_ok($$INSERT INTO p2pay.config_history (version, changed_at, changed_by, table_name, operation)
                   VALUES (2, now(), 'someone', 'rules', 'UPDATE')$$,
                 '42501', NULL, 'the admin cannot write config_history');
SELECT throws_ok($$DELETE FROM p2pay.config_history WHERE version = 2$$,
                 '42501', NULL, 'the admin cannot delete from config_history');
SELECT throws_ok($$UPDATE p2pay.ruleset SET version = 1$$,
                 '42501', NULL, 'the admin cannot set the rule-set version');

RESET ROLE;

-- The application's next payments are scored under the admin's version.
SET LOCAL ROLE p2pay_app;
SELECT lives_ok(
  $$INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency, payment_method_id)
    VALUES ('00000000-0000-4000-8000-0000000ea004', '00000000-0000-4000-8000-0000000e0001',
            '00000000-0000-4000-8000-0000000e0002', 25, 'USD', '00000000-0000-4000-8000-000000000002'),
           ('00000000-0000-4000-8000-0000000ea005', '00000000-0000-4000-8000-0000000e0001',
            '00000000-0000-4000-8000-0000000e0004', 25, 'USD', '00000000-0000-4000-8000-000000000001')$$,
  'the application inserts payments after the admin''s changes');
SELECT results_eq(
  $$SELECT transaction_id, risk_score, decision, reasons,
           shadow_reasons, shadow_risk_score, shadow_decision, ruleset_version
      FROM p2pay.payments WHERE id > 3 ORDER BY id$$,
  $$VALUES ('00000000-0000-4000-8000-0000000ea004'::uuid, 0::float8, 'approve'::p2pay.decision, '{}'::text[],
            '{unregistered_method}'::text[], 0.25::float8, 'review'::p2pay.decision, 2::bigint),
           ('00000000-0000-4000-8000-0000000ea005', 1, 'decline', '{blocklist}',
            '{}', 1, 'decline', 2)$$,
  'they are scored under version 2: the shadow rule, the new thresholds and the blocklist');
RESET ROLE;

-- An admin who logged in as himself is named in the history.
SET LOCAL SESSION AUTHORIZATION p2pay_roles_bob;
SELECT lives_ok($$DELETE FROM p2pay.allowlist WHERE user_id = '00000000-0000-4000-8000-0000000e0005'$$,
                'an admin who logged in as himself removes a user from the allowlist');
RESET SESSION AUTHORIZATION;
SELECT results_eq(
  $$SELECT version, changed_by, table_name, operation, old_row->>'reason'
      FROM p2pay.config_history ORDER BY id DESC LIMIT 1$$,
  $$VALUES (2::bigint, 'p2pay_roles_bob'::name, 'allowlist', 'DELETE', 'payroll')$$,
  'config_history names the admin who logged in');

SELECT * FROM finish();
ROLLBACK;
