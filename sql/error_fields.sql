-- Every error p2pay raises about a column of a payment names it in the
-- error's fields, as PostgreSQL's own not-null and foreign-key errors do:
-- schema p2pay, table payments, the column, and for an unknown reference
-- the foreign key of that column.  An application maps the error to its
-- field from them, without reading the message.
CREATE EXTENSION p2pay;

-- The fields of the error that running sql raises (sqlstate 'accepted' if
-- none); a field the error leaves out is ''.
CREATE TYPE fields AS (sqlstate text, schema_name text, table_name text, column_name text,
                       constraint_name text, message text);
CREATE FUNCTION fields(sql text) RETURNS fields LANGUAGE plpgsql AS $$
DECLARE
  f fields;
BEGIN
  EXECUTE sql;
  f.sqlstate := 'accepted';
  RETURN f;
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS f.sqlstate = RETURNED_SQLSTATE, f.schema_name = SCHEMA_NAME,
                          f.table_name = TABLE_NAME, f.column_name = COLUMN_NAME,
                          f.constraint_name = CONSTRAINT_NAME, f.message = MESSAGE_TEXT;
  RETURN f;
END $$;

INSERT INTO p2pay.users (id) VALUES
  ('00000000-0000-4000-8000-00000000000a'), ('00000000-0000-4000-8000-00000000000b');

-- A payment from a to b with one column overridden: as an INSERT, and as
-- the p2pay.score() call that checks the same payment (created_at is its
-- argument at).
CREATE FUNCTION value_of(col text, val text, name text, dflt text) RETURNS text
  LANGUAGE sql AS $$ SELECT CASE col WHEN name THEN val ELSE dflt END $$;
CREATE FUNCTION insert_sql(col text, val text) RETURNS text LANGUAGE sql AS $$
  SELECT format(
    'INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at) '
    'SELECT payer_id, payee_id, amount, currency, payment_method_id, created_at FROM (SELECT '
    '%s AS payer_id, %s AS payee_id, %s AS amount, %s AS currency, %s AS payment_method_id, %s AS created_at) v',
    value_of(col, val, 'payer_id', '''00000000-0000-4000-8000-00000000000a''::uuid'),
    value_of(col, val, 'payee_id', '''00000000-0000-4000-8000-00000000000b''::uuid'),
    value_of(col, val, 'amount', '10::numeric'),
    value_of(col, val, 'currency', '''USD''::bpchar'),
    value_of(col, val, 'payment_method_id', '''00000000-0000-4000-8000-000000000001''::uuid'),
    value_of(col, val, 'created_at', 'now()'))
$$;
CREATE FUNCTION score_sql(col text, val text) RETURNS text LANGUAGE sql AS $$
  SELECT format('SELECT p2pay.score(%s, %s, %s, %s, %s, %s)',
    value_of(col, val, 'payer_id', '''00000000-0000-4000-8000-00000000000a''::uuid'),
    value_of(col, val, 'payee_id', '''00000000-0000-4000-8000-00000000000b''::uuid'),
    value_of(col, val, 'amount', '10::numeric'),
    value_of(col, val, 'currency', '''USD''::bpchar'),
    value_of(col, val, 'payment_method_id', '''00000000-0000-4000-8000-000000000001''::uuid'),
    value_of(col, val, 'created_at', 'now()'))
$$;

CREATE TABLE cases (n int, col text, val text);
INSERT INTO cases VALUES
  (1, 'payer_id', 'NULL::uuid'),
  (2, 'payee_id', 'NULL::uuid'),
  (3, 'amount', 'NULL::numeric'),
  (4, 'currency', 'NULL::bpchar'),
  (5, 'payment_method_id', 'NULL::uuid'),
  (6, 'created_at', 'NULL::timestamptz'),
  (7, 'amount', '0::numeric'),
  (8, 'amount', '''NaN''::numeric'),
  (9, 'amount', '1000000000000000.0001::numeric'),
  (10, 'amount', '1.00001::numeric'),
  (11, 'created_at', 'now() + interval ''10 minutes'''),
  (12, 'created_at', '''infinity''::timestamptz'),
  (13, 'payee_id', '''00000000-0000-4000-8000-00000000000a''::uuid'),
  (14, 'currency', '''XYZ''::bpchar'),
  (15, 'payer_id', '''00000000-0000-4000-8000-0000000000ff''::uuid'),
  (16, 'payee_id', '''00000000-0000-4000-8000-0000000000ff''::uuid'),
  (17, 'payment_method_id', '''00000000-0000-4000-8000-0000000000ff''::uuid');

-- Each bad payment, inserted: schema, table and the column at fault; an
-- unknown reference also names the foreign key of its column.  payer_id =
-- payee_id names payee_id, the field an application shows as wrong.
CREATE TABLE inserted AS
  SELECT c.n, c.col, c.val, f.* FROM cases c, LATERAL fields(insert_sql(c.col, c.val)) f;
SELECT col, val, sqlstate, schema_name, table_name, column_name, constraint_name, message
  FROM inserted ORDER BY n;

-- The same payments checked with p2pay.score(): the same fields, even for
-- a null argument, whose message names the argument.
SELECT c.col, c.val, s.sqlstate, s.column_name,
       (s.sqlstate, s.schema_name, s.table_name, s.column_name, s.constraint_name) =
       (i.sqlstate, i.schema_name, i.table_name, i.column_name, i.constraint_name) AS as_inserted,
       s.message
  FROM cases c JOIN inserted i USING (n), LATERAL fields(score_sql(c.col, c.val)) s
 ORDER BY n;

-- What PostgreSQL's own constraints report for the payments that they
-- refuse too (the scoring trigger disabled): p2pay's errors fill every
-- field PostgreSQL's do, with the same values.
BEGIN;
ALTER TABLE p2pay.payments DISABLE TRIGGER payments_score;
SELECT c.col, c.val, pg.sqlstate, pg.schema_name, pg.table_name, pg.column_name,
       pg.constraint_name,
       pg.sqlstate = i.sqlstate AND pg.schema_name = i.schema_name
         AND pg.table_name = i.table_name AND pg.column_name IN ('', i.column_name)
         AND pg.constraint_name IN ('', i.constraint_name) AS p2pay_fills_the_same
  FROM cases c JOIN inserted i USING (n), LATERAL fields(insert_sql(c.col, c.val)) pg
 WHERE pg.sqlstate <> 'accepted'
 ORDER BY n;
ROLLBACK;

-- The foreign key is named as it is now: renamed, the new name; dropped
-- (p2pay still refuses the unknown user), none.
BEGIN;
ALTER TABLE p2pay.payments RENAME CONSTRAINT payments_payer_id_fkey TO payer_is_a_user;
SELECT column_name, constraint_name FROM fields(insert_sql('payer_id', '''00000000-0000-4000-8000-0000000000ff''::uuid'));
ALTER TABLE p2pay.payments DROP CONSTRAINT payer_is_a_user;
SELECT sqlstate, column_name, constraint_name FROM fields(insert_sql('payer_id', '''00000000-0000-4000-8000-0000000000ff''::uuid'));
ROLLBACK;

-- A new payment that brings amount_base or its own id.
SELECT sqlstate, schema_name, table_name, column_name, message FROM fields(
  'INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, amount_base)
   VALUES (''00000000-0000-4000-8000-00000000000a'', ''00000000-0000-4000-8000-00000000000b'', 10,
           ''USD'', ''00000000-0000-4000-8000-000000000001'', 10)');
SELECT sqlstate, schema_name, table_name, column_name, message FROM fields(
  'INSERT INTO p2pay.payments (id, payer_id, payee_id, amount, currency, payment_method_id)
   OVERRIDING SYSTEM VALUE
   VALUES (1000000, ''00000000-0000-4000-8000-00000000000a'', ''00000000-0000-4000-8000-00000000000b'',
           10, ''USD'', ''00000000-0000-4000-8000-000000000001'')');

-- Updates of a scored payment: each fact column it can't change, and, for
-- a role that doesn't own payments, each verdict column.
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, transaction_id)
VALUES ('00000000-0000-4000-8000-00000000000a', '00000000-0000-4000-8000-00000000000b', 10, 'USD',
        '00000000-0000-4000-8000-000000000001', 'aaaaaaaa-0000-4000-8000-000000000001');
SELECT u.col, f.sqlstate, f.schema_name, f.table_name, f.column_name, f.message
  FROM (VALUES ('transaction_id', 'gen_random_uuid()'),
               ('payer_id', '''00000000-0000-4000-8000-00000000000b'''),
               ('payee_id', '''00000000-0000-4000-8000-00000000000a'''),
               ('amount', '11'),
               ('currency', '''EUR'''),
               ('payment_method_id', '''00000000-0000-4000-8000-000000000002'''),
               ('created_at', 'created_at - interval ''1 day'''),
               ('amount_base', '0')) AS u(col, val),
       LATERAL fields(format('UPDATE p2pay.payments SET %I = %s', u.col, u.val)) f;

CREATE ROLE regress_p2pay_clerk NOLOGIN;
GRANT USAGE ON SCHEMA p2pay TO regress_p2pay_clerk;
GRANT SELECT, UPDATE ON p2pay.payments TO regress_p2pay_clerk;
SET ROLE regress_p2pay_clerk;
SELECT u.col, f.sqlstate, f.schema_name, f.table_name, f.column_name, f.message
  FROM (VALUES ('risk_score', '0.5'),
               ('decision', '''review'''),
               ('reasons', '''{by_hand}'''),
               ('ruleset_version', '0'),
               ('shadow_reasons', '''{by_hand}'''),
               ('shadow_risk_score', '0.5'),
               ('shadow_decision', '''review''')) AS u(col, val),
       LATERAL fields(format('UPDATE p2pay.payments SET %I = %s', u.col, u.val)) f;
RESET ROLE;

DROP OWNED BY regress_p2pay_clerk;
DROP ROLE regress_p2pay_clerk;
DROP TABLE inserted, cases;
DROP FUNCTION fields(text), value_of(text, text, text, text), insert_sql(text, text),
  score_sql(text, text);
DROP TYPE fields;
DROP EXTENSION p2pay;
