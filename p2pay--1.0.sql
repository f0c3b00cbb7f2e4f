/* p2pay--1.0.sql: the payments schema, the rule catalogue and the scoring trigger */

\echo Use "CREATE EXTENSION p2pay" to load this file. \quit

-- The decision written onto every payment.
CREATE TYPE @extschema@.decision AS ENUM ('approve', 'review', 'decline');
COMMENT ON TYPE @extschema@.decision IS
  'Outcome of scoring a payment: approve, hold for review, or decline.';

------------------------------------------------------------------------------
-- Reference data
------------------------------------------------------------------------------

CREATE TABLE @extschema@.currencies (
  code         char(3) PRIMARY KEY CHECK (code ~ '^[A-Z]{3}$'),
  name         text NOT NULL,
  rate_to_base numeric NOT NULL
               CHECK (rate_to_base > 0 AND rate_to_base < 'Infinity'::numeric)
);
COMMENT ON TABLE @extschema@.currencies IS
  'Currencies payments may use; amounts are compared in the base currency (USD).';
COMMENT ON COLUMN @extschema@.currencies.rate_to_base IS
  'Units of the base currency (USD) per unit of this currency; amount rules compare amount * rate_to_base.';

INSERT INTO @extschema@.currencies (code, name, rate_to_base) VALUES
  ('USD', 'US Dollar', 1),
  ('EUR', 'Euro', 1.08),
  ('ILS', 'Israeli New Shekel', 0.27);

CREATE TABLE @extschema@.payment_methods (
  id   uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
  name text NOT NULL UNIQUE
);
COMMENT ON TABLE @extschema@.payment_methods IS 'Means by which a payment is made.';

-- Fixed ids so that scripts and tests can name the seeded methods.
INSERT INTO @extschema@.payment_methods (id, name) VALUES
  ('00000000-0000-4000-8000-000000000001', 'Bank transfer'),
  ('00000000-0000-4000-8000-000000000002', 'Credit card'),
  ('00000000-0000-4000-8000-000000000003', 'Check'),
  ('00000000-0000-4000-8000-000000000004', 'Cash');

CREATE TABLE @extschema@.users (
  id            uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
  first_name    text,
  last_name     text,
  email_address text,
  created_at    timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE @extschema@.users IS 'Account holders who pay and are paid.';
COMMENT ON COLUMN @extschema@.users.created_at IS
  'When the account was opened; new_account_high_amount compares it with the payment time.';

CREATE TABLE @extschema@.user_payment_methods (
  user_id           uuid NOT NULL REFERENCES @extschema@.users,
  payment_method_id uuid NOT NULL REFERENCES @extschema@.payment_methods,
  details           text,
  PRIMARY KEY (user_id, payment_method_id)
);
COMMENT ON TABLE @extschema@.user_payment_methods IS
  'Payment methods each user has registered; paying with another one fires unregistered_method.';

------------------------------------------------------------------------------
-- Payments
------------------------------------------------------------------------------

CREATE TABLE @extschema@.payments (
  id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  transaction_id    uuid NOT NULL UNIQUE DEFAULT pg_catalog.gen_random_uuid(),
  payer_id          uuid NOT NULL REFERENCES @extschema@.users,
  payee_id          uuid NOT NULL REFERENCES @extschema@.users,
  amount            numeric NOT NULL,
  currency          char(3) NOT NULL REFERENCES @extschema@.currencies,
  payment_method_id uuid NOT NULL REFERENCES @extschema@.payment_methods,
  created_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
  risk_score        double precision,
  decision          @extschema@.decision,
  is_approved       boolean,
  reasons           text[],
  amount_base       numeric
);
COMMENT ON TABLE @extschema@.payments IS
  'Payments; every insert is scored by the p2pay trigger in the inserting transaction.';
COMMENT ON COLUMN @extschema@.payments.created_at IS
  'Time of the payment; rule windows are measured back from it, so history can be replayed with past times.';
COMMENT ON COLUMN @extschema@.payments.risk_score IS
  'Written by the trigger: 1 - product(1 - weight) over the enabled rules that fired.';
COMMENT ON COLUMN @extschema@.payments.decision IS
  'Written by the trigger: decline, review or approve, from the score, the thresholds and the blocklist.';
COMMENT ON COLUMN @extschema@.payments.is_approved IS
  'Written by the trigger: decision = ''approve''.';
COMMENT ON COLUMN @extschema@.payments.reasons IS
  'Written by the trigger: names of the rules that fired, in catalogue order.';
COMMENT ON COLUMN @extschema@.payments.amount_base IS
  'Written by the trigger: amount * rate_to_base of the currency at the time of the insert.';

-- The stream (output plugin p2pay) reports the old decision of an UPDATE
-- and the whole row of a DELETE: the WAL must carry the old row.  Updates
-- of payments are rare (an analyst resolving a review), so logging the old
-- row whole costs little.
ALTER TABLE @extschema@.payments REPLICA IDENTITY FULL;

-- Serves the payer's window rules (velocity, structuring, round trip, the
-- previous payment) as index-only scans bounded by the window.
CREATE INDEX payments_payer_time_idx ON @extschema@.payments
  (payer_id, created_at) INCLUDE (payee_id, amount_base);

------------------------------------------------------------------------------
-- Per-account state, maintained by the trigger in the inserting transaction
------------------------------------------------------------------------------

-- No foreign key: the trigger writes a row only for users it has just found,
-- and a check per write would cost every payment two more lookups.
CREATE TABLE @extschema@.account_stats (
  user_id    uuid PRIMARY KEY,
  out_count  bigint NOT NULL DEFAULT 0,
  out_sum    numeric NOT NULL DEFAULT 0,
  in_count   bigint NOT NULL DEFAULT 0,
  in_sum     numeric NOT NULL DEFAULT 0
);
COMMENT ON TABLE @extschema@.account_stats IS
  'Running totals per account over all its payments (amount_deviation''s mean); maintained by the trigger.';

CREATE TABLE @extschema@.pair_stats (
  payer_id uuid NOT NULL,
  payee_id uuid NOT NULL,
  first_at timestamptz NOT NULL,
  last_at  timestamptz NOT NULL,
  n        bigint NOT NULL,
  total    numeric NOT NULL,
  PRIMARY KEY (payer_id, payee_id)
);
COMMENT ON TABLE @extschema@.pair_stats IS
  'One row per (payer, payee) that ever paid: first-seen pairs, and distinct counterparties in a window through last_at.';
CREATE INDEX pair_stats_payer_last_idx ON @extschema@.pair_stats (payer_id, last_at);
CREATE INDEX pair_stats_payee_last_idx ON @extschema@.pair_stats (payee_id, last_at);

CREATE TABLE @extschema@.payer_hourly (
  payer_id uuid NOT NULL,
  hour     timestamptz NOT NULL,
  n        bigint NOT NULL,
  total    numeric NOT NULL,
  PRIMARY KEY (payer_id, hour)
);
COMMENT ON TABLE @extschema@.payer_hourly IS
  'Payer totals in UTC hour buckets: a window sum reads whole buckets plus the rows of the one bucket at its edge.';

------------------------------------------------------------------------------
-- Rules, thresholds and lists
------------------------------------------------------------------------------

CREATE TABLE @extschema@.rules (
  name       text PRIMARY KEY,
  enabled    boolean NOT NULL DEFAULT true,
  weight     double precision NOT NULL,
  params     jsonb NOT NULL DEFAULT '{}',
  description text
);
COMMENT ON TABLE @extschema@.rules IS
  'The rule catalogue: one row per rule; a change takes effect for the next insert in every session.';
COMMENT ON COLUMN @extschema@.rules.weight IS
  'Contribution to the score when the rule fires, in [0, 1].';
COMMENT ON COLUMN @extschema@.rules.params IS
  'The rule''s parameters: every key the rule takes, each of its type (numbers, or intervals as text such as ''24 hours'').';

INSERT INTO @extschema@.rules (name, weight, params, description) VALUES
  ('amount_limit', 0.5, '{"max_amount": 10000}',
   'Amount above max_amount.'),
  ('payer_velocity_count', 0.4, '{"max_count": 10, "window": "1 hour"}',
   'More than max_count payments by the payer in the window.'),
  ('payer_velocity_amount', 0.4, '{"max_amount": 20000, "window": "24 hours"}',
   'Payer''s total in the window above max_amount.'),
  ('payer_fan_out', 0.3, '{"max_payees": 10, "window": "24 hours"}',
   'Payer paid more than max_payees distinct payees in the window.'),
  ('payee_fan_in', 0.4, '{"max_payers": 20, "window": "24 hours"}',
   'Payee received from more than max_payers distinct payers in the window (mule accounts).'),
  ('structuring', 0.6, '{"threshold": 10000, "band": 0.1, "min_count": 3, "window": "24 hours"}',
   'Amount just under threshold, and at least min_count such payments by the payer in the window.'),
  ('new_payee_high_amount', 0.2, '{"min_amount": 1000}',
   'First ever payment from payer to payee, above min_amount.'),
  ('new_account_high_amount', 0.3, '{"max_age": "7 days", "min_amount": 1000}',
   'Payer account younger than max_age pays above min_amount.'),
  ('round_trip', 0.3, '{"window": "24 hours", "min_amount": 1000}',
   'Payee paid the payer at least min_amount in the window, and this payment is at least min_amount.'),
  ('unregistered_method', 0.3, '{}',
   'Method not registered to the payer.'),
  ('amount_deviation', 0.3, '{"factor": 5, "min_history": 5}',
   'Payer has min_history earlier payments and the amount is above factor times their mean.'),
  ('dormant_reactivation', 0.3, '{"idle": "90 days", "min_amount": 1000}',
   'Payer''s previous payment is older than idle, and the amount is above min_amount.'),
  ('blocklist', 1.0, '{}',
   'Payer or payee on the blocklist: decline whatever the score.');

CREATE TABLE @extschema@.settings (
  singleton         boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  review_threshold  double precision NOT NULL DEFAULT 0.3
                    CHECK (review_threshold >= 0 AND review_threshold <= 1),
  decline_threshold double precision NOT NULL DEFAULT 0.8
                    CHECK (decline_threshold >= 0 AND decline_threshold <= 1),
  CONSTRAINT settings_thresholds_ordered CHECK (review_threshold <= decline_threshold)
);
COMMENT ON TABLE @extschema@.settings IS
  'Decision thresholds (one row): review when score >= review_threshold, decline when score >= decline_threshold.';
INSERT INTO @extschema@.settings DEFAULT VALUES;

CREATE TABLE @extschema@.blocklist (
  user_id    uuid PRIMARY KEY REFERENCES @extschema@.users,
  reason     text NOT NULL,
  added_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
  added_by   name NOT NULL DEFAULT CURRENT_USER,
  expires_at timestamptz
);
COMMENT ON TABLE @extschema@.blocklist IS
  'Users whose payments, paid or received, are declined while the entry has not expired at the payment''s time.';
COMMENT ON COLUMN @extschema@.blocklist.expires_at IS
  'The entry stops counting for payments created at or after this time; NULL means never.';

------------------------------------------------------------------------------
-- Triggers (C)
------------------------------------------------------------------------------

CREATE FUNCTION @extschema@.score_payment() RETURNS trigger
  AS 'MODULE_PATHNAME', 'p2pay_score_payment' LANGUAGE C;
COMMENT ON FUNCTION @extschema@.score_payment() IS
  'BEFORE INSERT trigger on payments: validates, locks the accounts, runs the rules, writes score, decision and reasons.';

CREATE FUNCTION @extschema@.guard_payment() RETURNS trigger
  AS 'MODULE_PATHNAME', 'p2pay_guard_payment' LANGUAGE C;
COMMENT ON FUNCTION @extschema@.guard_payment() IS
  'BEFORE UPDATE trigger on payments: refuses changes to the facts a payment was scored on.';

CREATE FUNCTION @extschema@.forget_payment() RETURNS trigger
  AS 'MODULE_PATHNAME', 'p2pay_forget_payment_trigger' LANGUAGE C;
COMMENT ON FUNCTION @extschema@.forget_payment() IS
  'AFTER DELETE trigger on payments: takes the deleted payment out of the per-account state.';

CREATE FUNCTION @extschema@.check_config() RETURNS trigger
  AS 'MODULE_PATHNAME', 'p2pay_check_config' LANGUAGE C;
COMMENT ON FUNCTION @extschema@.check_config() IS
  'BEFORE trigger on rules and settings: rejects unknown rules, bad weights and bad parameters, and deletion.';

CREATE FUNCTION @extschema@.config_changed() RETURNS trigger
  AS 'MODULE_PATHNAME', 'p2pay_config_changed' LANGUAGE C;
COMMENT ON FUNCTION @extschema@.config_changed() IS
  'AFTER statement trigger on rules and settings: tells every session to reload the rule configuration.';

-- Scores every inserted row: single and multi-row INSERT, INSERT ... SELECT and COPY.
CREATE TRIGGER payments_score BEFORE INSERT ON @extschema@.payments
  FOR EACH ROW EXECUTE FUNCTION @extschema@.score_payment();
CREATE TRIGGER payments_guard BEFORE UPDATE ON @extschema@.payments
  FOR EACH ROW EXECUTE FUNCTION @extschema@.guard_payment();
CREATE TRIGGER payments_forget AFTER DELETE ON @extschema@.payments
  FOR EACH ROW EXECUTE FUNCTION @extschema@.forget_payment();

CREATE TRIGGER rules_check BEFORE INSERT OR UPDATE OR DELETE ON @extschema@.rules
  FOR EACH ROW EXECUTE FUNCTION @extschema@.check_config();
CREATE TRIGGER rules_keep BEFORE TRUNCATE ON @extschema@.rules
  FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.check_config();
CREATE TRIGGER settings_keep BEFORE DELETE ON @extschema@.settings
  FOR EACH ROW EXECUTE FUNCTION @extschema@.check_config();
CREATE TRIGGER settings_keep_all BEFORE TRUNCATE ON @extschema@.settings
  FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.check_config();
CREATE TRIGGER rules_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.rules
  FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.config_changed();
CREATE TRIGGER settings_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.settings
  FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.config_changed();

-- Truncating payments empties the state derived from them, so that no
-- aggregate counts a payment that is gone.
CREATE FUNCTION @extschema@.truncate_state() RETURNS trigger
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  TRUNCATE @extschema@.account_stats, @extschema@.pair_stats, @extschema@.payer_hourly;
  RETURN NULL;
END $$;
COMMENT ON FUNCTION @extschema@.truncate_state() IS
  'AFTER TRUNCATE trigger on payments: empties the per-account state derived from them.';
CREATE TRIGGER payments_truncate AFTER TRUNCATE ON @extschema@.payments
  FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.truncate_state();

-- pg_restore re-inserts the rows of rules and settings after CREATE EXTENSION
-- has seeded them: such an insert updates the seeded row instead.  These
-- triggers fire in every replication role, so a restore run with
-- session_replication_role = replica keeps the configuration too.
CREATE FUNCTION @extschema@.merge_rule() RETURNS trigger
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM @extschema@.rules r WHERE r.name = NEW.name) THEN
    UPDATE @extschema@.rules r
       SET enabled = NEW.enabled, weight = NEW.weight, params = NEW.params,
           description = NEW.description
     WHERE r.name = NEW.name;
    RETURN NULL;
  END IF;
  RETURN NEW;
END $$;
COMMENT ON FUNCTION @extschema@.merge_rule() IS
  'BEFORE INSERT trigger on rules: inserting an existing rule updates it (this is how pg_restore brings rule changes back).';

CREATE FUNCTION @extschema@.merge_settings() RETURNS trigger
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NEW.singleton AND EXISTS (SELECT 1 FROM @extschema@.settings) THEN
    UPDATE @extschema@.settings s
       SET review_threshold = NEW.review_threshold,
           decline_threshold = NEW.decline_threshold;
    RETURN NULL;
  END IF;
  RETURN NEW;
END $$;
COMMENT ON FUNCTION @extschema@.merge_settings() IS
  'BEFORE INSERT trigger on settings: inserting the row again updates the existing one (pg_restore).';

CREATE FUNCTION @extschema@.merge_currency() RETURNS trigger
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM @extschema@.currencies c WHERE c.code = NEW.code) THEN
    UPDATE @extschema@.currencies c
       SET name = NEW.name, rate_to_base = NEW.rate_to_base
     WHERE c.code = NEW.code;
    RETURN NULL;
  END IF;
  RETURN NEW;
END $$;
COMMENT ON FUNCTION @extschema@.merge_currency() IS
  'BEFORE INSERT trigger on currencies: inserting a seeded currency again updates it (pg_restore).';

CREATE FUNCTION @extschema@.merge_payment_method() RETURNS trigger
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM @extschema@.payment_methods m WHERE m.id = NEW.id) THEN
    UPDATE @extschema@.payment_methods m SET name = NEW.name WHERE m.id = NEW.id;
    RETURN NULL;
  END IF;
  RETURN NEW;
END $$;
COMMENT ON FUNCTION @extschema@.merge_payment_method() IS
  'BEFORE INSERT trigger on payment_methods: inserting a seeded method again updates it (pg_restore).';

CREATE TRIGGER rules_merge BEFORE INSERT ON @extschema@.rules
  FOR EACH ROW EXECUTE FUNCTION @extschema@.merge_rule();
CREATE TRIGGER settings_merge BEFORE INSERT ON @extschema@.settings
  FOR EACH ROW EXECUTE FUNCTION @extschema@.merge_settings();
CREATE TRIGGER currencies_merge BEFORE INSERT ON @extschema@.currencies
  FOR EACH ROW EXECUTE FUNCTION @extschema@.merge_currency();
CREATE TRIGGER payment_methods_merge BEFORE INSERT ON @extschema@.payment_methods
  FOR EACH ROW EXECUTE FUNCTION @extschema@.merge_payment_method();
ALTER TABLE @extschema@.rules ENABLE ALWAYS TRIGGER rules_merge;
ALTER TABLE @extschema@.rules ENABLE ALWAYS TRIGGER rules_check;
ALTER TABLE @extschema@.rules ENABLE ALWAYS TRIGGER rules_keep;
ALTER TABLE @extschema@.settings ENABLE ALWAYS TRIGGER settings_keep;
ALTER TABLE @extschema@.settings ENABLE ALWAYS TRIGGER settings_keep_all;
ALTER TABLE @extschema@.rules ENABLE ALWAYS TRIGGER rules_changed;
ALTER TABLE @extschema@.settings ENABLE ALWAYS TRIGGER settings_merge;
ALTER TABLE @extschema@.settings ENABLE ALWAYS TRIGGER settings_changed;
ALTER TABLE @extschema@.currencies ENABLE ALWAYS TRIGGER currencies_merge;
ALTER TABLE @extschema@.payment_methods ENABLE ALWAYS TRIGGER payment_methods_merge;

------------------------------------------------------------------------------
-- pg_dump keeps every table's rows (tables created by an extension are
-- otherwise left out of a dump).  Restore with session_replication_role =
-- replica so that payments keep the decisions they were given and the
-- per-account state is restored as dumped rather than counted twice.
------------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('@extschema@.currencies', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.payment_methods', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.users', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.user_payment_methods', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.payments', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.payments_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.account_stats', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.pair_stats', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.payer_hourly', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.rules', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.settings', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.blocklist', '');

-- No privileges are granted to PUBLIC: the owner grants its application role
-- INSERT on payments (and SELECT where needed).  The scoring trigger reads and
-- writes the rule tables and the per-account state as the owner of payments,
-- as foreign-key checks do, so the application role needs no rights on them.
