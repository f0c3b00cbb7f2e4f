-- The trust boundary: p2pay's C code and functions run as the owner of its
-- tables, so nothing a caller creates may be resolved by them.  An attacker
-- with the README's application grants plants types, domains, operators,
-- functions and aggregates where a careless lookup would find them (its
-- temporary schema, and a schema of its own first on its search_path);
-- every entry point then runs, as the application, an analyst, an admin and
-- the owner.  The attacker's code announces itself with a NOTICE and tries
-- to make its role a superuser if it ever runs as anyone else: the expected
-- output has no such NOTICE, and the role stays what it was.
CREATE EXTENSION p2pay;

CREATE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE sql;
  RETURN 'accepted';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
GRANT EXECUTE ON FUNCTION try(text) TO PUBLIC;

INSERT INTO p2pay.users (id, created_at)
  SELECT ('00000000-0000-4000-8000-0000000000' || lpad(n::text, 2, '0'))::uuid, '2024-01-01'
    FROM generate_series(1, 12) n;
INSERT INTO p2pay.user_payment_methods (user_id, payment_method_id)
  SELECT id, '00000000-0000-4000-8000-000000000001' FROM p2pay.users;

-- The README's three roles; the attacker logs in as the application.
CREATE ROLE regress_p2pay_app NOLOGIN;
SELECT p2pay.grant_app('regress_p2pay_app');
CREATE ROLE regress_p2pay_analyst NOLOGIN;
SELECT p2pay.grant_analyst('regress_p2pay_analyst');
CREATE ROLE regress_p2pay_admin NOLOGIN IN ROLE regress_p2pay_analyst;
SELECT p2pay.grant_admin('regress_p2pay_admin');

-- The attacker: the application role, one analyst and one admin of its own
-- making are played by roles that log in as themselves (session_user is
-- who the attacker is), with a schema of their own.
CREATE ROLE regress_p2pay_mallory LOGIN IN ROLE regress_p2pay_app;
CREATE ROLE regress_p2pay_eve LOGIN IN ROLE regress_p2pay_admin;
GRANT CREATE ON DATABASE contrib_regression TO regress_p2pay_mallory, regress_p2pay_eve;

-- A payment history in which every SQL statement of the insert path runs:
-- payers into 01 (pass_through's sum), a loop 03 -> 01 -> 02 -> 03 closed by
-- the payments below (cycle's candidates and loops), a payment under review.
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
  SELECT ('00000000-0000-4000-8000-0000000000' || lpad(n::text, 2, '0'))::uuid,
         '00000000-0000-4000-8000-000000000001', 1500, 'USD',
         '00000000-0000-4000-8000-000000000001', now() - interval '2 hours'
    FROM generate_series(4, 9) n;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at) VALUES
  ('00000000-0000-4000-8000-000000000003', '00000000-0000-4000-8000-000000000001', 2000, 'USD',
   '00000000-0000-4000-8000-000000000001', now() - interval '1 hour'),
  ('00000000-0000-4000-8000-000000000002', '00000000-0000-4000-8000-000000000003', 2000, 'USD',
   '00000000-0000-4000-8000-000000000001', now() - interval '1 hour');

-- What the attacker plants, in a session of its own: hijack(), which
-- every planted object runs, announces itself and makes the attacker a
-- superuser whenever it runs as anyone but the attacker.
CREATE FUNCTION plant() RETURNS void LANGUAGE plpgsql AS $plant$
DECLARE
  evil text := 'evil_' || session_user;
BEGIN
  EXECUTE format('CREATE SCHEMA %I', evil);
  EXECUTE format('SET search_path = %I, p2pay, public', evil);
  EXECUTE format($f$
    CREATE FUNCTION %1$I.hijack(v anyelement) RETURNS boolean LANGUAGE plpgsql AS $$
    BEGIN
      IF current_user <> %2$L THEN
        RAISE NOTICE 'attacker code ran as %%', current_user;
        EXECUTE 'ALTER ROLE %2$I SUPERUSER';
      END IF;
      RETURN true;
    END $$$f$, evil, session_user);
  -- domains named like the built-in types, in the temporary schema, which
  -- is searched first for types unless search_path names it
  EXECUTE format('CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (%I.hijack(VALUE))', evil);
  EXECUTE format('CREATE DOMAIN pg_temp.float8 AS pg_catalog.float8 CHECK (%I.hijack(VALUE))', evil);
  EXECUTE format('CREATE DOMAIN pg_temp.uuid AS pg_catalog.uuid CHECK (%I.hijack(VALUE))', evil);
  EXECUTE format('CREATE DOMAIN pg_temp.numeric AS pg_catalog.numeric CHECK (%I.hijack(VALUE))', evil);
  EXECUTE format('CREATE DOMAIN pg_temp.int8 AS pg_catalog.int8 CHECK (%I.hijack(VALUE))', evil);
  EXECUTE format('CREATE DOMAIN pg_temp.jsonb AS pg_catalog.jsonb CHECK (%I.hijack(VALUE))', evil);
  EXECUTE format('CREATE DOMAIN pg_temp.date AS pg_catalog.date CHECK (%I.hijack(VALUE))', evil);
  EXECUTE format('CREATE DOMAIN pg_temp.interval AS pg_catalog.interval CHECK (%I.hijack(VALUE))', evil);
  EXECUTE format('CREATE DOMAIN pg_temp.timestamptz AS pg_catalog.timestamptz CHECK (%I.hijack(VALUE))', evil);
  -- operators, functions and aggregates in the attacker's schema, first
  -- on its search_path
  EXECUTE format($f$
    CREATE FUNCTION uuid_eq(a uuid, b uuid) RETURNS boolean LANGUAGE sql
      AS 'SELECT %1$I.hijack(a) AND a OPERATOR(pg_catalog.=) b';
    CREATE OPERATOR = (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = uuid_eq);
    CREATE FUNCTION uuid_ne(a uuid, b uuid) RETURNS boolean LANGUAGE sql
      AS 'SELECT %1$I.hijack(a) AND a OPERATOR(pg_catalog.<>) b';
    CREATE OPERATOR <> (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = uuid_ne);
    CREATE FUNCTION f8_ge(a float8, b float8) RETURNS boolean LANGUAGE sql
      AS 'SELECT %1$I.hijack(a) AND a OPERATOR(pg_catalog.>=) b';
    CREATE OPERATOR >= (LEFTARG = float8, RIGHTARG = float8, FUNCTION = f8_ge);
    CREATE FUNCTION ts_gt(a timestamptz, b timestamptz) RETURNS boolean LANGUAGE sql
      AS 'SELECT %1$I.hijack(a) AND a OPERATOR(pg_catalog.>) b';
    CREATE OPERATOR > (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = ts_gt);
    CREATE FUNCTION ts_lt(a timestamptz, b timestamptz) RETURNS boolean LANGUAGE sql
      AS 'SELECT %1$I.hijack(a) AND a OPERATOR(pg_catalog.<) b';
    CREATE OPERATOR < (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = ts_lt);
    CREATE FUNCTION text_eq(a text, b text) RETURNS boolean LANGUAGE sql
      AS 'SELECT %1$I.hijack(a) AND a OPERATOR(pg_catalog.=) b';
    CREATE OPERATOR = (LEFTARG = text, RIGHTARG = text, FUNCTION = text_eq);
    CREATE FUNCTION num_sum(s numeric, v numeric) RETURNS numeric LANGUAGE sql
      AS 'SELECT CASE WHEN %1$I.hijack(v) THEN coalesce(s, 0) OPERATOR(pg_catalog.+) v END';
    CREATE AGGREGATE sum(numeric) (SFUNC = num_sum, STYPE = numeric);
    CREATE FUNCTION ts_last(s timestamptz, v timestamptz) RETURNS timestamptz LANGUAGE sql
      AS 'SELECT CASE WHEN %1$I.hijack(v) THEN v END';
    CREATE AGGREGATE max(timestamptz) (SFUNC = ts_last, STYPE = timestamptz);
    CREATE AGGREGATE min(timestamptz) (SFUNC = ts_last, STYPE = timestamptz);
    CREATE FUNCTION float8(v numeric) RETURNS pg_catalog.float8 LANGUAGE sql
      AS 'SELECT CASE WHEN %1$I.hijack(v) THEN v::pg_catalog.float8 END';
    $f$, evil);
END $plant$;
GRANT EXECUTE ON FUNCTION plant() TO PUBLIC;

-- Whether any attacker became a superuser.
CREATE VIEW escalated AS
  SELECT rolname FROM pg_roles WHERE rolname LIKE 'regress_p2pay_%' AND rolsuper;
GRANT SELECT ON escalated TO PUBLIC;

SELECT current_user AS owner \gset

------------------------------------------------------------------------------
-- The application role inserts payments: the trigger's reads, its
-- money-flow statements (pass_through's sum, cycle's candidates and loops),
-- a multi-row insert and COPY.
------------------------------------------------------------------------------
\c - regress_p2pay_mallory
SELECT plant();
SHOW search_path;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id) VALUES
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000002', 7000, 'USD',
   '00000000-0000-4000-8000-000000000001')
RETURNING reasons;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id) VALUES
  ('00000000-0000-4000-8000-000000000010', '00000000-0000-4000-8000-000000000011', 5, 'USD',
   '00000000-0000-4000-8000-000000000001'),
  ('00000000-0000-4000-8000-000000000011', '00000000-0000-4000-8000-000000000010', 15000, 'EUR',
   '00000000-0000-4000-8000-000000000002')
RETURNING amount, decision, reasons;
COPY p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id) FROM stdin;
00000000-0000-4000-8000-000000000012	00000000-0000-4000-8000-000000000010	12	USD	00000000-0000-4000-8000-000000000001
\.
SELECT * FROM escalated;

-- The application can't choose a payment's id, which would make the next
-- ordinary insert fail on the primary key.
SELECT try($$INSERT INTO p2pay.payments (id, payer_id, payee_id, amount, currency, payment_method_id)
              OVERRIDING SYSTEM VALUE
              SELECT max(id) + 1, '00000000-0000-4000-8000-000000000010',
                     '00000000-0000-4000-8000-000000000011', 5, 'USD',
                     '00000000-0000-4000-8000-000000000001' FROM p2pay.payments$$);
COPY p2pay.payments (id, payer_id, payee_id, amount, currency, payment_method_id) FROM stdin;
1000000	00000000-0000-4000-8000-000000000010	00000000-0000-4000-8000-000000000011	7	USD	00000000-0000-4000-8000-000000000001
\.
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id) VALUES
  ('00000000-0000-4000-8000-000000000010', '00000000-0000-4000-8000-000000000011', 6, 'USD',
   '00000000-0000-4000-8000-000000000001')
RETURNING decision;

-- Nor attach p2pay's trigger functions to a table of its own (a temporary
-- payments with other column types crashed the server through them).
CREATE TEMP TABLE payments (payer_id int, payee_id int, amount int, currency int,
                            payment_method_id int, created_at int, amount_base int);
SELECT * FROM escalated;
SELECT try($$CREATE TRIGGER t_score BEFORE INSERT ON pg_temp.payments
              FOR EACH ROW EXECUTE FUNCTION p2pay.score_payment()$$);
SELECT try($$CREATE TRIGGER t_forget AFTER DELETE ON pg_temp.payments
              FOR EACH ROW EXECUTE FUNCTION p2pay.forget_payment()$$);
CREATE TEMP TABLE rules (name text, mode text, enabled bool, weight float8, params jsonb);
SELECT try($$CREATE TRIGGER t_history AFTER INSERT ON pg_temp.rules
              FOR EACH ROW EXECUTE FUNCTION p2pay.record_config_change()$$);
SELECT try($$CREATE TRIGGER t_merge BEFORE INSERT ON pg_temp.rules
              FOR EACH ROW EXECUTE FUNCTION p2pay.merge_row('name')$$);

------------------------------------------------------------------------------
-- An analyst and an admin: the dry run, the backtest, resolving a review,
-- snoozing a rule, changing a rule (its checks and history triggers).
------------------------------------------------------------------------------
\c - regress_p2pay_eve
SELECT plant();
SELECT decision, reasons
  FROM p2pay.score('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000002',
                   7000, 'USD', '00000000-0000-4000-8000-000000000001');
SELECT rule, payments, fired FROM p2pay.backtest(now() - interval '1 day', now() + interval '1 minute')
 WHERE rule = 'overall';
SELECT p2pay.resolve(transaction_id, 'approve', 'checked')
  FROM p2pay.payments WHERE decision = 'review' ORDER BY id LIMIT 1;
SELECT p2pay.snooze('round_trip', '00000000-0000-4000-8000-000000000011', now() + interval '1 day');
UPDATE p2pay.rules SET params = params || '{"max_amount": 12000}' WHERE name = 'amount_limit';
SELECT * FROM escalated;
\c - :"owner"

------------------------------------------------------------------------------
-- The owner, with a search_path that starts with a schema the attacker
-- owns: the owner-only maintenance functions, and an insert.
------------------------------------------------------------------------------
SET search_path = evil_regress_p2pay_mallory, public;
SELECT p2pay.rebuild_state();
SELECT hours >= 0 AS pruned FROM p2pay.prune_state();
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id) VALUES
  ('00000000-0000-4000-8000-000000000002', '00000000-0000-4000-8000-000000000001', 2500, 'USD',
   '00000000-0000-4000-8000-000000000001')
RETURNING reasons;
RESET search_path;
SELECT * FROM escalated;

-- Even a superuser's trigger on another table is refused by p2pay's
-- trigger functions, which check the table's OID, not its name.
CREATE TABLE public.payments (LIKE p2pay.payments INCLUDING DEFAULTS);
CREATE TRIGGER t BEFORE INSERT ON public.payments
  FOR EACH ROW EXECUTE FUNCTION p2pay.score_payment();
SELECT try($$INSERT INTO public.payments (payer_id, payee_id, amount, currency, payment_method_id)
              VALUES ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000002',
                      5, 'USD', '00000000-0000-4000-8000-000000000001')$$);
DROP TABLE public.payments;
CREATE TEMP TABLE payments (payer_id int, payee_id int, amount int, currency int,
                            payment_method_id int, created_at int, amount_base int);
CREATE TRIGGER t BEFORE INSERT ON payments FOR EACH ROW EXECUTE FUNCTION p2pay.score_payment();
CREATE TRIGGER u AFTER DELETE ON payments FOR EACH ROW EXECUTE FUNCTION p2pay.forget_payment();
SELECT try($$INSERT INTO pg_temp.payments VALUES (1, 2, 3, 4, 5, 6, NULL)$$);
ALTER TABLE pg_temp.payments DISABLE TRIGGER t;
INSERT INTO pg_temp.payments VALUES (1, 2, 3, 4, 5, 6, 7);
SELECT try($$DELETE FROM pg_temp.payments$$);
CREATE TEMP TABLE blocklist (user_id uuid, reason text);
CREATE TRIGGER t AFTER INSERT ON blocklist
  FOR EACH ROW EXECUTE FUNCTION p2pay.record_config_change();
SELECT try($$INSERT INTO pg_temp.blocklist VALUES ('00000000-0000-4000-8000-000000000001', 'forged')$$);
SELECT count(*) AS forged_history FROM p2pay.config_history WHERE new_row->>'reason' = 'forged';
CREATE TEMP TABLE settings (review_threshold float8);
CREATE TRIGGER t BEFORE DELETE ON settings FOR EACH ROW EXECUTE FUNCTION p2pay.check_config();
INSERT INTO settings VALUES (0.5);
SELECT try($$DELETE FROM pg_temp.settings$$);

------------------------------------------------------------------------------
-- The stream reads the old row of an update or delete: with logical
-- decoding on, a payment is not changed while the table lacks REPLICA
-- IDENTITY FULL.
------------------------------------------------------------------------------
SELECT current_setting('wal_level') AS wal_level;
ALTER TABLE p2pay.payments REPLICA IDENTITY DEFAULT;
SELECT try($$SELECT p2pay.resolve(transaction_id, 'decline', 'x') FROM p2pay.payments
              WHERE decision = 'review' ORDER BY id LIMIT 1$$);
SELECT try($$DELETE FROM p2pay.payments WHERE amount = 12$$);
ALTER TABLE p2pay.payments REPLICA IDENTITY FULL;
SELECT try($$DELETE FROM p2pay.payments WHERE amount = 12$$);

-- Messages quote input at most 64 bytes long: an amount 8 characters long
-- prints 131,073 digits.
CREATE FUNCTION error_detail(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  detail text;
BEGIN
  EXECUTE sql;
  RETURN 'accepted';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
  RETURN SQLSTATE || ': ' || SQLERRM || ' / ' || detail;
END $$;
SELECT error_detail($$INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
                      VALUES ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000002',
                              1e131071, 'USD', '00000000-0000-4000-8000-000000000001')$$);
SELECT error_detail(format($$INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
                      VALUES ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000002',
                              -%s, 'USD', '00000000-0000-4000-8000-000000000001')$$, repeat('9', 5000)));
SELECT length(error_detail(format($$UPDATE p2pay.rules SET params = '{"window": "%s"}'
                                    WHERE name = 'round_trip'$$, repeat('1', 100000)))) < 400 AS bounded;
SELECT error_detail(format($$UPDATE p2pay.rules SET params = '{"window": "1 hour", "min_amount": 1, "%s": 1}'
                             WHERE name = 'round_trip'$$, repeat('x', 1000)));

DROP TABLE pg_temp.blocklist, pg_temp.settings, pg_temp.payments;
DROP OWNED BY regress_p2pay_mallory, regress_p2pay_eve;
DROP ROLE regress_p2pay_mallory, regress_p2pay_eve;
DROP OWNED BY regress_p2pay_app, regress_p2pay_analyst, regress_p2pay_admin;
DROP ROLE regress_p2pay_app, regress_p2pay_analyst, regress_p2pay_admin;
DROP VIEW escalated;
DROP FUNCTION plant(), try(text), error_detail(text);
DROP EXTENSION p2pay;
