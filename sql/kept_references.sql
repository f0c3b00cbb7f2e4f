-- The small reference tables (currencies, payment methods, blocklist,
-- allowlist, snoozes, the rule-set version) are kept in each session's
-- memory under READ COMMITTED and read again after any change to them:
-- in the changing transaction at its next command, and after a rollback.
-- A table whose announcing triggers are missing, disabled or not enabled
-- ALWAYS, or that holds more than 10,000 rows, is read by key for every
-- payment, as every table is under REPEATABLE READ.  reads(t) counts the
-- scans of table t and of its indexes that this transaction made, the
-- reads a payment makes of it.  specs/reference_changes.spec has the
-- changes made by other sessions.
CREATE EXTENSION p2pay;
SET TimeZone = 'UTC';

CREATE FUNCTION u(n int) RETURNS uuid LANGUAGE sql IMMUTABLE
  AS $$ SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid $$;
INSERT INTO p2pay.users (id, created_at) SELECT u(n), '2020-01-01' FROM generate_series(1, 6) n;
INSERT INTO p2pay.user_payment_methods
  SELECT u(n), '00000000-0000-4000-8000-000000000001' FROM generate_series(1, 6) n;

CREATE FUNCTION reads(t text) RETURNS bigint LANGUAGE sql AS $$
  SELECT sum(pg_stat_get_xact_numscans(c.oid))::bigint
    FROM pg_class c
   WHERE c.oid = ('p2pay.' || t)::regclass
      OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = ('p2pay.' || t)::regclass)
$$;
-- The foreign keys of payments read currencies and payment_methods for
-- every payment, so the reads counted are of the other four.
CREATE FUNCTION all_reads() RETURNS bigint LANGUAGE sql AS $$
  SELECT sum(reads(t))::bigint FROM unnest(ARRAY['blocklist', 'allowlist', 'snoozes', 'ruleset']) t
$$;
-- Only the rules under test decide.
UPDATE p2pay.rules SET mode = 'off'
 WHERE name NOT IN ('blocklist', 'amount_limit', 'unregistered_method');
-- A payment from payer to payee, its verdict, and how many times it read
-- those tables (all) and the blocklist alone.
CREATE FUNCTION pay(payer int, payee int, amount numeric, currency text DEFAULT 'USD',
                    method uuid DEFAULT '00000000-0000-4000-8000-000000000001')
RETURNS TABLE (decision p2pay.decision, reasons text[], amount_base numeric,
               version bigint, "all" bigint, blocklist bigint) LANGUAGE plpgsql AS $$
DECLARE
  a0 bigint := all_reads();
  b0 bigint := reads('blocklist');
BEGIN
  INSERT INTO p2pay.payments AS p (payer_id, payee_id, amount, currency, payment_method_id)
  VALUES (u(payer), u(payee), amount, currency, method)
  RETURNING p.decision, p.reasons, p.amount_base, p.ruleset_version
    INTO decision, reasons, amount_base, version;
  "all" := all_reads() - a0;
  blocklist := reads('blocklist') - b0;
  RETURN NEXT;
END $$;

-- 1. The first payment reads the tables, the next ones nothing.
SELECT decision, "all" > 0 AS "read" FROM pay(1, 2, 10);
SELECT decision, "all" AS "read" FROM pay(1, 2, 10);

-- 2. A change is seen by the next payment, which reads the tables again;
-- the one after reads nothing.  The blocklist entry also moves the
-- rule-set version the payments record.
SELECT version AS v0 FROM pay(1, 2, 10) \gset
INSERT INTO p2pay.blocklist (user_id, reason) VALUES (u(1), 'test');
SELECT decision, reasons, version - :v0 AS "versions on", "all" > 0 AS "read" FROM pay(1, 2, 10);
SELECT decision, reasons, version - :v0 AS "versions on", "all" AS "read" FROM pay(1, 2, 10);
-- an entry that has expired doesn't count
UPDATE p2pay.blocklist SET expires_at = now() - interval '1 second' WHERE user_id = u(1);
SELECT decision, reasons FROM pay(1, 2, 10);
UPDATE p2pay.blocklist SET expires_at = NULL WHERE user_id = u(1);
SELECT decision, reasons FROM pay(2, 1, 10);

-- 3. A new rate is used by the next payment; so is a new currency, and
-- an unknown one is refused as before.
UPDATE p2pay.currencies SET rate_to_base = 2 WHERE code = 'EUR';
SELECT amount_base FROM pay(2, 3, 10, 'EUR');
SELECT amount_base, "all" AS "read" FROM pay(2, 3, 10, 'EUR');
INSERT INTO p2pay.currencies (code, name, rate_to_base) VALUES ('GBP', 'Pound sterling', 1.25);
SELECT amount_base FROM pay(2, 3, 10, 'GBP');
-- an insert of a code that exists updates its row (merge_row()), and is
-- seen as any update
INSERT INTO p2pay.currencies (code, name, rate_to_base) VALUES ('GBP', 'Pound sterling', 1.5);
SELECT amount_base FROM pay(2, 3, 10, 'GBP');
SELECT amount_base FROM pay(2, 3, 10, 'JPY');
-- and a payment method: unknown, then added
SELECT decision FROM pay(2, 3, 10, 'USD', '00000000-0000-4000-8000-0000000000aa');
INSERT INTO p2pay.payment_methods (id, name) VALUES ('00000000-0000-4000-8000-0000000000aa', 'Wallet');
SELECT decision, reasons FROM pay(2, 3, 10, 'USD', '00000000-0000-4000-8000-0000000000aa');

-- 4. A change rolled back, whole or to a savepoint, is forgotten.
BEGIN;
DELETE FROM p2pay.blocklist WHERE user_id = u(1);
SELECT decision, reasons FROM pay(1, 2, 10);
ROLLBACK;
SELECT decision, reasons FROM pay(1, 2, 10);
BEGIN;
SAVEPOINT s;
DELETE FROM p2pay.blocklist WHERE user_id = u(1);
SELECT decision, reasons FROM pay(1, 2, 10);
ROLLBACK TO SAVEPOINT s;
SELECT decision, reasons FROM pay(1, 2, 10);
COMMIT;
-- and so is a TRUNCATE
BEGIN;
TRUNCATE p2pay.blocklist;
SELECT decision, reasons FROM pay(1, 2, 10);
ROLLBACK;
SELECT decision, reasons FROM pay(1, 2, 10);

-- 5. The allowlist and the snoozes: 20,000 is reviewed (amount_limit),
-- unless the payer is allowlisted; unregistered_method fires unless
-- snoozed for the payer, until the snooze ends.
SELECT decision, reasons FROM pay(3, 4, 20000);
INSERT INTO p2pay.allowlist (user_id, reason) VALUES (u(3), 'test');
SELECT decision, reasons FROM pay(3, 4, 20000);
SELECT decision, reasons FROM pay(4, 5, 10, 'USD', '00000000-0000-4000-8000-000000000002');
SELECT p2pay.snooze('unregistered_method', u(4), now() + interval '1 hour') IS NOT NULL AS snoozed;
SELECT decision, reasons, "all" > 0 AS "read" FROM pay(4, 5, 10, 'USD', '00000000-0000-4000-8000-000000000002');
SELECT decision, reasons, "all" AS "read" FROM pay(5, 4, 10, 'USD', '00000000-0000-4000-8000-000000000002');
UPDATE p2pay.snoozes SET until = now() - interval '1 second' WHERE user_id = u(4);
SELECT decision, reasons FROM pay(4, 5, 10, 'USD', '00000000-0000-4000-8000-000000000002');

-- 6. Under REPEATABLE READ every payment reads the tables.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT decision, "all" > 0 AS "read" FROM pay(5, 6, 10);
SELECT decision, "all" > 0 AS "read" FROM pay(5, 6, 10);
COMMIT;

-- 7. Without its announcing trigger enabled ALWAYS, the blocklist is read
-- by key for every payment, and the other tables stay kept; a change that
-- nothing announces (with session_replication_role = replica, the
-- history's trigger doesn't fire either) is seen.
ALTER TABLE p2pay.blocklist DISABLE TRIGGER blocklist_announce;
SELECT decision, blocklist > 0 AS "blocklist read" FROM pay(5, 6, 10);
SELECT decision, blocklist > 0 AS "blocklist read", "all" - blocklist AS "others read"
  FROM pay(5, 6, 10);
SET session_replication_role = replica;
INSERT INTO p2pay.blocklist (user_id, reason) VALUES (u(5), 'test');
RESET session_replication_role;
SELECT decision, reasons, blocklist > 0 AS "blocklist read", "all" - blocklist AS "others read"
  FROM pay(5, 6, 10);
ALTER TABLE p2pay.blocklist ENABLE TRIGGER blocklist_announce;
SELECT decision, blocklist > 0 AS "blocklist read" FROM pay(6, 1, 10);
SELECT decision, blocklist > 0 AS "blocklist read" FROM pay(6, 1, 10);
ALTER TABLE p2pay.blocklist ENABLE ALWAYS TRIGGER blocklist_announce;
SELECT decision, blocklist > 0 AS "blocklist read" FROM pay(6, 1, 10);
SELECT decision, blocklist AS "blocklist read" FROM pay(6, 1, 10);
-- nor without the one for TRUNCATE
ALTER TABLE p2pay.blocklist DISABLE TRIGGER blocklist_announce_truncate;
SELECT decision FROM pay(6, 1, 10);
SELECT decision, blocklist > 0 AS "blocklist read" FROM pay(6, 1, 10);
ALTER TABLE p2pay.blocklist ENABLE ALWAYS TRIGGER blocklist_announce_truncate;

-- 8. A blocklist of more than 10,000 entries is read by key; back at
-- 10,000 (with 1 and 5), it is kept again.
INSERT INTO p2pay.users (id, created_at) SELECT u(n), '2020-01-01' FROM generate_series(100, 10100) n;
INSERT INTO p2pay.blocklist (user_id, reason) SELECT u(n), 'test' FROM generate_series(100, 10100) n;
SELECT decision FROM pay(6, 1, 10);
SELECT decision, blocklist > 0 AS "blocklist read", "all" - blocklist AS "others read" FROM pay(6, 1, 10);
SELECT decision, reasons FROM pay(6, 10100, 10);
DELETE FROM p2pay.blocklist WHERE user_id IN (u(10098), u(10099), u(10100));
SELECT count(*) FROM p2pay.blocklist;
SELECT decision FROM pay(6, 1, 10);
SELECT decision, blocklist AS "blocklist read" FROM pay(6, 1, 10);
SELECT decision, reasons FROM pay(6, 10097, 10);
SELECT decision, reasons FROM pay(6, 10098, 10);

-- 9. config_changed() fires only AFTER, and only on its tables.
CREATE TABLE p2pay_other (x int);
CREATE TRIGGER t AFTER INSERT ON p2pay_other FOR EACH ROW EXECUTE FUNCTION p2pay.config_changed();
INSERT INTO p2pay_other VALUES (1);
CREATE TRIGGER t_before BEFORE INSERT ON p2pay.blocklist
  FOR EACH ROW EXECUTE FUNCTION p2pay.config_changed();
INSERT INTO p2pay.blocklist (user_id, reason) VALUES (u(6), 'test');
DROP TRIGGER t_before ON p2pay.blocklist;
DROP TABLE p2pay_other;

DROP FUNCTION pay(int, int, numeric, text, uuid), all_reads(), reads(text), u(int);
DROP EXTENSION p2pay;
