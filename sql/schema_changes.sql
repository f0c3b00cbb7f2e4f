-- The trigger reads p2pay's tables through their heaps and indexes
-- directly: a column of another type, a NOT NULL dropped, an index replaced
-- is refused at the next payment with an error naming what to restore (a
-- column retyped to float8 once crashed the server).  Each change is made
-- in a transaction rolled back afterwards; a payment then works again.
CREATE EXTENSION p2pay;

CREATE FUNCTION pay() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  d p2pay.decision;
  msg text;
  detail text;
BEGIN
  INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
  VALUES ('00000000-0000-4000-8000-00000000000a', '00000000-0000-4000-8000-00000000000b',
          25, 'USD', '00000000-0000-4000-8000-000000000001')
  RETURNING decision INTO d;
  RETURN 'scored: ' || d;
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
  RETURN SQLSTATE || ': ' || msg || coalesce(' (' || nullif(detail, '') || ')', '');
END $$;

INSERT INTO p2pay.users (id) VALUES
  ('00000000-0000-4000-8000-00000000000a'), ('00000000-0000-4000-8000-00000000000b');
SELECT pay();

-- A column the trigger reads, of another type.
BEGIN;
ALTER TABLE p2pay.payments ALTER COLUMN shadow_risk_score TYPE numeric;
SELECT pay();
ROLLBACK;
BEGIN;
ALTER TABLE p2pay.pair_stats ALTER COLUMN total TYPE float8;
SELECT pay();
ROLLBACK;
BEGIN;
ALTER TABLE p2pay.account_stats ALTER COLUMN out_sum TYPE float8;
SELECT pay();
ROLLBACK;
BEGIN;
ALTER TABLE p2pay.account_daily ALTER COLUMN out_hour_sums TYPE float8[];
SELECT pay();
ROLLBACK;
BEGIN;
ALTER TABLE p2pay.currencies ALTER COLUMN rate_to_base TYPE float8;
SELECT pay();
ROLLBACK;
BEGIN;
ALTER TABLE p2pay.snoozes ALTER COLUMN until TYPE timestamp;
SELECT pay();
ROLLBACK;

-- A NOT NULL the trigger relies on, dropped.
BEGIN;
ALTER TABLE p2pay.account_daily ALTER COLUMN in_payers DROP NOT NULL;
SELECT pay();
ROLLBACK;

-- A scanned index dropped, replaced by another kind or order, or on other
-- columns.
BEGIN;
DROP INDEX p2pay.payments_payer_time_idx;
SELECT pay();
ROLLBACK;
BEGIN;
DROP INDEX p2pay.payments_payer_time_idx;
CREATE INDEX payments_payer_time_idx ON p2pay.payments (payer_id, created_at DESC);
SELECT pay();
ROLLBACK;
BEGIN;
DROP INDEX p2pay.pair_stats_payee_last_idx;
CREATE INDEX pair_stats_payee_last_idx ON p2pay.pair_stats USING hash (payee_id);
SELECT pay();
ROLLBACK;
BEGIN;
DROP INDEX p2pay.pair_stats_payer_last_idx;
CREATE INDEX pair_stats_payer_last_idx ON p2pay.pair_stats (payer_id, first_at);
SELECT pay();
ROLLBACK;
BEGIN;
ALTER TABLE p2pay.blocklist DROP CONSTRAINT blocklist_pkey;
CREATE INDEX blocklist_pkey ON p2pay.blocklist (user_id) WHERE expires_at IS NULL;
SELECT pay();
ROLLBACK;

-- A table the trigger writes directly, turned into something else.
BEGIN;
ALTER TABLE p2pay.account_daily RENAME TO account_daily_old;
CREATE TABLE p2pay.account_daily (user_id uuid, day date, out_count bigint, out_payees bigint,
  in_payers bigint, out_hours smallint[], out_hour_sums numeric[])
  PARTITION BY RANGE (day);
SELECT pay();
ROLLBACK;

-- The configuration is read by type too: by the payment, and by the rules'
-- own trigger.
BEGIN;
ALTER TABLE p2pay.rules ALTER COLUMN params TYPE json;
SELECT pay();
UPDATE p2pay.rules SET weight = 0.5 WHERE name = 'amount_limit';
ROLLBACK;

-- Everything restored: scored as before.
SELECT pay();

DROP FUNCTION pay();
DROP EXTENSION p2pay;
