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
  amount_base       numeric,
  ruleset_version   bigint,
  shadow_reasons    text[],
  shadow_risk_score double precision,
  shadow_decision   @extschema@.decision
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
COMMENT ON COLUMN @extschema@.payments.ruleset_version IS
  'Written by the trigger: the rule-set version (p2pay.ruleset) the payment was scored under.';
COMMENT ON COLUMN @extschema@.payments.shadow_reasons IS
  'Written by the trigger: the shadow rules that fired.';
COMMENT ON COLUMN @extschema@.payments.shadow_risk_score IS
  'Written by the trigger: the score the payment would have had with the shadow rules active.';
COMMENT ON COLUMN @extschema@.payments.shadow_decision IS
  'Written by the trigger: the decision the payment would have had with the shadow rules active.';
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

CREATE TABLE @extschema@.account_daily (
  user_id    uuid NOT NULL,
  day        date NOT NULL,
  out_count  bigint NOT NULL DEFAULT 0,
  out_payees bigint NOT NULL DEFAULT 0,
  in_payers  bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (user_id, day)
);
COMMENT ON TABLE @extschema@.account_daily IS
  'Each account''s activity per UTC day (payments made, new payees, new payers): its normal level, against which velocity, fan-out and fan-in are compared.';

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

-- A rule's mode: active rules decide, shadow rules are evaluated and
-- recorded on the payment but decide nothing, off rules are not evaluated.
CREATE TYPE @extschema@.rule_mode AS ENUM ('active', 'shadow', 'off');
COMMENT ON TYPE @extschema@.rule_mode IS
  'active: decides; shadow: evaluated and recorded, decides nothing; off: not evaluated.';

CREATE TABLE @extschema@.rules (
  name       text PRIMARY KEY,
  mode       @extschema@.rule_mode NOT NULL DEFAULT 'active',
  enabled    boolean NOT NULL DEFAULT true,
  weight     double precision NOT NULL,
  params     jsonb NOT NULL DEFAULT '{}',
  description text
);
COMMENT ON TABLE @extschema@.rules IS
  'The rule catalogue: one row per rule; a change takes effect for the next insert in every session.';
COMMENT ON COLUMN @extschema@.rules.mode IS
  'active, shadow or off.';
COMMENT ON COLUMN @extschema@.rules.enabled IS
  'mode = ''active''; kept in step with mode: setting it true makes the rule active, false makes it off.';
COMMENT ON COLUMN @extschema@.rules.weight IS
  'Contribution to the score when the rule fires, in [0, 1].';
COMMENT ON COLUMN @extschema@.rules.params IS
  'The rule''s parameters: every key the rule takes, each of its type (numbers, or intervals as text such as ''24 hours'').';

INSERT INTO @extschema@.rules (name, weight, params, description) VALUES
  ('amount_limit', 0.5, '{"max_amount": 10000}',
   'Amount above max_amount.'),
  ('payer_velocity_count', 0.4, '{"max_count": 10, "window": "1 hour", "baseline_factor": 3, "baseline_days": 7}',
   'More than max_count payments by the payer in the window, and (once the payer has baseline_days of history) more than baseline_factor times its normal for such a window.'),
  ('payer_velocity_amount', 0.4, '{"max_amount": 20000, "window": "24 hours"}',
   'Payer''s total in the window above max_amount.'),
  ('payer_fan_out', 0.3, '{"max_payees": 10, "window": "24 hours", "baseline_factor": 3, "baseline_days": 7}',
   'Payer paid more than max_payees distinct payees in the window, and (once it has baseline_days of history) more than baseline_factor times its normal.'),
  ('payee_fan_in', 0.4, '{"max_payers": 20, "window": "24 hours", "baseline_factor": 3, "baseline_days": 7}',
   'Payee received from more than max_payers distinct payers in the window (mule accounts), and (once it has baseline_days of history) more than baseline_factor times its normal.'),
  ('structuring', 0.6, '{"threshold": 10000, "band": 0.1, "min_count": 3, "window": "24 hours"}',
   'Amount just under threshold, and at least min_count such payments by the payer in the window.'),
  ('new_payee_high_amount', 0.2, '{"min_amount": 1000}',
   'First ever payment from payer to payee, above min_amount.'),
  ('new_account_high_amount', 0.3, '{"max_age": "7 days", "min_amount": 1000}',
   'Payer account younger than max_age pays above min_amount.'),
  ('round_trip', 0.3, '{"window": "24 hours", "min_amount": 1000}',
   'Payee paid the payer at least min_amount in the window, and this payment is at least min_amount.'),
  ('unregistered_method', 0.25, '{}',
   'Method not registered to the payer.'),
  ('amount_deviation', 0.25, '{"factor": 5, "min_history": 5}',
   'Payer has min_history earlier payments and the amount is above factor times their mean.'),
  ('dormant_reactivation', 0.3, '{"idle": "90 days", "min_amount": 1000}',
   'Payer''s previous payment is older than idle, and the amount is above min_amount.'),
  ('blocklist', 1.0, '{}',
   'Payer or payee on the blocklist: decline whatever the score.'),
  ('pass_through', 0.6, '{"window": "24 hours", "min_payers": 5, "share": 0.5, "min_amount": 1000}',
   'Money in from many, out in a lump: the payer received from at least min_payers distinct payers in the window, and this payment (at least min_amount) moves at least share of what they paid in.'),
  ('cycle', 0.5, '{"window": "24 hours", "min_amount": 1000, "max_length": 4}',
   'The payment closes a loop of 3 (or 4, with max_length 4) accounts, every leg at least min_amount within the window: A pays B, B paid C, C paid A.');

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
  added_by   name NOT NULL DEFAULT SESSION_USER,
  expires_at timestamptz
);
COMMENT ON TABLE @extschema@.blocklist IS
  'Users whose payments, paid or received, are declined while the entry has not expired at the payment''s time.';
COMMENT ON COLUMN @extschema@.blocklist.expires_at IS
  'The entry stops counting for payments created at or after this time; NULL means never.';

CREATE TABLE @extschema@.allowlist (
  user_id    uuid PRIMARY KEY REFERENCES @extschema@.users,
  reason     text NOT NULL,
  added_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
  added_by   name NOT NULL DEFAULT SESSION_USER,
  expires_at timestamptz
);
COMMENT ON TABLE @extschema@.allowlist IS
  'Trusted users: a payment they pay or receive is approved (unless blocklisted) while the entry has not expired at the payment''s time; the rules are still evaluated and listed.';

CREATE TABLE @extschema@.snoozes (
  rule     text NOT NULL REFERENCES @extschema@.rules (name),
  user_id  uuid NOT NULL REFERENCES @extschema@.users,
  until    timestamptz NOT NULL,
  reason   text,
  added_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
  added_by name NOT NULL DEFAULT SESSION_USER,
  PRIMARY KEY (rule, user_id)
);
COMMENT ON TABLE @extschema@.snoozes IS
  'Per-rule snoozes: the rule does not fire for payments the user pays or receives, created before until.';

------------------------------------------------------------------------------
-- Rule-set versions and their history
------------------------------------------------------------------------------

CREATE TABLE @extschema@.ruleset (
  singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  version    bigint NOT NULL,
  changed_at timestamptz NOT NULL,
  changed_by name NOT NULL,
  xact       xid8
);
COMMENT ON TABLE @extschema@.ruleset IS
  'The current rule-set version: one more for every transaction that changes rules, thresholds or lists.';
INSERT INTO @extschema@.ruleset (version, changed_at, changed_by)
  VALUES (1, pg_catalog.now(), CURRENT_USER);

CREATE TABLE @extschema@.config_history (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  version    bigint NOT NULL,
  changed_at timestamptz NOT NULL,
  changed_by name NOT NULL,
  table_name text NOT NULL,
  operation  text NOT NULL,
  old_row    jsonb,
  new_row    jsonb
);
COMMENT ON TABLE @extschema@.config_history IS
  'Every change to rules, settings, blocklist, allowlist and snoozes: the version it made, who, when, and the row before and after.';
CREATE INDEX config_history_version_idx ON @extschema@.config_history (version);

-- Version 1 is the catalogue as installed.
INSERT INTO @extschema@.config_history (version, changed_at, changed_by, table_name, operation, new_row)
  SELECT 1, pg_catalog.now(), CURRENT_USER, 'rules', 'INSERT', pg_catalog.to_jsonb(r)
    FROM @extschema@.rules r;
INSERT INTO @extschema@.config_history (version, changed_at, changed_by, table_name, operation, new_row)
  SELECT 1, pg_catalog.now(), CURRENT_USER, 'settings', 'INSERT', pg_catalog.to_jsonb(s)
    FROM @extschema@.settings s;

-- Record a change of configuration under the transaction's version, taking
-- a new version for the first change of a transaction.
-- SECURITY DEFINER: an admin who may change a rule needs no right to write
-- the history itself, and so can't forge it.
CREATE FUNCTION @extschema@.record_config_change() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  v bigint;
BEGIN
  IF TG_RELID OPERATOR(pg_catalog.<>) ALL (ARRAY['@extschema@.rules'::pg_catalog.regclass, '@extschema@.settings'::pg_catalog.regclass, '@extschema@.blocklist'::pg_catalog.regclass, '@extschema@.allowlist'::pg_catalog.regclass, '@extschema@.snoozes'::pg_catalog.regclass]::pg_catalog.oid[]) THEN
    RAISE EXCEPTION 'trigger function p2pay.record_config_change() can only run on p2pay.rules, p2pay.settings, p2pay.blocklist, p2pay.allowlist, p2pay.snoozes'
      USING ERRCODE = 'wrong_object_type',
            HINT = 'p2pay''s trigger functions keep p2pay''s own tables; drop this trigger.';
  END IF;
  UPDATE @extschema@.ruleset r
     SET version = r.version + 1, changed_at = now(), changed_by = SESSION_USER,
         xact = pg_current_xact_id()
   WHERE r.xact IS DISTINCT FROM pg_current_xact_id()
  RETURNING r.version INTO v;
  IF v IS NULL THEN
    SELECT r.version INTO v FROM @extschema@.ruleset r;
  END IF;
  INSERT INTO @extschema@.config_history (version, changed_at, changed_by, table_name, operation, old_row, new_row)
  VALUES (v, now(), SESSION_USER, TG_TABLE_NAME, TG_OP,
          CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN to_jsonb(OLD) END,
          CASE WHEN TG_OP IN ('UPDATE', 'INSERT') THEN to_jsonb(NEW) END);
  RETURN NULL;
END $$;
COMMENT ON FUNCTION @extschema@.record_config_change() IS
  'AFTER trigger on rules, settings and the lists: records the change in config_history under a new rule-set version.';

CREATE TRIGGER rules_history AFTER INSERT OR UPDATE OR DELETE ON @extschema@.rules
  FOR EACH ROW EXECUTE FUNCTION @extschema@.record_config_change();
CREATE TRIGGER settings_history AFTER INSERT OR UPDATE OR DELETE ON @extschema@.settings
  FOR EACH ROW EXECUTE FUNCTION @extschema@.record_config_change();
CREATE TRIGGER blocklist_history AFTER INSERT OR UPDATE OR DELETE ON @extschema@.blocklist
  FOR EACH ROW EXECUTE FUNCTION @extschema@.record_config_change();
CREATE TRIGGER allowlist_history AFTER INSERT OR UPDATE OR DELETE ON @extschema@.allowlist
  FOR EACH ROW EXECUTE FUNCTION @extschema@.record_config_change();
CREATE TRIGGER snoozes_history AFTER INSERT OR UPDATE OR DELETE ON @extschema@.snoozes
  FOR EACH ROW EXECUTE FUNCTION @extschema@.record_config_change();
CREATE TRIGGER blocklist_history_truncate AFTER TRUNCATE ON @extschema@.blocklist
  FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.record_config_change();
CREATE TRIGGER allowlist_history_truncate AFTER TRUNCATE ON @extschema@.allowlist
  FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.record_config_change();
CREATE TRIGGER snoozes_history_truncate AFTER TRUNCATE ON @extschema@.snoozes
  FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.record_config_change();

-- The rule rows as they were at a version, in the shape backtest() takes.
CREATE FUNCTION @extschema@.rules_at(version bigint) RETURNS jsonb
  LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
  SELECT coalesce(jsonb_agg(jsonb_build_object('name', h.new_row->>'name', 'mode', h.new_row->'mode',
                                               'weight', h.new_row->'weight', 'params', h.new_row->'params')
                            ORDER BY h.new_row->>'name'), '[]'::jsonb)
    FROM (SELECT DISTINCT ON (coalesce(c.new_row, c.old_row)->>'name') c.new_row
            FROM @extschema@.config_history c
           WHERE c.table_name = 'rules' AND c.version <= $1
           ORDER BY coalesce(c.new_row, c.old_row)->>'name', c.version DESC, c.id DESC) h
   WHERE h.new_row IS NOT NULL
$$;
COMMENT ON FUNCTION @extschema@.rules_at(bigint) IS
  'The rule rows as they were at a rule-set version, as JSON for backtest(): reproduces the rules that scored a payment.';

------------------------------------------------------------------------------
-- The review queue
------------------------------------------------------------------------------

CREATE TABLE @extschema@.decision_log (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  transaction_id uuid NOT NULL,
  old_decision   @extschema@.decision NOT NULL,
  new_decision   @extschema@.decision NOT NULL,
  note           text,
  resolved_by    name NOT NULL,
  resolved_at    timestamptz NOT NULL
);
COMMENT ON TABLE @extschema@.decision_log IS
  'Every analyst decision made with resolve(): which payment, from what to what, why, who and when.';
CREATE INDEX decision_log_transaction_idx ON @extschema@.decision_log (transaction_id);

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
CREATE TRIGGER ruleset_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.ruleset
  FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.config_changed();

-- Truncating payments empties the state derived from them, so that no
-- aggregate counts a payment that is gone.
CREATE FUNCTION @extschema@.truncate_state() RETURNS trigger
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF TG_RELID OPERATOR(pg_catalog.<>) ALL (ARRAY['@extschema@.payments'::pg_catalog.regclass]::pg_catalog.oid[]) THEN
    RAISE EXCEPTION 'trigger function p2pay.truncate_state() can only run on p2pay.payments'
      USING ERRCODE = 'wrong_object_type',
            HINT = 'p2pay''s trigger functions keep p2pay''s own tables; drop this trigger.';
  END IF;
  TRUNCATE @extschema@.account_stats, @extschema@.pair_stats, @extschema@.payer_hourly,
           @extschema@.account_daily;
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
  IF TG_RELID OPERATOR(pg_catalog.<>) ALL (ARRAY['@extschema@.rules'::pg_catalog.regclass]::pg_catalog.oid[]) THEN
    RAISE EXCEPTION 'trigger function p2pay.merge_rule() can only run on p2pay.rules'
      USING ERRCODE = 'wrong_object_type',
            HINT = 'p2pay''s trigger functions keep p2pay''s own tables; drop this trigger.';
  END IF;
  IF EXISTS (SELECT 1 FROM @extschema@.rules r WHERE r.name = NEW.name) THEN
    UPDATE @extschema@.rules r
       SET mode = NEW.mode, enabled = NEW.enabled, weight = NEW.weight, params = NEW.params,
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
  IF TG_RELID OPERATOR(pg_catalog.<>) ALL (ARRAY['@extschema@.settings'::pg_catalog.regclass]::pg_catalog.oid[]) THEN
    RAISE EXCEPTION 'trigger function p2pay.merge_settings() can only run on p2pay.settings'
      USING ERRCODE = 'wrong_object_type',
            HINT = 'p2pay''s trigger functions keep p2pay''s own tables; drop this trigger.';
  END IF;
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

CREATE FUNCTION @extschema@.merge_ruleset() RETURNS trigger
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF TG_RELID OPERATOR(pg_catalog.<>) ALL (ARRAY['@extschema@.ruleset'::pg_catalog.regclass]::pg_catalog.oid[]) THEN
    RAISE EXCEPTION 'trigger function p2pay.merge_ruleset() can only run on p2pay.ruleset'
      USING ERRCODE = 'wrong_object_type',
            HINT = 'p2pay''s trigger functions keep p2pay''s own tables; drop this trigger.';
  END IF;
  IF NEW.singleton AND EXISTS (SELECT 1 FROM @extschema@.ruleset) THEN
    UPDATE @extschema@.ruleset r
       SET version = NEW.version, changed_at = NEW.changed_at, changed_by = NEW.changed_by,
           xact = NULL;
    RETURN NULL;
  END IF;
  RETURN NEW;
END $$;
COMMENT ON FUNCTION @extschema@.merge_ruleset() IS
  'BEFORE INSERT trigger on ruleset: inserting the row again updates the existing one (pg_restore).';

CREATE FUNCTION @extschema@.merge_currency() RETURNS trigger
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF TG_RELID OPERATOR(pg_catalog.<>) ALL (ARRAY['@extschema@.currencies'::pg_catalog.regclass]::pg_catalog.oid[]) THEN
    RAISE EXCEPTION 'trigger function p2pay.merge_currency() can only run on p2pay.currencies'
      USING ERRCODE = 'wrong_object_type',
            HINT = 'p2pay''s trigger functions keep p2pay''s own tables; drop this trigger.';
  END IF;
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
  IF TG_RELID OPERATOR(pg_catalog.<>) ALL (ARRAY['@extschema@.payment_methods'::pg_catalog.regclass]::pg_catalog.oid[]) THEN
    RAISE EXCEPTION 'trigger function p2pay.merge_payment_method() can only run on p2pay.payment_methods'
      USING ERRCODE = 'wrong_object_type',
            HINT = 'p2pay''s trigger functions keep p2pay''s own tables; drop this trigger.';
  END IF;
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
CREATE TRIGGER ruleset_merge BEFORE INSERT ON @extschema@.ruleset
  FOR EACH ROW EXECUTE FUNCTION @extschema@.merge_ruleset();
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
ALTER TABLE @extschema@.ruleset ENABLE ALWAYS TRIGGER ruleset_merge;
ALTER TABLE @extschema@.ruleset ENABLE ALWAYS TRIGGER ruleset_changed;
ALTER TABLE @extschema@.payment_methods ENABLE ALWAYS TRIGGER payment_methods_merge;

------------------------------------------------------------------------------
-- Working the rules: the review queue, lists, dry runs
------------------------------------------------------------------------------

CREATE INDEX payments_review_idx ON @extschema@.payments (created_at, id) WHERE decision = 'review';

-- backtest() reads a range of created_at; payments arrive roughly in time
-- order, so a BRIN index finds the range for almost nothing per insert.
CREATE INDEX payments_created_brin ON @extschema@.payments USING brin (created_at);

CREATE VIEW @extschema@.review_queue AS
  SELECT p.transaction_id, p.created_at, p.payer_id, p.payee_id, p.amount, p.currency,
         p.amount_base, p.risk_score, p.reasons, p.ruleset_version,
         pg_catalog.now() - p.created_at AS waiting
    FROM @extschema@.payments p
   WHERE p.decision = 'review'
   ORDER BY p.created_at, p.id;
COMMENT ON VIEW @extschema@.review_queue IS
  'Payments held for review and not yet resolved, oldest first.';

CREATE FUNCTION @extschema@.resolve(transaction_id uuid, decision @extschema@.decision, note text DEFAULT NULL)
  RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  current_decision @extschema@.decision;
BEGIN
  IF resolve.transaction_id IS NULL THEN
    RAISE EXCEPTION 'transaction_id must not be null' USING ERRCODE = '22004';
  END IF;
  IF resolve.decision IS NULL OR resolve.decision NOT IN ('approve', 'decline') THEN
    RAISE EXCEPTION 'a review is resolved with approve or decline, not %', coalesce(resolve.decision::text, 'null')
      USING ERRCODE = '22023';
  END IF;
  SELECT p.decision INTO current_decision
    FROM @extschema@.payments p WHERE p.transaction_id = resolve.transaction_id
     FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no payment has transaction_id %', resolve.transaction_id
      USING ERRCODE = 'P0002';
  END IF;
  IF current_decision IS DISTINCT FROM 'review' THEN
    RAISE EXCEPTION 'payment % is not under review', resolve.transaction_id
      USING ERRCODE = '55000',
            DETAIL = format('Its decision is %s.', coalesce(current_decision::text, 'null')),
            HINT = 'SELECT * FROM p2pay.decision_log WHERE transaction_id = ... shows earlier resolutions.';
  END IF;
  UPDATE @extschema@.payments p SET decision = resolve.decision
   WHERE p.transaction_id = resolve.transaction_id;
  INSERT INTO @extschema@.decision_log (transaction_id, old_decision, new_decision, note, resolved_by, resolved_at)
  VALUES (resolve.transaction_id, current_decision, resolve.decision, resolve.note, SESSION_USER, now());
END $$;
COMMENT ON FUNCTION @extschema@.resolve(uuid, @extschema@.decision, text) IS
  'Resolve a payment under review: approve or decline it, with a note; logged in decision_log with who and when.';
REVOKE ALL ON FUNCTION @extschema@.resolve(uuid, @extschema@.decision, text) FROM PUBLIC;

CREATE FUNCTION @extschema@.snooze(rule text, user_id uuid, until timestamptz, reason text DEFAULT NULL)
  RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM @extschema@.rules r WHERE r.name = snooze.rule) THEN
    RAISE EXCEPTION 'unknown rule "%"', snooze.rule
      USING ERRCODE = '22023', HINT = 'SELECT name FROM p2pay.rules lists them.';
  END IF;
  IF snooze.until IS NULL OR snooze.until <= now() THEN
    RAISE EXCEPTION 'a snooze must end in the future'
      USING ERRCODE = '22023', DETAIL = format('until was %s.', coalesce(snooze.until::text, 'null'));
  END IF;
  IF NOT EXISTS (SELECT 1 FROM @extschema@.users u WHERE u.id = snooze.user_id) THEN
    RAISE EXCEPTION 'unknown user %', snooze.user_id USING ERRCODE = '23503';
  END IF;
  INSERT INTO @extschema@.snoozes AS s (rule, user_id, until, reason)
  VALUES (snooze.rule, snooze.user_id, snooze.until, snooze.reason)
  ON CONFLICT ON CONSTRAINT snoozes_pkey DO UPDATE
    SET until = excluded.until, reason = excluded.reason,
        added_at = now(), added_by = SESSION_USER;
END $$;
COMMENT ON FUNCTION @extschema@.snooze(text, uuid, timestamptz, text) IS
  'Stop a rule from firing for a user''s payments (paid or received) until a time in the future.';
REVOKE ALL ON FUNCTION @extschema@.snooze(text, uuid, timestamptz, text) FROM PUBLIC;

CREATE FUNCTION @extschema@.score(payer_id uuid, payee_id uuid, amount numeric, currency char(3),
                                  payment_method_id uuid, at timestamptz DEFAULT pg_catalog.now(),
                                  OUT risk_score double precision, OUT decision @extschema@.decision,
                                  OUT reasons text[], OUT shadow_risk_score double precision,
                                  OUT shadow_decision @extschema@.decision, OUT shadow_reasons text[],
                                  OUT ruleset_version bigint)
  AS 'MODULE_PATHNAME', 'p2pay_score' LANGUAGE C VOLATILE PARALLEL UNSAFE;
-- A dry run reads the lists and every account's state: an analysts' tool.
REVOKE ALL ON FUNCTION @extschema@.score(uuid, uuid, numeric, char, uuid, timestamptz) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.score(uuid, uuid, numeric, char, uuid, timestamptz) IS
  'Dry run: the verdict an insert of this payment would get now, through the trigger''s own code; changes nothing.';

------------------------------------------------------------------------------
-- Backtests and per-rule statistics
------------------------------------------------------------------------------

CREATE TABLE @extschema@.fraud_labels (
  transaction_id uuid PRIMARY KEY,
  is_fraud       boolean NOT NULL,
  labelled_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
  source         text
);
COMMENT ON TABLE @extschema@.fraud_labels IS
  'What became known about payments afterwards (chargebacks, confirmed fraud): backtest() reports precision and recall against it.';

CREATE FUNCTION @extschema@.backtest("from" timestamptz, "to" timestamptz, rules jsonb DEFAULT NULL,
  OUT rule text, OUT payments bigint, OUT fired bigint, OUT would_review bigint,
  OUT would_decline bigint, OUT fired_at_time bigint, OUT reviewed_at_time bigint,
  OUT declined_at_time bigint, OUT labelled_fraud bigint, OUT fired_on_fraud bigint,
  OUT "precision" double precision, OUT recall double precision)
  RETURNS SETOF record
  AS 'MODULE_PATHNAME', 'p2pay_backtest' LANGUAGE C VOLATILE PARALLEL UNSAFE;
REVOKE ALL ON FUNCTION @extschema@.backtest(timestamptz, timestamptz, jsonb) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.backtest(timestamptz, timestamptz, jsonb) IS
  'Replay the payments created in [from, to) in created_at order through the current rules, or those rules changed by the rule rows given as JSON; per rule and overall, what would fire, be reviewed or declined, next to what was decided at the time, with precision and recall against fraud_labels.  Writes nothing.';

CREATE FUNCTION @extschema@.rule_stats_read(
  OUT rule text, OUT evaluations bigint, OUT fires bigint,
  OUT mean_us double precision, OUT max_us double precision, OUT since timestamptz)
  RETURNS SETOF record
  AS 'MODULE_PATHNAME', 'p2pay_rule_stats' LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
REVOKE ALL ON FUNCTION @extschema@.rule_stats_read() FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.rule_stats_read() IS
  'Per-rule evaluations, fires and evaluation times from shared memory; needs shared_preload_libraries = ''p2pay''.';

CREATE VIEW @extschema@.rule_stats AS SELECT * FROM @extschema@.rule_stats_read();
COMMENT ON VIEW @extschema@.rule_stats IS
  'Per rule, across all sessions since the last rule_stats_reset(): evaluations, fires, mean and maximum evaluation time in microseconds; the row "facts" is the reading of the facts the rules share.';

CREATE FUNCTION @extschema@.rule_stats_reset() RETURNS void
  AS 'MODULE_PATHNAME', 'p2pay_rule_stats_reset' LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.rule_stats_reset() IS
  'Set the per-rule statistics back to zero.';
REVOKE ALL ON FUNCTION @extschema@.rule_stats_reset() FROM PUBLIC;

------------------------------------------------------------------------------
-- Bulk loading history: payments inserted with the trigger off (for example
-- pre-scored, under session_replication_role = replica) are not in the
-- per-account state; rebuild_state() counts it again from the payments.
------------------------------------------------------------------------------

CREATE FUNCTION @extschema@.rebuild_state() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- Rows go in in key order, so that each primary key grows at its right
  -- edge; a large history wants a large work_mem for the grouping.
  -- No payment may come or go while the state is counted.
  LOCK TABLE @extschema@.payments IN SHARE ROW EXCLUSIVE MODE;
  IF EXISTS (SELECT 1 FROM @extschema@.payments WHERE amount_base IS NULL) THEN
    RAISE EXCEPTION 'p2pay: payments without amount_base can''t be counted'
      USING ERRCODE = 'null_value_not_allowed',
            HINT = 'Set amount_base (amount * the currency''s rate_to_base) on payments loaded without the trigger.';
  END IF;
  TRUNCATE @extschema@.account_stats, @extschema@.pair_stats,
           @extschema@.payer_hourly, @extschema@.account_daily;
  INSERT INTO @extschema@.account_stats (user_id, out_count, out_sum, in_count, in_sum)
  SELECT user_id, sum(out_count), sum(out_sum), sum(in_count), sum(in_sum)
    FROM (SELECT payer_id AS user_id, count(*) AS out_count, sum(amount_base) AS out_sum,
                 0 AS in_count, 0 AS in_sum
            FROM @extschema@.payments GROUP BY payer_id
          UNION ALL
          SELECT payee_id, 0, 0, count(*), sum(amount_base)
            FROM @extschema@.payments GROUP BY payee_id) t
   GROUP BY user_id ORDER BY user_id;
  INSERT INTO @extschema@.pair_stats (payer_id, payee_id, first_at, last_at, n, total)
  SELECT payer_id, payee_id, min(created_at), max(created_at), count(*), sum(amount_base)
    FROM @extschema@.payments GROUP BY payer_id, payee_id ORDER BY payer_id, payee_id;
  INSERT INTO @extschema@.payer_hourly (payer_id, hour, n, total)
  SELECT payer_id, date_trunc('hour', created_at, 'UTC'), count(*), sum(amount_base)
    FROM @extschema@.payments GROUP BY 1, 2 ORDER BY 1, 2;
  INSERT INTO @extschema@.account_daily (user_id, day, out_count, out_payees, in_payers)
  SELECT user_id, day, sum(out_count), sum(out_payees), sum(in_payers)
    FROM (SELECT payer_id AS user_id, (created_at AT TIME ZONE 'UTC')::date AS day,
                 count(*) AS out_count, count(DISTINCT payee_id) AS out_payees, 0 AS in_payers
            FROM @extschema@.payments GROUP BY 1, 2
          UNION ALL
          SELECT payee_id, (created_at AT TIME ZONE 'UTC')::date, 0, 0, count(DISTINCT payer_id)
            FROM @extschema@.payments GROUP BY 1, 2) t
   GROUP BY user_id, day ORDER BY user_id, day;
END
$$;
COMMENT ON FUNCTION @extschema@.rebuild_state() IS
  'Count the per-account state again from the stored payments, after loading payments with the trigger off.';
REVOKE ALL ON FUNCTION @extschema@.rebuild_state() FROM PUBLIC;

-- The hourly buckets and daily rows accumulate with history, though a rule
-- reads only an hour inside payer_velocity_amount's window and a day among
-- the last 30 (plus each account's first day, which says how much history
-- it has).  prune_state() deletes what no payment created after now() - keep
-- reads, keeping every account's first day, so that the state stays the
-- size of the accounts' recent activity.  Run it daily (pg_cron, say).
CREATE FUNCTION @extschema@.prune_state(keep interval DEFAULT '31 days',
                                        OUT hours bigint, OUT days bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  velocity_window interval;
  horizon timestamptz;
BEGIN
  SELECT coalesce((params->>'window')::interval, interval '0')
    INTO velocity_window
    FROM @extschema@.rules WHERE name = 'payer_velocity_amount';
  IF keep IS NULL OR keep < interval '31 days' THEN
    RAISE EXCEPTION 'p2pay: prune_state keeps at least 31 days'
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('keep was %s; an account''s normal is counted over the 30 days before a payment''s.', keep);
  END IF;
  IF keep > interval '3650 days' THEN
    RAISE EXCEPTION 'p2pay: prune_state keeps at most 3650 days'
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('keep was %s.', keep),
            HINT = 'Keep what no rule reads: 31 days, or more for payments inserted late.';
  END IF;
  horizon := now() - keep;
  -- a payment at the horizon reads the buckets after the start of the hour
  -- its window begins in
  DELETE FROM @extschema@.payer_hourly
   WHERE hour < date_trunc('hour', horizon - velocity_window, 'UTC');
  GET DIAGNOSTICS hours = ROW_COUNT;
  DELETE FROM @extschema@.account_daily d
   WHERE d.day < (horizon AT TIME ZONE 'UTC')::date - 30
     AND EXISTS (SELECT 1 FROM @extschema@.account_daily f
                  WHERE f.user_id = d.user_id AND f.day < d.day);
  GET DIAGNOSTICS days = ROW_COUNT;
END
$$;
COMMENT ON FUNCTION @extschema@.prune_state(interval) IS
  'Delete the hourly buckets and daily rows that no payment created in the last keep (at least 31 days) reads, keeping each account''s first day.';
REVOKE ALL ON FUNCTION @extschema@.prune_state(interval) FROM PUBLIC;

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
SELECT pg_catalog.pg_extension_config_dump('@extschema@.account_daily', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.rules', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.settings', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.ruleset', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.blocklist', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.allowlist', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.snoozes', '');
-- version 1 is what CREATE EXTENSION writes: a restore makes it again
SELECT pg_catalog.pg_extension_config_dump('@extschema@.config_history', 'WHERE version > 1');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.config_history_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.decision_log', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.decision_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.fraud_labels', '');

-- No privileges are granted to PUBLIC: the owner grants its application role
-- INSERT on payments (and SELECT where needed).  The scoring trigger reads and
-- writes the rule tables and the per-account state as the owner of payments,
-- as foreign-key checks do, so the application role needs no rights on them.

-- Trigger functions are p2pay's own: nobody needs EXECUTE on them to fire
-- them (PostgreSQL checks it only when a trigger is created), and each
-- refuses to run on any table but the ones it was made for.  Revoked from
-- PUBLIC, so that no role can attach them to a table of its own.
REVOKE ALL ON FUNCTION @extschema@.score_payment(), @extschema@.guard_payment(),
                       @extschema@.forget_payment(), @extschema@.check_config(),
                       @extschema@.config_changed(), @extschema@.record_config_change(),
                       @extschema@.truncate_state(), @extschema@.merge_rule(),
                       @extschema@.merge_settings(), @extschema@.merge_ruleset(),
                       @extschema@.merge_currency(), @extschema@.merge_payment_method()
  FROM PUBLIC;
