-- test/browser/setup.sql: the database the browser tests run against, made
-- by run.sh (as a superuser, in a database with p2pay): README's
-- "Privileges" grants, the login roles the tests sign in as, and a little
-- data (users, methods, a history, payments under review).
-- psql variables: app_password, analyst_password, feed_password.

-- README "Privileges" (the group roles are cluster-wide: made once).
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'p2pay_app') THEN
    CREATE ROLE p2pay_app NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'p2pay_analyst') THEN
    CREATE ROLE p2pay_analyst NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'p2pay_admin') THEN
    CREATE ROLE p2pay_admin NOLOGIN IN ROLE p2pay_analyst;
  END IF;
END $$;
GRANT USAGE ON SCHEMA p2pay TO p2pay_app;
GRANT SELECT ON p2pay.currencies, p2pay.payment_methods TO p2pay_app;
GRANT SELECT, INSERT ON p2pay.users, p2pay.user_payment_methods, p2pay.payments TO p2pay_app;

GRANT USAGE ON SCHEMA p2pay TO p2pay_analyst;
GRANT SELECT ON ALL TABLES IN SCHEMA p2pay TO p2pay_analyst;
GRANT SELECT, INSERT, UPDATE ON p2pay.fraud_labels TO p2pay_analyst;
GRANT EXECUTE ON FUNCTION p2pay.resolve(uuid, p2pay.decision, text),
                          p2pay.score(uuid, uuid, numeric, char, uuid, timestamptz),
                          p2pay.backtest(timestamptz, timestamptz, jsonb),
                          p2pay.rule_stats_read() TO p2pay_analyst;

GRANT UPDATE ON p2pay.rules, p2pay.settings TO p2pay_admin;
GRANT INSERT, UPDATE, DELETE ON p2pay.blocklist, p2pay.allowlist, p2pay.snoozes TO p2pay_admin;
GRANT EXECUTE ON FUNCTION p2pay.snooze(text, uuid, timestamptz, text),
                          p2pay.rule_stats_reset() TO p2pay_admin;

-- Version 1.2: analysts claim reviews, admins add currencies and methods.
DO $$
BEGIN
  IF to_regclass('p2pay.review_claims') IS NOT NULL THEN
    GRANT SELECT, INSERT, UPDATE, DELETE ON p2pay.review_claims TO p2pay_analyst;
  END IF;
END $$;
GRANT INSERT ON p2pay.currencies, p2pay.payment_methods TO p2pay_admin;

-- The roles the tests sign in as, over HTTP Basic.
CREATE ROLE p2pay_browser_app LOGIN PASSWORD :'app_password' IN ROLE p2pay_app;
CREATE ROLE p2pay_browser_analyst LOGIN PASSWORD :'analyst_password' IN ROLE p2pay_analyst;
CREATE ROLE p2pay_browser_analyst2 LOGIN PASSWORD :'analyst_password' IN ROLE p2pay_analyst;
-- The daemon's live feed reads a slot over a replication connection.
CREATE ROLE p2pay_browser_feed LOGIN REPLICATION PASSWORD :'feed_password';

-- Alice and Bob have paid each other for a month with a registered bank
-- transfer; Carol opened her account two days ago (her name is markup, which
-- the pages must show as text).
INSERT INTO p2pay.users (id, first_name, last_name, email_address, created_at) VALUES
  ('a0000000-0000-4000-8000-000000000001', 'Alice', 'Payer', 'alice@example.com', now() - interval '400 days'),
  ('a0000000-0000-4000-8000-000000000002', 'Bob', 'Payee', 'bob@example.com', now() - interval '400 days'),
  ('a0000000-0000-4000-8000-000000000003', 'Carol', '<img src=x data-testid=injected>', 'carol@example.com', now() - interval '2 days');
INSERT INTO p2pay.user_payment_methods (user_id, payment_method_id) VALUES
  ('a0000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000001'),
  ('a0000000-0000-4000-8000-000000000002', '00000000-0000-4000-8000-000000000001');
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT 'a0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000002',
       20 + i, 'USD', '00000000-0000-4000-8000-000000000001', now() - i * interval '1 day'
  FROM generate_series(30, 1, -1) i;

-- Under review: a large cash payment to Carol's young account.
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
VALUES ('a0000000-0000-4000-8000-000000000002', 'a0000000-0000-4000-8000-000000000003',
        9000, 'USD', '00000000-0000-4000-8000-000000000004', now() - interval '3 hours');
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM p2pay.payments WHERE decision = 'review') THEN
    RAISE EXCEPTION 'the browser tests'' data has no payment under review';
  END IF;
END $$;
