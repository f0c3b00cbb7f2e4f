-- p2pay 1.2: ALTER EXTENSION p2pay UPDATE TO '1.2' from 1.1.
\echo Use "ALTER EXTENSION p2pay UPDATE TO '1.2'" to load this file. \quit

------------------------------------------------------------------------------
-- The HTTP API (p2pay-http).  For each request the daemon runs one
-- statement, SELECT p2pay.api_X(...), as the role the request authenticated
-- as, and sends back the JSON it returns: the path's segment as text or
-- uuid, the query string as a jsonb object of strings, the body as jsonb.
-- The functions check every name and value, build the JSON, and run as the
-- caller (SECURITY INVOKER), so that the caller's privileges apply as to
-- any SQL.  A refusal names the field or query argument in the error's
-- column field, which p2pay-http reports as "column"; null means no such
-- row (404).
------------------------------------------------------------------------------

-- A body's fields, by name: an object, no field but those of fields, each
-- of its JSON kind (kinds[i], alternatives separated by '|'), the first
-- required of them present and not null.  22023 for an unknown field or one
-- of the wrong kind, 23502 for a missing one, each naming the field.
CREATE FUNCTION @extschema@.api_check_body(body jsonb, what text, fields text[], kinds text[],
                                           required integer)
  RETURNS void
  LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  k     text;
  i     integer;
  field text;
  kind  text;
BEGIN
  IF body IS NULL OR jsonb_typeof(body) OPERATOR(pg_catalog.<>) 'object' THEN
    RAISE EXCEPTION 'p2pay: % is a JSON object', what
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Its fields are ' || array_to_string(fields, ', ') || '.';
  END IF;
  FOR k IN SELECT jsonb_object_keys(body) LOOP
    IF NOT k OPERATOR(pg_catalog.=) ANY (fields) THEN
      RAISE EXCEPTION 'p2pay: % has no field "%"', what, left(k, 64)
        USING ERRCODE = 'invalid_parameter_value', COLUMN = left(k, 64),
              HINT = 'Its fields are ' || array_to_string(fields, ', ') || '.';
    END IF;
  END LOOP;
  FOR i IN 1 .. coalesce(array_length(fields, 1), 0) LOOP
    field := fields[i];
    kind := jsonb_typeof(body -> field);
    IF kind IS NULL OR kind OPERATOR(pg_catalog.=) 'null' THEN
      CONTINUE WHEN i OPERATOR(pg_catalog.>) required;
      RAISE EXCEPTION 'p2pay: field "%" of % is missing', field, what
        USING ERRCODE = 'not_null_violation', COLUMN = field;
    END IF;
    IF NOT kind OPERATOR(pg_catalog.=) ANY (string_to_array(kinds[i], '|')) THEN
      RAISE EXCEPTION 'p2pay: field "%" of % must be a JSON %', field, what,
                      replace(kinds[i], '|', ' or ')
        USING ERRCODE = 'invalid_parameter_value', COLUMN = field,
              DETAIL = 'It is a JSON ' || kind || '.';
    END IF;
  END LOOP;
END $$;
COMMENT ON FUNCTION @extschema@.api_check_body(jsonb, text, text[], text[], integer) IS
  'Internal to the HTTP API: checks a request body against its fields, their JSON kinds and how many of the first are required (22023, 23502, naming the field).';

-- A query string's arguments, by name: an object of strings whose names
-- are among names (22023 naming the argument).
CREATE FUNCTION @extschema@.api_check_query(query jsonb, what text, names text[])
  RETURNS void
  LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  k    text;
  hint text := CASE WHEN cardinality(names) OPERATOR(pg_catalog.=) 0 THEN 'It takes none.'
                    ELSE 'It takes ' || array_to_string(names, ', ') || '.' END;
BEGIN
  IF query IS NULL THEN
    RETURN;
  END IF;
  IF jsonb_typeof(query) OPERATOR(pg_catalog.<>) 'object' THEN
    RAISE EXCEPTION 'p2pay: the query arguments of % are a JSON object', what
      USING ERRCODE = 'invalid_parameter_value', HINT = hint;
  END IF;
  FOR k IN SELECT jsonb_object_keys(query) LOOP
    IF NOT k OPERATOR(pg_catalog.=) ANY (names) THEN
      RAISE EXCEPTION 'p2pay: % takes no query argument "%"', what, left(k, 64)
        USING ERRCODE = 'invalid_parameter_value', COLUMN = left(k, 64), HINT = hint;
    END IF;
    IF jsonb_typeof(query -> k) OPERATOR(pg_catalog.<>) 'string' THEN
      RAISE EXCEPTION 'p2pay: query argument "%" of % must be a string', k, what
        USING ERRCODE = 'invalid_parameter_value', COLUMN = k;
    END IF;
  END LOOP;
END $$;
COMMENT ON FUNCTION @extschema@.api_check_query(jsonb, text, text[]) IS
  'Internal to the HTTP API: checks that a query string''s arguments (a JSON object of strings) have known names (22023, naming the argument).';

-- A value that is not of its field's type: the type's own error, under the
-- field's name.  what is "a ..." for a body, "the ..." (a list) for a query.
CREATE FUNCTION @extschema@.api_field_error(what text, field text, state text, message text)
  RETURNS void
  LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RAISE EXCEPTION 'p2pay: % "%" of %: %', CASE WHEN what LIKE 'the %' THEN 'query argument' ELSE 'field' END,
                  field, what, message
    USING ERRCODE = state, COLUMN = field;
END $$;
COMMENT ON FUNCTION @extschema@.api_field_error(text, text, text, text) IS
  'Internal to the HTTP API: raises the error of a value that is not of its field''s type, with its SQLSTATE, naming the field.';

-- A field's (or query argument's) value as a uuid, or null: a value that
-- is not one is api_field_error()'s error.
CREATE FUNCTION @extschema@.api_uuid_field(obj jsonb, what text, field text)
  RETURNS uuid
  LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  state text;
  msg   text;
BEGIN
  RETURN (obj ->> field)::uuid;
EXCEPTION WHEN data_exception THEN
  GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
  PERFORM @extschema@.api_field_error(what, field, state, msg);
  RETURN NULL;
END $$;
COMMENT ON FUNCTION @extschema@.api_uuid_field(jsonb, text, text) IS
  'Internal to the HTTP API: a field or query argument as a uuid, or null; a value that is not one is its error, naming the field.';

-- A list's page size: the query argument limit, 1 to 1000, or dflt.
CREATE FUNCTION @extschema@.api_query_limit(query jsonb, what text, dflt integer)
  RETURNS integer
  LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  lim   integer;
  state text;
  msg   text;
BEGIN
  IF query ->> 'limit' IS NULL THEN
    RETURN dflt;
  END IF;
  BEGIN
    lim := (query ->> 'limit')::integer;
  EXCEPTION WHEN data_exception THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    PERFORM @extschema@.api_field_error(what, 'limit', state, msg);
  END;
  IF lim OPERATOR(pg_catalog.<) 1 OR lim OPERATOR(pg_catalog.>) 1000 THEN
    RAISE EXCEPTION 'p2pay: query argument "limit" of % must be from 1 to 1000', what
      USING ERRCODE = 'invalid_parameter_value', COLUMN = 'limit',
            DETAIL = 'It is ' || lim || '.';
  END IF;
  RETURN lim;
END $$;
COMMENT ON FUNCTION @extschema@.api_query_limit(jsonb, text, integer) IS
  'Internal to the HTTP API: the query argument limit (1 to 1000), or the list''s default.';

------------------------------------------------------------------------------
-- Payments
------------------------------------------------------------------------------

-- A stored payment as the API shows it: the columns a client sees.
CREATE FUNCTION @extschema@.api_payment(transaction_id uuid) RETURNS jsonb
  LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
  SELECT jsonb_build_object(
           'transaction_id', p.transaction_id, 'payer_id', p.payer_id, 'payee_id', p.payee_id,
           'amount', p.amount, 'currency', p.currency, 'payment_method_id', p.payment_method_id,
           'created_at', p.created_at, 'risk_score', p.risk_score, 'decision', p.decision,
           'is_approved', p.is_approved, 'reasons', p.reasons, 'ruleset_version', p.ruleset_version)
    FROM @extschema@.payments p
   WHERE p.transaction_id OPERATOR(pg_catalog.=) $1
$$;
COMMENT ON FUNCTION @extschema@.api_payment(uuid) IS
  'HTTP API (GET /api/v1/payments/{transaction_id}): the payment with this transaction_id as JSON (its columns a client sees), or null.';

-- Insert a payment given as a JSON object of its columns, and return it
-- scored.  Every field is checked before anything is stored.  This is the
-- HTTP API's busiest call, so a well-formed body is recognised by one
-- expression, and only another goes through api_check_body() to be told
-- what is wrong; the response is built from the inserted row.
CREATE FUNCTION @extschema@.api_create_payment(body jsonb) RETURNS jsonb
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  what     CONSTANT text := 'a payment';
  fields   CONSTANT text[] := ARRAY['payer_id', 'payee_id', 'amount', 'currency', 'payment_method_id',
                                    'transaction_id', 'created_at'];
  field    text;
  payer    uuid;
  payee    uuid;
  amount   numeric;
  currency char(3);
  method   uuid;
  tid      uuid;
  at       timestamptz;
  state    text;
  msg      text;
  result   jsonb;
BEGIN
  IF NOT coalesce(jsonb_typeof(body) OPERATOR(pg_catalog.=) 'object'
          AND body OPERATOR(pg_catalog.?&) fields[1:5]
          AND (body OPERATOR(pg_catalog.-) fields) OPERATOR(pg_catalog.=) '{}'::jsonb
          AND jsonb_typeof(body -> 'payer_id') OPERATOR(pg_catalog.=) 'string'
          AND jsonb_typeof(body -> 'payee_id') OPERATOR(pg_catalog.=) 'string'
          AND jsonb_typeof(body -> 'amount') OPERATOR(pg_catalog.=) ANY ('{number,string}')
          AND jsonb_typeof(body -> 'currency') OPERATOR(pg_catalog.=) 'string'
          AND jsonb_typeof(body -> 'payment_method_id') OPERATOR(pg_catalog.=) 'string'
          AND coalesce(jsonb_typeof(body -> 'transaction_id'), 'null') OPERATOR(pg_catalog.=) ANY ('{string,null}')
          AND coalesce(jsonb_typeof(body -> 'created_at'), 'null') OPERATOR(pg_catalog.=) ANY ('{string,null}'),
          false) THEN
    -- an amount may be a JSON number or a string, as numeric's text is exact
    PERFORM @extschema@.api_check_body(body, what, fields,
      ARRAY['string', 'string', 'number|string', 'string', 'string', 'string', 'string'], 5);
  END IF;
  BEGIN
    field := 'payer_id';          payer := (body ->> 'payer_id')::uuid;
    field := 'payee_id';          payee := (body ->> 'payee_id')::uuid;
    field := 'amount';            amount := (body ->> 'amount')::numeric;
    field := 'currency';          currency := (body ->> 'currency')::char(3);
    field := 'payment_method_id'; method := (body ->> 'payment_method_id')::uuid;
    field := 'transaction_id';    tid := (body ->> 'transaction_id')::uuid;
    field := 'created_at';        at := (body ->> 'created_at')::timestamptz;
  EXCEPTION WHEN data_exception THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    PERFORM @extschema@.api_field_error(what, field, state, msg);
  END;
  -- char(3) would cut a longer code to three letters
  IF length(body ->> 'currency') OPERATOR(pg_catalog.<>) 3 THEN
    RAISE EXCEPTION 'p2pay: field "currency" of a payment must be a three-letter code'
      USING ERRCODE = 'invalid_parameter_value', COLUMN = 'currency';
  END IF;

  INSERT INTO @extschema@.payments AS p (transaction_id, payer_id, payee_id, amount, currency,
                                         payment_method_id, created_at)
  VALUES (coalesce(tid, gen_random_uuid()), payer, payee, amount, currency, method,
          coalesce(at, now()))
  RETURNING jsonb_build_object(
           'transaction_id', p.transaction_id, 'payer_id', p.payer_id, 'payee_id', p.payee_id,
           'amount', p.amount, 'currency', p.currency, 'payment_method_id', p.payment_method_id,
           'created_at', p.created_at, 'risk_score', p.risk_score, 'decision', p.decision,
           'is_approved', p.is_approved, 'reasons', p.reasons, 'ruleset_version', p.ruleset_version)
    INTO result;
  RETURN result;
END $$;
COMMENT ON FUNCTION @extschema@.api_create_payment(jsonb) IS
  'HTTP API (POST /api/v1/payments): insert the payment given as a JSON object of its columns (payer_id, payee_id, amount, currency, payment_method_id; transaction_id and created_at optional), scored by the trigger, and return it as api_payment() shows it.';

-- Payments newest first (created_at, then transaction_id, descending), a
-- page at a time, filtered by payer_id, payee_id, user_id (payer or
-- payee), decision and a time range [from, to); after is the last
-- transaction_id of the page before.  The statement is built with only the
-- filters given, so that each call is planned for them: a payer's
-- payments are read backwards along payments_payer_time_idx, the review
-- queue along payments_review_idx, a time range through the BRIN index,
-- and user_id is the union of its payer's and its payee's pages.  A
-- partitioned payments is pruned by the time bounds.
CREATE FUNCTION @extschema@.api_payments(query jsonb DEFAULT '{}') RETURNS jsonb
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  what     CONSTANT text := 'the payment list';
  lim      integer;
  field    text;
  payer    uuid;
  payee    uuid;
  usr      uuid;
  dec      @extschema@.decision;
  lo       timestamptz;
  hi       timestamptz;
  after    uuid;
  after_at timestamptz;
  conds    text[] := ARRAY['true'];
  cols     CONSTANT text := 'p.transaction_id, p.payer_id, p.payee_id, p.amount, p.currency, '
                            'p.payment_method_id, p.created_at, p.risk_score, p.decision, '
                            'p.is_approved, p.reasons, p.ruleset_version';
  page     CONSTANT text := ' ORDER BY p.created_at DESC, p.transaction_id DESC LIMIT $9';
  sel      text;
  rows     text;
  result   jsonb;
  state    text;
  msg      text;
BEGIN
  PERFORM @extschema@.api_check_query(query, what,
    ARRAY['payer_id', 'payee_id', 'user_id', 'decision', 'from', 'to', 'limit', 'after']);
  lim := @extschema@.api_query_limit(query, what, 50);
  BEGIN
    field := 'payer_id'; payer := (query ->> 'payer_id')::uuid;
    field := 'payee_id'; payee := (query ->> 'payee_id')::uuid;
    field := 'user_id';  usr := (query ->> 'user_id')::uuid;
    field := 'decision'; dec := (query ->> 'decision')::@extschema@.decision;
    field := 'from';     lo := (query ->> 'from')::timestamptz;
    field := 'to';       hi := (query ->> 'to')::timestamptz;
    field := 'after';    after := (query ->> 'after')::uuid;
  EXCEPTION WHEN data_exception THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    PERFORM @extschema@.api_field_error(what, field, state, msg);
  END;
  IF after IS NOT NULL THEN
    SELECT p.created_at INTO after_at
      FROM @extschema@.payments p WHERE p.transaction_id OPERATOR(pg_catalog.=) after;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'p2pay: query argument "after" of %: no payment has transaction_id %', what, after
        USING ERRCODE = 'invalid_parameter_value', COLUMN = 'after';
    END IF;
    conds := conds || ARRAY['p.created_at OPERATOR(pg_catalog.<=) $6',
                            '(p.created_at OPERATOR(pg_catalog.<) $6 OR p.transaction_id OPERATOR(pg_catalog.<) $7)'];
  END IF;
  IF payer IS NOT NULL THEN conds := array_append(conds, 'p.payer_id OPERATOR(pg_catalog.=) $1'); END IF;
  IF payee IS NOT NULL THEN conds := array_append(conds, 'p.payee_id OPERATOR(pg_catalog.=) $2'); END IF;
  IF dec IS NOT NULL THEN conds := array_append(conds, 'p.decision OPERATOR(pg_catalog.=) $3'); END IF;
  IF lo IS NOT NULL THEN conds := array_append(conds, 'p.created_at OPERATOR(pg_catalog.>=) $4'); END IF;
  IF hi IS NOT NULL THEN conds := array_append(conds, 'p.created_at OPERATOR(pg_catalog.<) $5'); END IF;

  sel := 'SELECT ' || cols || ' FROM @extschema@.payments p WHERE ' || array_to_string(conds, ' AND ');
  IF usr IS NULL THEN
    rows := sel || page;
  ELSE
    rows := 'SELECT p.* FROM ((' || sel || ' AND p.payer_id OPERATOR(pg_catalog.=) $8' || page
            || ') UNION (' || sel || ' AND p.payee_id OPERATOR(pg_catalog.=) $8' || page
            || ')) p' || page;
  END IF;
  EXECUTE 'SELECT coalesce(jsonb_agg(jsonb_build_object('
          '''transaction_id'', p.transaction_id, ''payer_id'', p.payer_id, ''payee_id'', p.payee_id, '
          '''amount'', p.amount, ''currency'', p.currency, ''payment_method_id'', p.payment_method_id, '
          '''created_at'', p.created_at, ''risk_score'', p.risk_score, ''decision'', p.decision, '
          '''is_approved'', p.is_approved, ''reasons'', p.reasons, ''ruleset_version'', p.ruleset_version) '
          'ORDER BY p.created_at DESC, p.transaction_id DESC), ''[]''::jsonb) FROM (' || rows || ') p'
    INTO result
    USING payer, payee, dec, lo, hi, after_at, after, usr, lim;
  RETURN result;
END $$;
COMMENT ON FUNCTION @extschema@.api_payments(jsonb) IS
  'HTTP API (GET /api/v1/payments): payments newest first as a JSON array, filtered by the query arguments payer_id, payee_id, user_id (payer or payee), decision, from and to (created_at in [from, to)); limit (1 to 1000, 50) of them after the transaction_id after.';

------------------------------------------------------------------------------
-- Reference data: currencies and payment methods
------------------------------------------------------------------------------

CREATE FUNCTION @extschema@.api_currency(code text) RETURNS jsonb
  LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
  SELECT jsonb_build_object('code', c.code, 'name', c.name, 'rate_to_base', c.rate_to_base)
    FROM @extschema@.currencies c
   WHERE c.code OPERATOR(pg_catalog.=) $1::pg_catalog.bpchar
$$;
COMMENT ON FUNCTION @extschema@.api_currency(text) IS
  'HTTP API (GET /api/v1/currencies/{code}): the currency with this code as JSON, or null.';

CREATE FUNCTION @extschema@.api_currencies(query jsonb DEFAULT '{}') RETURNS jsonb
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  what   CONSTANT text := 'the currency list';
  lim    integer;
  result jsonb;
BEGIN
  PERFORM @extschema@.api_check_query(query, what, ARRAY['limit', 'after']);
  lim := @extschema@.api_query_limit(query, what, 1000);
  SELECT coalesce(jsonb_agg(jsonb_build_object('code', c.code, 'name', c.name,
                                               'rate_to_base', c.rate_to_base)
                            ORDER BY c.code), '[]')
    INTO result
    FROM (SELECT * FROM @extschema@.currencies c
           WHERE query ->> 'after' IS NULL
              OR c.code OPERATOR(pg_catalog.>) (query ->> 'after')::pg_catalog.bpchar
           ORDER BY c.code LIMIT lim) c;
  RETURN result;
END $$;
COMMENT ON FUNCTION @extschema@.api_currencies(jsonb) IS
  'HTTP API (GET /api/v1/currencies): currencies by code as a JSON array; limit (1 to 1000, 1000) of them after the code after.';

-- currencies_merge turns the insert of an existing code into an update of
-- it (that is how pg_restore brings rates back): an existing code is
-- refused here first, and an insert that stored nothing (a currency of the
-- code committed meanwhile) is refused as well, undoing the update.
CREATE FUNCTION @extschema@.api_create_currency(body jsonb) RETURNS jsonb
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  what  CONSTANT text := 'a currency';
  field text;
  rate  numeric;
  code  char(3);
  state text;
  msg   text;
BEGIN
  PERFORM @extschema@.api_check_body(body, what, ARRAY['code', 'name', 'rate_to_base'],
                                     ARRAY['string', 'string', 'number|string'], 3);
  IF (body ->> 'code') OPERATOR(pg_catalog.!~) '^[A-Z]{3}$' THEN
    RAISE EXCEPTION 'p2pay: field "code" of a currency must be three capital letters'
      USING ERRCODE = 'invalid_parameter_value', COLUMN = 'code',
            DETAIL = 'It is "' || left(body ->> 'code', 64) || '".';
  END IF;
  BEGIN
    field := 'rate_to_base'; rate := (body ->> 'rate_to_base')::numeric;
  EXCEPTION WHEN data_exception THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    PERFORM @extschema@.api_field_error(what, field, state, msg);
  END;
  IF EXISTS (SELECT 1 FROM @extschema@.currencies c
              WHERE c.code OPERATOR(pg_catalog.=) (body ->> 'code')::pg_catalog.bpchar) THEN
    RAISE EXCEPTION 'p2pay: currency % exists', body ->> 'code'
      USING ERRCODE = 'unique_violation', COLUMN = 'code';
  END IF;
  INSERT INTO @extschema@.currencies AS c (code, name, rate_to_base)
  VALUES (body ->> 'code', body ->> 'name', rate)
  RETURNING c.code INTO code;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'p2pay: currency % exists', body ->> 'code'
      USING ERRCODE = 'unique_violation', COLUMN = 'code';
  END IF;
  RETURN @extschema@.api_currency(code);
END $$;
COMMENT ON FUNCTION @extschema@.api_create_currency(jsonb) IS
  'HTTP API (POST /api/v1/currencies): insert the currency given as {"code", "name", "rate_to_base"} and return it; an existing code is 23505.';

CREATE FUNCTION @extschema@.api_payment_method(id uuid) RETURNS jsonb
  LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
  SELECT jsonb_build_object('id', m.id, 'name', m.name)
    FROM @extschema@.payment_methods m
   WHERE m.id OPERATOR(pg_catalog.=) $1
$$;
COMMENT ON FUNCTION @extschema@.api_payment_method(uuid) IS
  'HTTP API (GET /api/v1/payment-methods/{id}): the payment method with this id as JSON, or null.';

CREATE FUNCTION @extschema@.api_payment_methods(query jsonb DEFAULT '{}') RETURNS jsonb
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  what   CONSTANT text := 'the payment method list';
  lim    integer;
  after  uuid;
  result jsonb;
BEGIN
  PERFORM @extschema@.api_check_query(query, what, ARRAY['limit', 'after']);
  lim := @extschema@.api_query_limit(query, what, 1000);
  after := @extschema@.api_uuid_field(query, what, 'after');
  SELECT coalesce(jsonb_agg(jsonb_build_object('id', m.id, 'name', m.name) ORDER BY m.id), '[]')
    INTO result
    FROM (SELECT * FROM @extschema@.payment_methods m
           WHERE after IS NULL OR m.id OPERATOR(pg_catalog.>) after
           ORDER BY m.id LIMIT lim) m;
  RETURN result;
END $$;
COMMENT ON FUNCTION @extschema@.api_payment_methods(jsonb) IS
  'HTTP API (GET /api/v1/payment-methods): payment methods by id as a JSON array; limit (1 to 1000, 1000) of them after the id after.';

-- payment_methods_merge turns the insert of an existing id into an update
-- of its name: refused here as for currencies.
CREATE FUNCTION @extschema@.api_create_payment_method(body jsonb) RETURNS jsonb
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  what  CONSTANT text := 'a payment method';
  method_id uuid;
BEGIN
  PERFORM @extschema@.api_check_body(body, what, ARRAY['name', 'id'], ARRAY['string', 'string'], 1);
  method_id := @extschema@.api_uuid_field(body, what, 'id');
  IF EXISTS (SELECT 1 FROM @extschema@.payment_methods m WHERE m.id OPERATOR(pg_catalog.=) method_id) THEN
    RAISE EXCEPTION 'p2pay: payment method % exists', method_id
      USING ERRCODE = 'unique_violation', COLUMN = 'id';
  END IF;
  INSERT INTO @extschema@.payment_methods AS m (id, name)
  VALUES (coalesce(method_id, gen_random_uuid()), body ->> 'name')
  RETURNING m.id INTO method_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'p2pay: payment method % exists', body ->> 'id'
      USING ERRCODE = 'unique_violation', COLUMN = 'id';
  END IF;
  RETURN @extschema@.api_payment_method(method_id);
END $$;
COMMENT ON FUNCTION @extschema@.api_create_payment_method(jsonb) IS
  'HTTP API (POST /api/v1/payment-methods): insert the payment method given as {"name"} (id optional) and return it; an existing id or name is 23505.';

------------------------------------------------------------------------------
-- Users and their payment methods
------------------------------------------------------------------------------

CREATE FUNCTION @extschema@.api_user(id uuid) RETURNS jsonb
  LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
  SELECT jsonb_build_object('id', u.id, 'first_name', u.first_name, 'last_name', u.last_name,
                            'email_address', u.email_address, 'created_at', u.created_at)
    FROM @extschema@.users u
   WHERE u.id OPERATOR(pg_catalog.=) $1
$$;
COMMENT ON FUNCTION @extschema@.api_user(uuid) IS
  'HTTP API (GET /api/v1/users/{id}): the user with this id as JSON, or null.';

CREATE FUNCTION @extschema@.api_users(query jsonb DEFAULT '{}') RETURNS jsonb
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  what   CONSTANT text := 'the user list';
  lim    integer;
  after  uuid;
  result jsonb;
BEGIN
  PERFORM @extschema@.api_check_query(query, what, ARRAY['limit', 'after']);
  lim := @extschema@.api_query_limit(query, what, 50);
  after := @extschema@.api_uuid_field(query, what, 'after');
  SELECT coalesce(jsonb_agg(jsonb_build_object('id', u.id, 'first_name', u.first_name,
                                               'last_name', u.last_name,
                                               'email_address', u.email_address,
                                               'created_at', u.created_at)
                            ORDER BY u.id), '[]')
    INTO result
    FROM (SELECT * FROM @extschema@.users u
           WHERE after IS NULL OR u.id OPERATOR(pg_catalog.>) after
           ORDER BY u.id LIMIT lim) u;
  RETURN result;
END $$;
COMMENT ON FUNCTION @extschema@.api_users(jsonb) IS
  'HTTP API (GET /api/v1/users): users by id as a JSON array; limit (1 to 1000, 50) of them after the id after.';

CREATE FUNCTION @extschema@.api_create_user(body jsonb) RETURNS jsonb
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  what  CONSTANT text := 'a user';
  field text;
  user_id uuid;
  at    timestamptz;
  state text;
  msg   text;
BEGIN
  PERFORM @extschema@.api_check_body(body, what,
    ARRAY['first_name', 'last_name', 'email_address', 'id', 'created_at'],
    ARRAY['string', 'string', 'string', 'string', 'string'], 0);
  BEGIN
    field := 'id';         user_id := (body ->> 'id')::uuid;
    field := 'created_at'; at := (body ->> 'created_at')::timestamptz;
  EXCEPTION WHEN data_exception THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    PERFORM @extschema@.api_field_error(what, field, state, msg);
  END;
  INSERT INTO @extschema@.users AS u (id, first_name, last_name, email_address, created_at)
  VALUES (coalesce(user_id, gen_random_uuid()), body ->> 'first_name', body ->> 'last_name',
          body ->> 'email_address', coalesce(at, now()))
  RETURNING u.id INTO user_id;
  RETURN @extschema@.api_user(user_id);
END $$;
COMMENT ON FUNCTION @extschema@.api_create_user(jsonb) IS
  'HTTP API (POST /api/v1/users): insert the user given as {"first_name", "last_name", "email_address"} (each optional, as are id and created_at) and return it; an existing id is 23505.';

CREATE FUNCTION @extschema@.api_user_payment_methods(user_id uuid, query jsonb DEFAULT '{}')
  RETURNS jsonb
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  what   CONSTANT text := 'the list of a user''s payment methods';
  lim    integer;
  after  uuid;
  result jsonb;
BEGIN
  PERFORM @extschema@.api_check_query(query, what, ARRAY['limit', 'after']);
  lim := @extschema@.api_query_limit(query, what, 1000);
  after := @extschema@.api_uuid_field(query, what, 'after');
  IF NOT EXISTS (SELECT 1 FROM @extschema@.users u
                  WHERE u.id OPERATOR(pg_catalog.=) api_user_payment_methods.user_id) THEN
    RETURN NULL;
  END IF;
  SELECT coalesce(jsonb_agg(jsonb_build_object('user_id', m.user_id,
                                               'payment_method_id', m.payment_method_id,
                                               'details', m.details)
                            ORDER BY m.payment_method_id), '[]')
    INTO result
    FROM (SELECT * FROM @extschema@.user_payment_methods m
           WHERE m.user_id OPERATOR(pg_catalog.=) api_user_payment_methods.user_id
             AND (after IS NULL OR m.payment_method_id OPERATOR(pg_catalog.>) after)
           ORDER BY m.payment_method_id LIMIT lim) m;
  RETURN result;
END $$;
COMMENT ON FUNCTION @extschema@.api_user_payment_methods(uuid, jsonb) IS
  'HTTP API (GET /api/v1/users/{id}/payment-methods): the payment methods the user registered, by payment_method_id, as a JSON array (limit, 1000 by default, after the payment_method_id after); null if there is no such user.';

CREATE FUNCTION @extschema@.api_create_user_payment_method(user_id uuid, body jsonb) RETURNS jsonb
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  what   CONSTANT text := 'a user''s payment method';
  method uuid;
  result jsonb;
BEGIN
  PERFORM @extschema@.api_check_body(body, what, ARRAY['payment_method_id', 'details'],
                                     ARRAY['string', 'string'], 1);
  method := @extschema@.api_uuid_field(body, what, 'payment_method_id');
  INSERT INTO @extschema@.user_payment_methods AS m (user_id, payment_method_id, details)
  VALUES (api_create_user_payment_method.user_id, method, body ->> 'details')
  RETURNING jsonb_build_object('user_id', m.user_id, 'payment_method_id', m.payment_method_id,
                               'details', m.details) INTO result;
  RETURN result;
END $$;
COMMENT ON FUNCTION @extschema@.api_create_user_payment_method(uuid, jsonb) IS
  'HTTP API (POST /api/v1/users/{id}/payment-methods): register the payment method given as {"payment_method_id", "details"} to the user and return it; an unknown user or method is 23503, one registered already 23505.';

------------------------------------------------------------------------------
-- The review queue: claims and resolutions
------------------------------------------------------------------------------

-- An analyst claims a review while working on it, so that another does
-- not resolve it meanwhile; a claim lapses at expires_at.  No foreign key:
-- a transaction_id is unique in payments only with its created_at once
-- payments is partitioned.  A claim outlives its review only when the
-- payment is resolved outside the API; nothing reads it then.
CREATE TABLE @extschema@.review_claims (
  transaction_id uuid PRIMARY KEY,
  claimed_by     name NOT NULL DEFAULT SESSION_USER,
  claimed_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
  expires_at     timestamptz NOT NULL,
  CONSTRAINT review_claims_expire_later CHECK (expires_at > claimed_at)
);
COMMENT ON TABLE @extschema@.review_claims IS
  'Reviews claimed by an analyst (the role that logged in) until expires_at: api_resolve() refuses anyone else meanwhile.';
SELECT pg_catalog.pg_extension_config_dump('@extschema@.review_claims', '');

-- Take the claim on a review for session_user until until_at: a new claim,
-- the caller's own extended, or another's that has expired taken over.
-- The upsert locks the claim's key, so that two sessions claiming or
-- resolving one review run one after the other.  The claim as JSON, or
-- null when another role holds an unexpired claim.  (No function takes or
-- returns the table's row type: a DROP TABLE ... CASCADE of it would
-- follow such a function to the extension.)
CREATE FUNCTION @extschema@.api_take_claim(transaction_id uuid, until_at timestamptz)
  RETURNS jsonb
  LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
  INSERT INTO @extschema@.review_claims AS c (transaction_id, claimed_by, claimed_at, expires_at)
  VALUES ($1, SESSION_USER, now(), $2)
  ON CONFLICT (transaction_id) DO UPDATE
     SET claimed_by = excluded.claimed_by,
         claimed_at = CASE WHEN c.claimed_by OPERATOR(pg_catalog.=) excluded.claimed_by
                            AND c.expires_at OPERATOR(pg_catalog.>) now()
                           THEN c.claimed_at ELSE excluded.claimed_at END,
         expires_at = excluded.expires_at
   WHERE c.claimed_by OPERATOR(pg_catalog.=) excluded.claimed_by
      OR c.expires_at OPERATOR(pg_catalog.<=) now()
  RETURNING jsonb_build_object('transaction_id', c.transaction_id, 'claimed_by', c.claimed_by,
                               'claimed_at', c.claimed_at, 'expires_at', c.expires_at)
$$;
COMMENT ON FUNCTION @extschema@.api_take_claim(uuid, timestamptz) IS
  'Internal to the HTTP API: claims a review for session_user until a time (new, own extended, or another''s expired); null if another role holds it.';

-- 55000 naming who holds the claim, if anyone but the caller does.
CREATE FUNCTION @extschema@.api_claim_refused(transaction_id uuid) RETURNS void
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  holder name;
  until  timestamptz;
BEGIN
  SELECT r.claimed_by, r.expires_at INTO holder, until
    FROM @extschema@.review_claims r
   WHERE r.transaction_id OPERATOR(pg_catalog.=) api_claim_refused.transaction_id;
  RAISE EXCEPTION 'p2pay: review % is claimed by %', api_claim_refused.transaction_id, holder
    USING ERRCODE = 'object_not_in_prerequisite_state',
          DETAIL = format('The claim expires at %s.', until),
          HINT = 'Wait until it expires or is released.';
END $$;
COMMENT ON FUNCTION @extschema@.api_claim_refused(uuid) IS
  'Internal to the HTTP API: raises 55000 naming the role that holds a review''s claim and when it expires.';

CREATE FUNCTION @extschema@.api_claim(transaction_id uuid, body jsonb DEFAULT NULL) RETURNS jsonb
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  what     CONSTANT text := 'a claim';
  minutes  integer := 15;
  claim    jsonb;
  decision @extschema@.decision;
  state    text;
  msg      text;
BEGIN
  IF api_claim.transaction_id IS NULL THEN
    RAISE EXCEPTION 'p2pay: transaction_id must not be null' USING ERRCODE = 'null_value_not_allowed';
  END IF;
  body := coalesce(body, '{}');
  PERFORM @extschema@.api_check_body(body, what, ARRAY['minutes'], ARRAY['number'], 0);
  IF body ? 'minutes' AND jsonb_typeof(body -> 'minutes') OPERATOR(pg_catalog.<>) 'null' THEN
    BEGIN
      minutes := (body ->> 'minutes')::integer;
    EXCEPTION WHEN data_exception THEN
      GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
      PERFORM @extschema@.api_field_error(what, 'minutes', state, msg);
    END;
    IF minutes OPERATOR(pg_catalog.<) 1 OR minutes OPERATOR(pg_catalog.>) 240 THEN
      RAISE EXCEPTION 'p2pay: field "minutes" of a claim must be from 1 to 240'
        USING ERRCODE = 'invalid_parameter_value', COLUMN = 'minutes',
              DETAIL = 'It is ' || minutes || '.';
    END IF;
  END IF;

  -- The claim first: a role that may not write claims is refused whatever
  -- the payment, and the review is read after the claim's key is locked,
  -- so that a resolution that committed meanwhile is seen.
  claim := @extschema@.api_take_claim(api_claim.transaction_id,
                                      now() + make_interval(mins => minutes));
  IF claim IS NULL THEN
    PERFORM @extschema@.api_claim_refused(api_claim.transaction_id);
  END IF;
  SELECT p.decision INTO decision
    FROM @extschema@.payments p
   WHERE p.transaction_id OPERATOR(pg_catalog.=) api_claim.transaction_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'p2pay: no payment has transaction_id %', api_claim.transaction_id
      USING ERRCODE = 'no_data_found';
  END IF;
  IF decision IS DISTINCT FROM 'review' THEN
    RAISE EXCEPTION 'p2pay: payment % is not under review', api_claim.transaction_id
      USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = format('Its decision is %s.', coalesce(decision::text, 'null'));
  END IF;
  RETURN claim;
END $$;
COMMENT ON FUNCTION @extschema@.api_claim(uuid, jsonb) IS
  'HTTP API (POST /api/v1/reviews/{transaction_id}/claim): claim a review for session_user for {"minutes": 1 to 240} (15), or extend one''s own claim; 55000 if another role''s claim has not expired or the payment is not under review, P0002 if there is no such payment.  Returns the claim.';

CREATE FUNCTION @extschema@.api_release(transaction_id uuid) RETURNS jsonb
  LANGUAGE sql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
  DELETE FROM @extschema@.review_claims c
   WHERE c.transaction_id OPERATOR(pg_catalog.=) $1
     AND c.claimed_by OPERATOR(pg_catalog.=) SESSION_USER
  RETURNING jsonb_build_object('transaction_id', c.transaction_id, 'claimed_by', c.claimed_by,
                               'claimed_at', c.claimed_at, 'expires_at', c.expires_at)
$$;
COMMENT ON FUNCTION @extschema@.api_release(uuid) IS
  'HTTP API (DELETE /api/v1/reviews/{transaction_id}/claim): release session_user''s claim on a review and return it; null if it holds none.';

-- The review queue, oldest first, a page at a time: limit payments after
-- the one whose transaction_id is after (keyset on created_at and
-- transaction_id, so that a page stays right while others are resolved),
-- with who has claimed each.
CREATE FUNCTION @extschema@.api_reviews(query jsonb DEFAULT '{}') RETURNS jsonb
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  what     CONSTANT text := 'the review queue';
  lim      integer;
  after    uuid;
  after_at timestamptz;
  result   jsonb;
BEGIN
  PERFORM @extschema@.api_check_query(query, what, ARRAY['limit', 'after']);
  lim := @extschema@.api_query_limit(query, what, 50);
  after := @extschema@.api_uuid_field(query, what, 'after');
  IF after IS NOT NULL THEN
    SELECT p.created_at INTO after_at
      FROM @extschema@.payments p WHERE p.transaction_id OPERATOR(pg_catalog.=) after;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'p2pay: query argument "after" of %: no payment has transaction_id %', what, after
        USING ERRCODE = 'invalid_parameter_value', COLUMN = 'after';
    END IF;
  END IF;
  SELECT coalesce(jsonb_agg(jsonb_build_object(
           'transaction_id', q.transaction_id, 'created_at', q.created_at,
           'payer_id', q.payer_id, 'payee_id', q.payee_id, 'amount', q.amount,
           'currency', q.currency, 'amount_base', q.amount_base, 'risk_score', q.risk_score,
           'reasons', q.reasons, 'ruleset_version', q.ruleset_version,
           'waiting_seconds', extract(epoch FROM q.waiting),
           'claimed_by', c.claimed_by, 'claim_expires_at', c.expires_at)
           ORDER BY q.created_at, q.transaction_id), '[]')
    INTO result
    FROM (SELECT r.* FROM @extschema@.review_queue r
           WHERE after IS NULL
              OR r.created_at OPERATOR(pg_catalog.>) after_at
              OR r.created_at OPERATOR(pg_catalog.=) after_at
                 AND r.transaction_id OPERATOR(pg_catalog.>) after
           ORDER BY r.created_at, r.transaction_id
           LIMIT lim) q
    LEFT JOIN @extschema@.review_claims c
      ON c.transaction_id OPERATOR(pg_catalog.=) q.transaction_id
     AND c.expires_at OPERATOR(pg_catalog.>) now();
  RETURN result;
END $$;
COMMENT ON FUNCTION @extschema@.api_reviews(jsonb) IS
  'HTTP API (GET /api/v1/reviews): the review queue as a JSON array, oldest first, limit (1 to 1000, 50) payments after the transaction_id after, each with claimed_by and claim_expires_at of an unexpired claim.';

-- Resolve a review with {"decision": "approve" | "decline", "note": "..."}
-- through resolve(), which refuses a payment no longer under review
-- (55000).  The resolution takes the review's claim for its own
-- transaction first (refused, 55000, while another role's has not
-- expired), so that it runs after any claim being made, and removes it.
CREATE FUNCTION @extschema@.api_resolve(transaction_id uuid, body jsonb) RETURNS jsonb
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  what  CONSTANT text := 'a resolution';
  claim jsonb;
BEGIN
  PERFORM @extschema@.api_check_body(body, what, ARRAY['decision', 'note'], ARRAY['string', 'string'], 1);
  IF body ->> 'decision' NOT IN ('approve', 'decline') THEN
    RAISE EXCEPTION 'p2pay: field "decision" of a resolution must be "approve" or "decline"'
      USING ERRCODE = 'invalid_parameter_value', COLUMN = 'decision',
            DETAIL = 'It is "' || left(body ->> 'decision', 64) || '".';
  END IF;
  IF api_resolve.transaction_id IS NULL THEN
    RAISE EXCEPTION 'p2pay: transaction_id must not be null' USING ERRCODE = 'null_value_not_allowed';
  END IF;
  claim := @extschema@.api_take_claim(api_resolve.transaction_id, now() + interval '1 minute');
  IF claim IS NULL THEN
    PERFORM @extschema@.api_claim_refused(api_resolve.transaction_id);
  END IF;
  PERFORM @extschema@.resolve(api_resolve.transaction_id,
                              (body ->> 'decision')::@extschema@.decision, body ->> 'note');
  DELETE FROM @extschema@.review_claims c
   WHERE c.transaction_id OPERATOR(pg_catalog.=) api_resolve.transaction_id;
  RETURN @extschema@.api_payment(api_resolve.transaction_id);
END $$;
COMMENT ON FUNCTION @extschema@.api_resolve(uuid, jsonb) IS
  'HTTP API (POST /api/v1/reviews/{transaction_id}): resolve a review with {"decision": "approve" | "decline", "note": "..."} through resolve() (55000 once it is no longer under review, or while another role''s claim has not expired), remove its claim, and return the payment.';

------------------------------------------------------------------------------
-- Rules and backtests
------------------------------------------------------------------------------

-- Every rule with its statistics.  rule_stats counts across the whole
-- server (every database's inserts), since its start or the last reset;
-- without p2pay in shared_preload_libraries there are none, and the
-- statistics are null.
CREATE FUNCTION @extschema@.api_rules(query jsonb DEFAULT '{}') RETURNS jsonb
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  stats  jsonb;
  result jsonb;
BEGIN
  PERFORM @extschema@.api_check_query(query, 'the rule list', '{}');
  BEGIN
    SELECT jsonb_object_agg(s.rule, jsonb_build_object(
             'evaluations', s.evaluations, 'fires', s.fires, 'mean_us', s.mean_us,
             'max_us', s.max_us, 'since', s.since))
      INTO stats
      FROM @extschema@.rule_stats s;
  EXCEPTION WHEN object_not_in_prerequisite_state THEN
    stats := NULL;
  END;
  SELECT coalesce(jsonb_agg(jsonb_build_object(
           'name', r.name, 'mode', r.mode, 'enabled', r.enabled, 'weight', r.weight,
           'params', r.params, 'description', r.description)
           || coalesce(stats -> r.name, '{"evaluations": null, "fires": null, "mean_us": null, "max_us": null, "since": null}')
           ORDER BY r.name), '[]')
    INTO result
    FROM @extschema@.rules r;
  RETURN result;
END $$;
COMMENT ON FUNCTION @extschema@.api_rules(jsonb) IS
  'HTTP API (GET /api/v1/rules): every rule (name, mode, enabled, weight, params, description) with its rule_stats figures (evaluations, fires, mean_us, max_us, since: server-wide, null without p2pay in shared_preload_libraries), by name, as a JSON array.';

CREATE FUNCTION @extschema@.api_backtest(body jsonb) RETURNS jsonb
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  what   CONSTANT text := 'a backtest';
  field  text;
  lo     timestamptz;
  hi     timestamptz;
  result jsonb;
  state  text;
  msg    text;
BEGIN
  PERFORM @extschema@.api_check_body(body, what, ARRAY['from', 'to', 'rules'],
                                     ARRAY['string', 'string', 'array'], 2);
  BEGIN
    field := 'from'; lo := (body ->> 'from')::timestamptz;
    field := 'to';   hi := (body ->> 'to')::timestamptz;
  EXCEPTION WHEN data_exception THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    PERFORM @extschema@.api_field_error(what, field, state, msg);
  END;
  IF hi OPERATOR(pg_catalog.<=) lo THEN
    RAISE EXCEPTION 'p2pay: field "to" of a backtest must be later than "from"'
      USING ERRCODE = 'invalid_parameter_value', COLUMN = 'to';
  END IF;
  -- from and to are right: backtest()'s own refusals of data are the rules'
  BEGIN
    SELECT coalesce(jsonb_agg(to_jsonb(b) - 'ordinality' ORDER BY b.ordinality), '[]') INTO result
      FROM @extschema@.backtest(lo, hi, nullif(body -> 'rules', 'null')) WITH ORDINALITY b;
  EXCEPTION WHEN data_exception THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    PERFORM @extschema@.api_field_error(what, 'rules', state, msg);
  END;
  RETURN jsonb_build_object('from', lo, 'to', hi, 'rules', result);
END $$;
COMMENT ON FUNCTION @extschema@.api_backtest(jsonb) IS
  'HTTP API (POST /api/v1/backtest): backtest() of {"from", "to", "rules"} (rules optional: the rule rows backtest() takes), returned as {"from", "to", "rules": [its rows as objects]}.';

------------------------------------------------------------------------------
-- Statistics per database, and decision counters.  rule_stats counted every
-- database of the server together; each database now has its own block of
-- shared memory (p2pay.stats_databases of them, then one overflow block
-- that the databases beyond share, reported by the column overflow).
-- decision_stats counts the decisions of committed payments, so that
-- monitoring never scans payments.  Both are for pg_monitor-style roles:
-- grant_monitoring() gives a role what p2pay's monitoring queries read.
------------------------------------------------------------------------------

CREATE FUNCTION @extschema@.stats_overflow() RETURNS boolean
  AS 'MODULE_PATHNAME', 'p2pay_stats_overflow' LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.stats_overflow() IS
  'Whether this database''s statistics (rule_stats, decision_stats) are those of the overflow block, shared with every database beyond the p2pay.stats_databases that took a block of their own; needs shared_preload_libraries = ''p2pay''.';

-- The view keeps reading rule_stats_read(), so that the roles granted it
-- keep reading the view; stats_overflow() is left to PUBLIC (it says one
-- boolean about the server).
CREATE OR REPLACE VIEW @extschema@.rule_stats AS
  SELECT r.rule, r.evaluations, r.fires, r.mean_us, r.max_us, r.since,
         @extschema@.stats_overflow() AS overflow
    FROM @extschema@.rule_stats_read() r;
COMMENT ON VIEW @extschema@.rule_stats IS
  'Per rule, for this database''s inserts in all sessions since the last rule_stats_reset() (or server start): evaluations, fires, mean and maximum evaluation time in microseconds; the row "facts" is the reading of the facts the rules share.  overflow: this database found no block of its own (p2pay.stats_databases) and the figures are those of every database in the overflow block.';
COMMENT ON FUNCTION @extschema@.rule_stats_reset() IS
  'Set this database''s per-rule statistics back to zero (in the overflow block: those of every database in it).';
COMMENT ON FUNCTION @extschema@.rule_stats_read() IS
  'This database''s per-rule evaluations, fires and evaluation times from shared memory; needs shared_preload_libraries = ''p2pay''.';
COMMENT ON FUNCTION @extschema@.api_rules(jsonb) IS
  'HTTP API (GET /api/v1/rules): every rule (name, mode, enabled, weight, params, description) with its rule_stats figures (evaluations, fires, mean_us, max_us, since: this database''s, null without p2pay in shared_preload_libraries), by name, as a JSON array.';

CREATE FUNCTION @extschema@.decision_stats_read(
  OUT decision text, OUT payments bigint, OUT since timestamptz)
  RETURNS SETOF record
  AS 'MODULE_PATHNAME', 'p2pay_decision_stats' LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
REVOKE ALL ON FUNCTION @extschema@.decision_stats_read() FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.decision_stats_read() IS
  'Per decision, the payments of this database the trigger scored with it in transactions that committed, from shared memory; needs shared_preload_libraries = ''p2pay''.';

CREATE VIEW @extschema@.decision_stats AS
  SELECT d.decision, d.payments, d.since, @extschema@.stats_overflow() AS overflow
    FROM @extschema@.decision_stats_read() d;
COMMENT ON VIEW @extschema@.decision_stats IS
  'Per decision (approve, review, decline): the payments inserted into this database with it, counted when their transaction commits (rolled-back and prepared transactions count nothing), since the last decision_stats_reset() or server start.  A counter: it never goes down (later resolve() or deletes do not change it).  overflow: the figures are shared with other databases (p2pay.stats_databases).';

CREATE FUNCTION @extschema@.decision_stats_reset() RETURNS void
  AS 'MODULE_PATHNAME', 'p2pay_decision_stats_reset' LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.decision_stats_reset() IS
  'Set this database''s decision counters back to zero (in the overflow block: those of every database in it).';
REVOKE ALL ON FUNCTION @extschema@.decision_stats_reset() FROM PUBLIC;

-- A monitoring role (for example prometheus-postgres-exporter's) reads the
-- statistics, the review queue's size and age through payments_review_idx,
-- and the sizes of p2pay's tables; it reads no payment's content: the
-- grant gives it the statistics functions and, for the queue, a SECURITY
-- DEFINER function that returns only counts.
CREATE FUNCTION @extschema@.review_queue(OUT payments bigint, OUT oldest_age_seconds double precision)
  RETURNS record
  LANGUAGE sql STABLE SECURITY DEFINER PARALLEL SAFE
  SET search_path = pg_catalog, pg_temp AS $$
  SELECT pg_catalog.count(*),
         coalesce(pg_catalog.date_part('epoch',
                    pg_catalog.statement_timestamp() OPERATOR(pg_catalog.-) pg_catalog.min(p.created_at)), 0)
    FROM @extschema@.payments p
   WHERE p.decision OPERATOR(pg_catalog.=) 'review'::@extschema@.decision
$$;
REVOKE ALL ON FUNCTION @extschema@.review_queue() FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.review_queue() IS
  'The review queue: how many payments are under review, and the age in seconds of the oldest (0 when none), read through payments_review_idx; for monitoring roles, which need no access to payments.';

CREATE FUNCTION @extschema@.grant_monitoring(role name) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA %I TO %I', '@extschema@', role);
  EXECUTE pg_catalog.format(
    'GRANT SELECT ON %I.rule_stats, %I.decision_stats TO %I', '@extschema@', '@extschema@', role);
  EXECUTE pg_catalog.format(
    'GRANT EXECUTE ON FUNCTION %I.rule_stats_read(), %I.decision_stats_read(), %I.review_queue() TO %I',
    '@extschema@', '@extschema@', '@extschema@', role);
END $$;
REVOKE ALL ON FUNCTION @extschema@.grant_monitoring(name) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.grant_monitoring(name) IS
  'Give a role what p2pay''s monitoring queries (monitoring/queries.yaml) need in this database: usage of the schema, the statistics views and their functions, and review_queue(); with pg_monitor (slot lag, table sizes) nothing else.  Run by the extension''s owner or a superuser, once per database.';

------------------------------------------------------------------------------
-- Catching up after a failover: the flagged payments committed after a time
------------------------------------------------------------------------------

-- A time as the stream writes it: "2026-11-26T03:00:00.123456Z", ISO 8601,
-- UTC, microseconds; infinities as strings; null as null.
CREATE FUNCTION @extschema@.stream_time(t timestamptz) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN t IS NULL THEN 'null'
              WHEN t OPERATOR(pg_catalog.=) '-infinity'::pg_catalog.timestamptz THEN '"-infinity"'
              WHEN t OPERATOR(pg_catalog.=) 'infinity'::pg_catalog.timestamptz THEN '"infinity"'
              ELSE '"' OPERATOR(pg_catalog.||)
                   pg_catalog.to_char(pg_catalog.timezone('UTC', t), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                   OPERATOR(pg_catalog.||) '"'
         END
$$;
COMMENT ON FUNCTION @extschema@.stream_time(timestamptz) IS
  'A time as the stream (output plugin p2pay) writes it in JSON: ISO 8601, UTC, microseconds.';

-- A consumer of the stream whose slot is lost (before PostgreSQL 17 a
-- promoted standby has no copy of the old primary's logical slots) creates
-- a slot on the new primary and reads from this what the old slot had not
-- delivered.  A row's commit time is the commit timestamp of its xmin: the
-- very commit_time the stream wrote for it, where created_at is the
-- client's and says nothing of when the row became visible.  A resolved
-- payment's current row was written by resolve(), so the decision its
-- flagged event carried is read back from decision_log.  The scan walks the
-- ids (identity values, taken in insert order) down from the newest and
-- stops at the first row whose commit is known to be at or before since -
-- max_transaction_age: every row below it was inserted before that, by a
-- transaction that, to commit after since, would have stayed open longer
-- than max_transaction_age.
CREATE FUNCTION @extschema@.flagged_since(since timestamptz,
                                          min_decision @extschema@.decision DEFAULT 'review',
                                          max_transaction_age interval DEFAULT '1 day')
  RETURNS SETOF text
  LANGUAGE plpgsql STABLE PARALLEL UNSAFE
  SET search_path = pg_catalog, pg_temp SET extra_float_digits = 1 AS $$
DECLARE
  floor_id bigint;
BEGIN
  IF since IS NULL OR min_decision IS NULL OR max_transaction_age IS NULL THEN
    RAISE EXCEPTION 'flagged_since() takes no null argument'
      USING ERRCODE = 'null_value_not_allowed',
            HINT = 'since is the commit_time of the last event the consumer processed.';
  END IF;
  IF pg_catalog.current_setting('track_commit_timestamp') <> 'on' THEN
    RAISE EXCEPTION 'flagged_since() needs track_commit_timestamp'
      USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = 'A payment''s commit time is its transaction''s commit timestamp, which the server records only with track_commit_timestamp on.',
            HINT = 'Set track_commit_timestamp = on on the primary and its standbys (a restart); payments committed while it was off have no commit time and are never returned.';
  END IF;
  IF min_decision NOT IN ('review', 'decline') THEN
    RAISE EXCEPTION 'min_decision must be review or decline, not %', min_decision
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF since IN ('infinity', '-infinity') THEN
    RAISE EXCEPTION 'since must be a finite time, not %', since
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF max_transaction_age < interval '0' THEN
    RAISE EXCEPTION 'max_transaction_age must not be negative, not %', max_transaction_age
      USING ERRCODE = 'invalid_parameter_value';
  END IF;

  SELECT p.id INTO floor_id
    FROM @extschema@.payments p
   WHERE pg_catalog.pg_xact_commit_timestamp(p.xmin) <= since - max_transaction_age
   ORDER BY p.id DESC
   LIMIT 1;

  RETURN QUERY
  SELECT '{"event":"flagged"'
         || ',"transaction_id":' || coalesce(pg_catalog.to_json(r.transaction_id::text)::text, 'null')
         || ',"payer_id":' || coalesce(pg_catalog.to_json(r.payer_id::text)::text, 'null')
         || ',"payee_id":' || coalesce(pg_catalog.to_json(r.payee_id::text)::text, 'null')
         || ',"amount":' || coalesce(pg_catalog.to_json(r.amount::text)::text, 'null')
         || ',"currency":' || coalesce(pg_catalog.to_json(r.currency::text)::text, 'null')
         || ',"payment_method_id":' || coalesce(pg_catalog.to_json(r.payment_method_id::text)::text, 'null')
         || ',"created_at":' || @extschema@.stream_time(r.created_at)
         || ',"risk_score":' || CASE WHEN r.risk_score IS NULL
                                      OR r.risk_score IN ('NaN', 'Infinity', '-Infinity') THEN 'null'
                                     ELSE r.risk_score::text END
         || ',"decision":' || pg_catalog.to_json(r.first_decision::text)::text
         || ',"reasons":' || coalesce(pg_catalog.to_json(r.reasons)::text, 'null')
         || ',"xid":null,"lsn":null'
         || ',"commit_time":' || @extschema@.stream_time(r.commit_time)
         || '}'
    FROM (SELECT p.id, p.transaction_id, p.payer_id, p.payee_id, p.amount, p.currency,
                 p.payment_method_id, p.created_at, p.risk_score, p.reasons, c.commit_time,
                 coalesce((SELECT l.old_decision FROM @extschema@.decision_log l
                            WHERE l.transaction_id = p.transaction_id
                            ORDER BY l.id LIMIT 1), p.decision) AS first_decision
            FROM @extschema@.payments p,
                 LATERAL (SELECT pg_catalog.pg_xact_commit_timestamp(p.xmin) AS commit_time) c
           WHERE (floor_id IS NULL OR p.id > floor_id)
             AND c.commit_time > since) r
   WHERE r.first_decision >= min_decision
   ORDER BY r.commit_time, r.id;
END $$;
COMMENT ON FUNCTION @extschema@.flagged_since(timestamptz, @extschema@.decision, interval) IS
  'After a failover: the flagged events (first decision at least min_decision) of the payments whose rows were committed after since, oldest commit first, as the stream writes them (xid and lsn null, commit_time the row''s commit timestamp); needs track_commit_timestamp; max_transaction_age bounds how long a transaction that inserts payments stays open.';
-- It reads every payment: for analysts and a consumer's role it is granted
-- to, not for every role.
REVOKE ALL ON FUNCTION @extschema@.flagged_since(timestamptz, @extschema@.decision, interval) FROM PUBLIC;

------------------------------------------------------------------------------
-- partition_payments() on PostgreSQL 18: 18 records a column's NOT NULL as a
-- constraint of its own (contype 'n'), which the conversion carries over with
-- the column, as every version does; 1.1's function refused it as a
-- constraint a partitioned table can't have.  The function is otherwise 1.1's.
------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION @extschema@.partition_payments(partition_interval interval DEFAULT '1 month',
                                               premake integer DEFAULT 4,
                                               default_partition boolean DEFAULT true,
                                               start_at timestamptz DEFAULT NULL)
  RETURNS TABLE (partition_name regclass, range_start timestamptz, range_end timestamptz,
                 payment_count bigint)
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  nsp oid := (SELECT n.oid FROM pg_namespace n WHERE n.nspname = '@extschema@');
  ext oid := (SELECT e.oid FROM pg_extension e WHERE e.extname = 'p2pay');
  old oid;
  old_kind "char";
  old_owner name;
  old_acl aclitem[];
  old_comment text;
  old_seq regclass;
  seq_last bigint;
  seq_called boolean;
  seq_acl aclitem[];
  new_seq regclass;
  view_def text;
  view_acl aclitem[];
  view_comment text;
  view_owner name;
  cols text;
  first_at timestamptz;
  last_at timestamptz;
  older bigint;
  base timestamptz;
  through timestamptz;
  n_parts bigint;
  r record;
  ddl text[] := '{}';
  grants text[] := '{}';
  triggers text[] := '{}';
  stmt text;
BEGIN
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    RAISE EXCEPTION 'p2pay: only a superuser can partition p2pay.payments'
      USING ERRCODE = 'insufficient_privilege',
            DETAIL = 'The conversion takes the table out of the extension and registers its replacement with pg_dump, which needs a superuser.';
  END IF;
  IF partition_interval IS NULL OR partition_interval < interval '1 day'
     OR partition_interval > interval '1 year' THEN
    RAISE EXCEPTION 'p2pay: partition_interval must lie between 1 day and 1 year'
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('partition_interval was %s.', coalesce(partition_interval::text, 'null'));
  END IF;
  IF premake IS NULL OR premake < 0 OR premake > 1000 THEN
    RAISE EXCEPTION 'p2pay: premake must lie between 0 and 1000'
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('premake was %s.', coalesce(premake::text, 'null'));
  END IF;
  IF default_partition IS NULL THEN
    RAISE EXCEPTION 'p2pay: default_partition must be true or false'
      USING ERRCODE = 'null_value_not_allowed';
  END IF;
  IF start_at IS NOT NULL AND NOT isfinite(start_at) THEN
    RAISE EXCEPTION 'p2pay: start_at must be a finite time'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;

  SELECT c.oid, c.relkind INTO old, old_kind
    FROM pg_class c WHERE c.relnamespace = nsp AND c.relname = 'payments';
  IF old IS NULL THEN
    RAISE EXCEPTION 'p2pay: p2pay.payments does not exist'
      USING ERRCODE = 'undefined_table';
  END IF;
  -- Nothing may write payments, or read it with a plan on the old table,
  -- until the new one is in place.
  EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', old::regclass);

  IF old_kind = 'p' THEN
    RAISE EXCEPTION 'p2pay: p2pay.payments is already partitioned'
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Create new partitions with p2pay.add_payment_partitions() or pg_partman.';
  END IF;
  IF old_kind <> 'r' THEN
    RAISE EXCEPTION 'p2pay: p2pay.payments is not a table'
      USING ERRCODE = 'wrong_object_type';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = old
                    AND d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext
                    AND d.deptype = 'e') THEN
    RAISE EXCEPTION 'p2pay: p2pay.payments is not a member of extension p2pay'
      USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = 'It was taken out of the extension (ALTER EXTENSION p2pay DROP TABLE), as when it is partitioned by hand.';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_attribute a
                  WHERE a.attrelid = old AND a.attname = 'created_at' AND NOT a.attisdropped
                    AND a.atttypid = 'timestamptz'::regtype AND a.attnotnull) THEN
    RAISE EXCEPTION 'p2pay: p2pay.payments has no column created_at of type timestamptz NOT NULL'
      USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = 'The partitions are ranges of created_at.';
  END IF;

  -- What can't be carried over to a partitioned table, or that this
  -- function does not carry over: refused, so that nothing is lost.
  IF EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = old OR i.inhparent = old) THEN
    RAISE EXCEPTION 'p2pay: p2pay.payments takes part in table inheritance'
      USING ERRCODE = 'feature_not_supported';
  END IF;
  FOR r IN SELECT DISTINCT pg_describe_object(d.classid, d.objid, 0) AS what
             FROM pg_depend d
            WHERE d.deptype = 'n'
              AND ((d.refclassid = 'pg_class'::regclass AND d.refobjid = old)
                   OR (d.refclassid = 'pg_type'::regclass
                       AND d.refobjid = (SELECT c.reltype FROM pg_class c WHERE c.oid = old)))
              AND NOT (d.classid = 'pg_rewrite'::regclass
                       AND d.objid = (SELECT w.oid FROM pg_rewrite w JOIN pg_class v ON v.oid = w.ev_class
                                       WHERE v.relnamespace = nsp AND v.relname = 'review_queue'))
              AND NOT (d.classid = 'pg_constraint'::regclass
                       AND EXISTS (SELECT 1 FROM pg_constraint k WHERE k.oid = d.objid AND k.conrelid = old))
  LOOP
    RAISE EXCEPTION 'p2pay: % depends on p2pay.payments', r.what
      USING ERRCODE = 'dependent_objects_still_exist',
            DETAIL = 'Converting payments drops the table; only its own constraints, indexes, triggers and the view p2pay.review_queue are carried over.',
            HINT = 'Drop it, partition payments, and create it again.';
  END LOOP;
  IF EXISTS (SELECT 1 FROM pg_rewrite w WHERE w.ev_class = old) THEN
    RAISE EXCEPTION 'p2pay: p2pay.payments has rules'
      USING ERRCODE = 'feature_not_supported',
            HINT = 'Drop them, partition payments, and create them again.';
  END IF;
  IF EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = old)
     OR (SELECT c.relrowsecurity OR c.relforcerowsecurity FROM pg_class c WHERE c.oid = old) THEN
    RAISE EXCEPTION 'p2pay: p2pay.payments has row-level security'
      USING ERRCODE = 'feature_not_supported',
            HINT = 'Drop its policies and disable row-level security, partition payments, and set them again.';
  END IF;
  IF EXISTS (SELECT 1 FROM pg_publication_rel p WHERE p.prrelid = old) THEN
    RAISE EXCEPTION 'p2pay: p2pay.payments is in a publication'
      USING ERRCODE = 'feature_not_supported',
            HINT = 'ALTER PUBLICATION ... DROP TABLE p2pay.payments, partition payments, and add it again (with publish_via_partition_root if subscribers know payments alone).';
  END IF;
  FOR r IN SELECT i.indexrelid::regclass AS idx
             FROM pg_index i
            WHERE i.indrelid = old
              AND (NOT i.indisvalid
                   OR (i.indisunique AND NOT EXISTS (SELECT 1 FROM pg_constraint k
                                                      WHERE k.conindid = i.indexrelid
                                                        AND k.contype IN ('p', 'u'))))
  LOOP
    RAISE EXCEPTION 'p2pay: index % of p2pay.payments can''t be carried over', r.idx
      USING ERRCODE = 'feature_not_supported',
            DETAIL = 'An invalid index, or a unique index that is not a constraint, is not re-created on the partitioned table.',
            HINT = 'Drop it (or REINDEX it), partition payments, and create it again: a unique index must then include created_at.';
  END LOOP;
  FOR r IN SELECT k.conname FROM pg_constraint k
            WHERE k.conrelid = old AND k.contype NOT IN ('p', 'u', 'f', 'c', 'n')
  LOOP
    RAISE EXCEPTION 'p2pay: constraint % of p2pay.payments can''t be carried over', r.conname
      USING ERRCODE = 'feature_not_supported',
            DETAIL = 'A partitioned table can''t have an exclusion constraint.';
  END LOOP;

  -- The range the partitions must cover.
  EXECUTE format('SELECT min(created_at), max(created_at) FROM %s', old::regclass)
    INTO first_at, last_at;
  base := @extschema@.payment_partition_start(coalesce(start_at, first_at, now()), partition_interval);
  through := @extschema@.payment_partition_start(greatest(now(), last_at), partition_interval);
  -- the end of the partition holding the latest of now() and the newest
  -- payment, then premake more
  WHILE through <= greatest(now(), last_at) LOOP
    through := through + partition_interval;
  END LOOP;
  through := through + partition_interval * premake;
  IF through <= base THEN
    through := base + partition_interval;
  END IF;
  SELECT count(*) INTO n_parts
    FROM generate_series(base, through - partition_interval, partition_interval);
  IF n_parts > 1000 THEN
    RAISE EXCEPTION 'p2pay: partitioning payments from % by % would make % partitions', base, partition_interval, n_parts
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Give a longer partition_interval, or a later start_at with a default partition for the older payments.';
  END IF;
  EXECUTE format('SELECT count(*) FROM %s WHERE created_at < %L', old::regclass, base) INTO older;
  IF older > 0 AND NOT default_partition THEN
    RAISE EXCEPTION 'p2pay: % payments are older than the first partition', older
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('The first partition begins at %s.', base),
            HINT = 'Give an earlier start_at, or default_partition => true.';
  END IF;

  -- Everything carried over, read before the old table goes.
  SELECT pg_get_userbyid(c.relowner), c.relacl, obj_description(c.oid, 'pg_class')
    INTO old_owner, old_acl, old_comment
    FROM pg_class c WHERE c.oid = old;
  old_seq := pg_get_serial_sequence(format('%s', old::regclass), 'id')::regclass;
  IF old_seq IS NOT NULL THEN
    EXECUTE format('SELECT last_value, is_called FROM %s', old_seq) INTO seq_last, seq_called;
    SELECT c.relacl INTO seq_acl FROM pg_class c WHERE c.oid = old_seq;
  END IF;
  SELECT pg_get_viewdef(v.oid), v.relacl, obj_description(v.oid, 'pg_class'), pg_get_userbyid(v.relowner)
    INTO view_def, view_acl, view_comment, view_owner
    FROM pg_class v WHERE v.relnamespace = nsp AND v.relname = 'review_queue' AND v.relkind = 'v';

  -- The primary key and unique constraints, with created_at added to their
  -- keys where they lack it (a partitioned table's unique index must hold
  -- the partition key); then foreign keys and CHECKs as they were.
  FOR r IN SELECT k.conname, k.contype, k.condeferrable, k.condeferred, i.indnullsnotdistinct,
                  (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY x.n)
                     FROM unnest(i.indkey[:i.indnkeyatts - 1]) WITH ORDINALITY x (attnum, n)
                     JOIN pg_attribute a ON a.attrelid = old AND a.attnum = x.attnum) AS keys,
                  (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY x.n)
                     FROM unnest(i.indkey[i.indnkeyatts:]) WITH ORDINALITY x (attnum, n)
                     JOIN pg_attribute a ON a.attrelid = old AND a.attnum = x.attnum) AS included,
                  EXISTS (SELECT 1 FROM unnest(i.indkey[:i.indnkeyatts - 1]) x (attnum)
                            JOIN pg_attribute a ON a.attrelid = old AND a.attnum = x.attnum
                           WHERE a.attname = 'created_at') AS has_created_at
             FROM pg_constraint k JOIN pg_index i ON i.indexrelid = k.conindid
            WHERE k.conrelid = old AND k.contype IN ('p', 'u')
            ORDER BY k.contype, k.conname
  LOOP
    ddl := ddl || format('ALTER TABLE @extschema@.payments ADD CONSTRAINT %I %s%s (%s)%s%s%s',
                         r.conname, CASE r.contype WHEN 'p' THEN 'PRIMARY KEY' ELSE 'UNIQUE' END,
                         CASE WHEN r.indnullsnotdistinct THEN ' NULLS NOT DISTINCT' ELSE '' END,
                         r.keys || CASE WHEN r.has_created_at THEN '' ELSE ', created_at' END,
                         CASE WHEN r.included IS NOT NULL THEN format(' INCLUDE (%s)', r.included) ELSE '' END,
                         CASE WHEN r.condeferrable THEN ' DEFERRABLE' ELSE '' END,
                         CASE WHEN r.condeferred THEN ' INITIALLY DEFERRED' ELSE '' END);
  END LOOP;
  FOR r IN SELECT k.conname, pg_get_constraintdef(k.oid) AS def
             FROM pg_constraint k WHERE k.conrelid = old AND k.contype = 'f' ORDER BY k.conname
  LOOP
    ddl := ddl || format('ALTER TABLE @extschema@.payments ADD CONSTRAINT %I %s', r.conname, r.def);
  END LOOP;
  -- Other indexes as they were (their definitions name p2pay.payments,
  -- which will be the new table).
  FOR r IN SELECT pg_get_indexdef(i.indexrelid) AS def
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            WHERE i.indrelid = old
              AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
            ORDER BY c.relname
  LOOP
    ddl := ddl || r.def;
  END LOOP;
  -- Triggers with their names and enable states.
  FOR r IN SELECT t.tgname, pg_get_triggerdef(t.oid) AS def, t.tgenabled
             FROM pg_trigger t WHERE t.tgrelid = old AND NOT t.tgisinternal ORDER BY t.tgname
  LOOP
    triggers := triggers || r.def;
    IF r.tgenabled <> 'O' THEN
      triggers := triggers || format('ALTER TABLE @extschema@.payments %s TRIGGER %I',
                                     CASE r.tgenabled WHEN 'A' THEN 'ENABLE ALWAYS'
                                                      WHEN 'R' THEN 'ENABLE REPLICA'
                                                      ELSE 'DISABLE' END, r.tgname);
    END IF;
  END LOOP;
  -- Grants on the table, its columns, its sequence and the view, given
  -- again by the current user (a superuser) in the name of the owner.
  SELECT array_agg(format('GRANT %s%s ON %s TO %s%s', g.privilege_type,
                          coalesce(' (' || quote_ident(g.attname) || ')', ''), g.target,
                          CASE g.grantee WHEN 0 THEN 'PUBLIC'
                                         ELSE quote_ident(pg_get_userbyid(g.grantee)) END,
                          CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END))
    INTO grants
    FROM (SELECT '@extschema@.payments' AS target, NULL::name AS attname, a.*
            FROM aclexplode(old_acl) a
          UNION ALL
          SELECT '@extschema@.payments', c.attname, a.*
            FROM pg_attribute c, aclexplode(c.attacl) a
           WHERE c.attrelid = old AND c.attnum > 0 AND NOT c.attisdropped AND c.attacl IS NOT NULL
          UNION ALL
          SELECT 'SEQUENCE @extschema@.payments_id_seq', NULL, a.* FROM aclexplode(seq_acl) a
          UNION ALL
          SELECT '@extschema@.review_queue', NULL, a.* FROM aclexplode(view_acl) a) g
   -- an owner's own privileges on the table, sequence or view come with ownership
   WHERE g.attname IS NOT NULL
      OR g.grantee <> (SELECT c.relowner FROM pg_class c WHERE c.oid = old);
  grants := coalesce(grants, '{}');

  -- The new table: the same columns in the same order (so that a column
  -- keeps its number where none was dropped), defaults, identity, CHECKs,
  -- NOT NULLs, storage, statistics and column comments; no rows, indexes
  -- or triggers yet, so that the copy is scored by nobody and indexed once.
  EXECUTE format('CREATE TABLE @extschema@.payments_partitioned (LIKE %s INCLUDING DEFAULTS'
                 ' INCLUDING CONSTRAINTS INCLUDING IDENTITY INCLUDING GENERATED INCLUDING STORAGE'
                 ' INCLUDING COMPRESSION INCLUDING STATISTICS INCLUDING COMMENTS)'
                 ' PARTITION BY RANGE (created_at)', old::regclass);
  EXECUTE format('ALTER TABLE @extschema@.payments_partitioned OWNER TO %I', old_owner);
  PERFORM @extschema@.create_payment_partitions('@extschema@.payments_partitioned'::regclass,
                                                base, through, partition_interval);
  IF default_partition THEN
    CREATE TABLE @extschema@.payments_default PARTITION OF @extschema@.payments_partitioned DEFAULT;
    EXECUTE format('ALTER TABLE @extschema@.payments_default REPLICA IDENTITY FULL, OWNER TO %I', old_owner);
  END IF;

  SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols
    FROM pg_attribute a
   WHERE a.attrelid = old AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '';
  EXECUTE format('INSERT INTO @extschema@.payments_partitioned (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM %s',
                 cols, cols, old::regclass);
  new_seq := pg_get_serial_sequence('@extschema@.payments_partitioned', 'id')::regclass;
  IF new_seq IS NOT NULL AND seq_last IS NOT NULL THEN
    PERFORM setval(new_seq, seq_last, seq_called);
  END IF;

  -- The old table leaves the extension with its sequence and the view, and
  -- goes; the new one takes its names.
  IF view_def IS NOT NULL THEN
    ALTER EXTENSION p2pay DROP VIEW @extschema@.review_queue;
    DROP VIEW @extschema@.review_queue;
  END IF;
  IF old_seq IS NOT NULL THEN
    EXECUTE format('ALTER EXTENSION p2pay DROP SEQUENCE %s', old_seq);
  END IF;
  EXECUTE format('ALTER EXTENSION p2pay DROP TABLE %s', old::regclass);
  EXECUTE format('DROP TABLE %s', old::regclass);
  ALTER TABLE @extschema@.payments_partitioned RENAME TO payments;
  IF new_seq IS NOT NULL THEN
    ALTER SEQUENCE @extschema@.payments_partitioned_id_seq RENAME TO payments_id_seq;
  END IF;

  FOREACH stmt IN ARRAY ddl || triggers LOOP
    EXECUTE stmt;
  END LOOP;
  -- The stream reads the old row of every update and delete whole.
  ALTER TABLE @extschema@.payments REPLICA IDENTITY FULL;
  EXECUTE format('COMMENT ON TABLE @extschema@.payments IS %L', old_comment);

  IF view_def IS NOT NULL THEN
    EXECUTE format('CREATE VIEW @extschema@.review_queue AS %s', view_def);
    EXECUTE format('ALTER VIEW @extschema@.review_queue OWNER TO %I', view_owner);
    EXECUTE format('COMMENT ON VIEW @extschema@.review_queue IS %L', view_comment);
    ALTER EXTENSION p2pay ADD VIEW @extschema@.review_queue;
  END IF;
  FOREACH stmt IN ARRAY grants LOOP
    EXECUTE stmt;
  END LOOP;

  -- Members of the extension, their rows kept by pg_dump as the old ones'
  -- were (pg_extension_config_dump() can be called from an extension's
  -- script alone: its catalogue entry is written as it writes it).
  ALTER EXTENSION p2pay ADD TABLE @extschema@.payments;
  IF new_seq IS NOT NULL THEN
    ALTER EXTENSION p2pay ADD SEQUENCE @extschema@.payments_id_seq;
  END IF;
  UPDATE pg_extension e
     SET extconfig = e.extconfig || ARRAY['@extschema@.payments'::regclass::oid]
                     || CASE WHEN new_seq IS NULL THEN '{}'::oid[]
                             ELSE ARRAY['@extschema@.payments_id_seq'::regclass::oid] END,
         extcondition = e.extcondition || ARRAY['']
                        || CASE WHEN new_seq IS NULL THEN '{}'::text[] ELSE ARRAY[''] END
   WHERE e.oid = ext;

  RETURN QUERY
    SELECT c.oid::regclass, lo, hi, coalesce(n.cnt, 0)
      FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid
      LEFT JOIN LATERAL (SELECT (regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                              '^FOR VALUES FROM \(''([^'']*)''\) TO \(''([^'']*)''\)$'))
                         AS b) m ON true
      CROSS JOIN LATERAL (SELECT m.b[1]::timestamptz AS lo, m.b[2]::timestamptz AS hi) x
      LEFT JOIN (SELECT p.tableoid, count(*) AS cnt FROM @extschema@.payments p GROUP BY 1) n
        ON n.tableoid = c.oid
     WHERE i.inhparent = '@extschema@.payments'::regclass
     ORDER BY lo NULLS FIRST;
END $$;
COMMENT ON FUNCTION @extschema@.partition_payments(interval, integer, boolean, timestamptz) IS
  'Convert p2pay.payments in place, in one transaction, into a table partitioned by range on created_at: partitions of partition_interval (1 day to 1 year; 1 month by default) from the start of start_at''s interval (by default the oldest payment''s, or now) through the one holding now and premake more (4), plus a default partition for payments outside them (default_partition, true). Rows, columns, identity, constraints, indexes, triggers, grants, the review queue and the extension membership are carried over; the primary key and the unique transaction_id gain created_at.  Superuser only; refused if payments is partitioned already.';
REVOKE ALL ON FUNCTION @extschema@.partition_payments(interval, integer, boolean, timestamptz) FROM PUBLIC;

------------------------------------------------------------------------------
-- One merge trigger for the seeded tables, and the roles' grants as
-- functions.  pg_restore re-inserts the rows of rules, settings, ruleset,
-- currencies and payment_methods after CREATE EXTENSION has seeded them:
-- such an insert updates the row with the same key instead.  merge_row()
-- does it for the five, told the key by its trigger's arguments, in place
-- of one function per table.  grant_app(), grant_analyst() and
-- grant_admin() give a role what README "Privileges" grants the three usual
-- roles; run again after an update, they cover what the update added.
------------------------------------------------------------------------------

-- The trigger's arguments: the key columns, whose values find the row to
-- update (the singletons' key is their column singleton); then any
-- 'COLUMN = NULL', a column the merge empties rather than copies (ruleset's
-- xact names a transaction of the database the row came from).  Every
-- other column of the row takes the inserted value.
CREATE FUNCTION @extschema@.merge_row() RETURNS trigger
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  arg text;
  nulled text[] := '{}';
  keys text[] := '{}';
  matches text;
  sets text;
  present boolean;
BEGIN
  IF TG_RELID OPERATOR(pg_catalog.<>) ALL (ARRAY['@extschema@.rules'::pg_catalog.regclass,
                                                  '@extschema@.settings'::pg_catalog.regclass,
                                                  '@extschema@.ruleset'::pg_catalog.regclass,
                                                  '@extschema@.currencies'::pg_catalog.regclass,
                                                  '@extschema@.payment_methods'::pg_catalog.regclass]::pg_catalog.oid[]) THEN
    RAISE EXCEPTION 'trigger function p2pay.merge_row() can only run on p2pay.rules, p2pay.settings, p2pay.ruleset, p2pay.currencies and p2pay.payment_methods'
      USING ERRCODE = 'wrong_object_type',
            HINT = 'p2pay''s trigger functions keep p2pay''s own tables; drop this trigger.';
  END IF;
  IF TG_WHEN OPERATOR(pg_catalog.<>) 'BEFORE' OR TG_LEVEL OPERATOR(pg_catalog.<>) 'ROW'
     OR TG_OP OPERATOR(pg_catalog.<>) 'INSERT' OR TG_NARGS OPERATOR(pg_catalog.=) 0 THEN
    RAISE EXCEPTION 'trigger function p2pay.merge_row() must be fired BEFORE INSERT FOR EACH ROW, with key columns as arguments'
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'p2pay''s trigger functions keep p2pay''s own tables; drop this trigger.';
  END IF;
  FOREACH arg IN ARRAY TG_ARGV LOOP
    IF arg OPERATOR(pg_catalog.~) '^[a-z_][a-z0-9_]* = NULL$' THEN
      nulled := nulled OPERATOR(pg_catalog.||) pg_catalog.split_part(arg, ' ', 1);
    ELSE
      keys := keys OPERATOR(pg_catalog.||) arg;
    END IF;
  END LOOP;

  SELECT pg_catalog.string_agg(pg_catalog.format('t.%I OPERATOR(pg_catalog.=) ($1).%I', k, k), ' AND ')
    INTO matches
    FROM pg_catalog.unnest(keys) k;
  -- Looked for first, as the inserting role: one that may insert and not
  -- update (an admin adding a currency) inserts a new key as before.
  EXECUTE pg_catalog.format('SELECT EXISTS (SELECT FROM %I.%I t WHERE %s)',
                            TG_TABLE_SCHEMA, TG_TABLE_NAME, matches)
    INTO present USING NEW;
  IF NOT present THEN
    RETURN NEW;
  END IF;
  SELECT pg_catalog.string_agg(
           CASE WHEN a.attname OPERATOR(pg_catalog.=) ANY (nulled)
                THEN pg_catalog.format('%I = NULL', a.attname)
                ELSE pg_catalog.format('%I = ($1).%I', a.attname, a.attname) END,
           ', ' ORDER BY a.attnum)
    INTO sets
    FROM pg_catalog.pg_attribute a
   WHERE a.attrelid OPERATOR(pg_catalog.=) TG_RELID AND a.attnum OPERATOR(pg_catalog.>) 0
     AND NOT a.attisdropped AND a.attgenerated OPERATOR(pg_catalog.=) ''
     AND a.attname OPERATOR(pg_catalog.<>) ALL (keys::name[]);
  EXECUTE pg_catalog.format('UPDATE %I.%I t SET %s WHERE %s', TG_TABLE_SCHEMA, TG_TABLE_NAME, sets, matches)
    USING NEW;
  RETURN NULL;
END $$;
COMMENT ON FUNCTION @extschema@.merge_row() IS
  'BEFORE INSERT trigger on rules, settings, ruleset, currencies and payment_methods: inserting a row whose key (the trigger''s arguments) exists updates that row with the inserted values instead (this is how pg_restore brings back changes to the seeded rows); an argument ''COLUMN = NULL'' empties that column.';
-- A trigger function of p2pay's own, like the others: nobody needs EXECUTE
-- on it to fire it, and no role may attach it to a table of its own.
REVOKE ALL ON FUNCTION @extschema@.merge_row() FROM PUBLIC;

-- The same triggers, on merge_row(); they still fire in every replication
-- role, so that a restore with session_replication_role = replica merges.
CREATE OR REPLACE TRIGGER rules_merge BEFORE INSERT ON @extschema@.rules
  FOR EACH ROW EXECUTE FUNCTION @extschema@.merge_row('name');
CREATE OR REPLACE TRIGGER settings_merge BEFORE INSERT ON @extschema@.settings
  FOR EACH ROW EXECUTE FUNCTION @extschema@.merge_row('singleton');
CREATE OR REPLACE TRIGGER ruleset_merge BEFORE INSERT ON @extschema@.ruleset
  FOR EACH ROW EXECUTE FUNCTION @extschema@.merge_row('singleton', 'xact = NULL');
CREATE OR REPLACE TRIGGER currencies_merge BEFORE INSERT ON @extschema@.currencies
  FOR EACH ROW EXECUTE FUNCTION @extschema@.merge_row('code');
CREATE OR REPLACE TRIGGER payment_methods_merge BEFORE INSERT ON @extschema@.payment_methods
  FOR EACH ROW EXECUTE FUNCTION @extschema@.merge_row('id');
ALTER TABLE @extschema@.rules ENABLE ALWAYS TRIGGER rules_merge;
ALTER TABLE @extschema@.settings ENABLE ALWAYS TRIGGER settings_merge;
ALTER TABLE @extschema@.ruleset ENABLE ALWAYS TRIGGER ruleset_merge;
ALTER TABLE @extschema@.currencies ENABLE ALWAYS TRIGGER currencies_merge;
ALTER TABLE @extschema@.payment_methods ENABLE ALWAYS TRIGGER payment_methods_merge;

DROP FUNCTION @extschema@.merge_rule();
DROP FUNCTION @extschema@.merge_settings();
DROP FUNCTION @extschema@.merge_ruleset();
DROP FUNCTION @extschema@.merge_currency();
DROP FUNCTION @extschema@.merge_payment_method();

-- The three roles of README "Privileges".  Each grants by name what the
-- role needs, so that running it again after ALTER EXTENSION p2pay UPDATE
-- gives the role the tables and functions the update added (a GRANT ... ON
-- ALL TABLES run by hand covers only the tables that existed then).  The
-- grants are cumulative and idempotent; a role that does not exist is
-- PostgreSQL's error (42704), a null role 22004.  Run by the extension's
-- owner or a superuser: EXECUTE is revoked from PUBLIC.

CREATE FUNCTION @extschema@.grant_app(role name) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA %I TO %I', '@extschema@', role);
  EXECUTE pg_catalog.format('GRANT SELECT ON %I.currencies, %I.payment_methods TO %I',
                            '@extschema@', '@extschema@', role);
  EXECUTE pg_catalog.format(
    'GRANT SELECT, INSERT ON %I.users, %I.user_payment_methods, %I.payments TO %I',
    '@extschema@', '@extschema@', '@extschema@', role);
END $$;
REVOKE ALL ON FUNCTION @extschema@.grant_app(name) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.grant_app(name) IS
  'Give a role what an application needs (README "Privileges", p2pay_app): usage of the schema, SELECT on currencies and payment_methods, SELECT and INSERT on users, user_payment_methods and payments; no right on rules, thresholds, lists or decisions.  Idempotent; run by the extension''s owner or a superuser, again after an update of the extension.';

CREATE FUNCTION @extschema@.grant_analyst(role name) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA %I TO %I', '@extschema@', role);
  EXECUTE pg_catalog.format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO %I', '@extschema@', role);
  EXECUTE pg_catalog.format('GRANT SELECT, INSERT, UPDATE ON %I.fraud_labels TO %I', '@extschema@', role);
  EXECUTE pg_catalog.format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.review_claims TO %I',
                            '@extschema@', role);
  EXECUTE pg_catalog.format(
    'GRANT EXECUTE ON FUNCTION %1$I.resolve(uuid, %1$I.decision, text), '
    '%1$I.score(uuid, uuid, numeric, char, uuid, timestamptz), '
    '%1$I.backtest(timestamptz, timestamptz, jsonb), '
    '%1$I.backtest_payments(timestamptz, timestamptz, jsonb), %1$I.rule_stats_read(), '
    '%1$I.decision_stats_read(), %1$I.flagged_since(timestamptz, %1$I.decision, interval) TO %2$I',
    '@extschema@', role);
END $$;
REVOKE ALL ON FUNCTION @extschema@.grant_analyst(name) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.grant_analyst(name) IS
  'Give a role what an analyst needs (README "Privileges", p2pay_analyst): usage of the schema, SELECT on every table and view of the schema, fraud_labels to label, review_claims to claim reviews, and EXECUTE on resolve(), score(), backtest(), backtest_payments(), rule_stats_read(), decision_stats_read() and flagged_since().  Idempotent; run by the extension''s owner or a superuser, again after an update of the extension (SELECT covers the tables that exist when it runs).';

CREATE FUNCTION @extschema@.grant_admin(role name) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  EXECUTE pg_catalog.format('GRANT UPDATE ON %I.rules, %I.settings TO %I',
                            '@extschema@', '@extschema@', role);
  EXECUTE pg_catalog.format(
    'GRANT INSERT, UPDATE, DELETE ON %I.blocklist, %I.allowlist, %I.snoozes TO %I',
    '@extschema@', '@extschema@', '@extschema@', role);
  EXECUTE pg_catalog.format('GRANT INSERT ON %I.currencies, %I.payment_methods TO %I',
                            '@extschema@', '@extschema@', role);
  EXECUTE pg_catalog.format(
    'GRANT EXECUTE ON FUNCTION %1$I.snooze(text, uuid, timestamptz, text), %1$I.rule_stats_reset(), '
    '%1$I.decision_stats_reset() TO %2$I',
    '@extschema@', role);
END $$;
REVOKE ALL ON FUNCTION @extschema@.grant_admin(name) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.grant_admin(name) IS
  'Give a role what an admin needs besides an analyst''s rights (README "Privileges", p2pay_admin): UPDATE on rules and settings, INSERT, UPDATE and DELETE on blocklist, allowlist and snoozes, INSERT on currencies and payment_methods, EXECUTE on snooze(), rule_stats_reset() and decision_stats_reset().  It does not make the role an analyst, nor give it usage of the schema: an admin role is usually also given grant_analyst() or membership in an analyst role, which give both.  Idempotent; run by the extension''s owner or a superuser, again after an update of the extension.';

------------------------------------------------------------------------------
-- Backtests payment by payment
------------------------------------------------------------------------------

-- The replay of backtest(), a row per payment: which payments a rule change
-- would change, and (with the rules as they are) a check that the replay
-- decides what the trigger decided.  Revoked from PUBLIC like backtest(): it
-- reads every payment of the range as the owner of p2pay.payments.
CREATE FUNCTION @extschema@.backtest_payments("from" timestamptz, "to" timestamptz,
  rules jsonb DEFAULT NULL,
  OUT transaction_id uuid, OUT created_at timestamptz,
  OUT risk_score double precision, OUT decision @extschema@.decision, OUT reasons text[],
  OUT shadow_risk_score double precision, OUT shadow_decision @extschema@.decision,
  OUT shadow_reasons text[],
  OUT risk_score_at_time double precision, OUT decision_at_time @extschema@.decision,
  OUT reasons_at_time text[], OUT shadow_risk_score_at_time double precision,
  OUT shadow_decision_at_time @extschema@.decision, OUT shadow_reasons_at_time text[])
  RETURNS SETOF record
  AS 'MODULE_PATHNAME', 'p2pay_backtest_payments' LANGUAGE C VOLATILE PARALLEL UNSAFE;
REVOKE ALL ON FUNCTION @extschema@.backtest_payments(timestamptz, timestamptz, jsonb) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.backtest_payments(timestamptz, timestamptz, jsonb) IS
  'The replay of backtest() (the payments created in [from, to), in created_at order, through the current rules or those rules changed by the rule rows given as JSON), a row per payment: the score, decision and reasons it would get, active and shadow, next to those it was given at the time (decision_at_time: before any analyst''s resolution).  Writes nothing.';

------------------------------------------------------------------------------
-- rebuild_state() through the trigger's recording
------------------------------------------------------------------------------

-- The state is emptied and every stored payment recorded in it through the
-- trigger's own recording (C), rather than counted a second time in SQL, so
-- that the state has one derivation.  The grants stay as they were.
CREATE OR REPLACE FUNCTION @extschema@.rebuild_state() RETURNS void
  AS 'MODULE_PATHNAME', 'p2pay_rebuild_state' LANGUAGE C VOLATILE PARALLEL UNSAFE
  SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.rebuild_state() IS
  'Count the per-account state again from the stored payments, after loading payments with the trigger off: empties it and records every payment through the trigger''s own recording.';

-- Statements that insert payments: the account state a statement's payments
-- change is kept in memory from its second payment on and written when the
-- statement ends (each state row once, not once per payment).
CREATE FUNCTION @extschema@.batch_payments() RETURNS trigger
  AS 'MODULE_PATHNAME', 'p2pay_batch_payments' LANGUAGE C;
COMMENT ON FUNCTION @extschema@.batch_payments() IS
  'BEFORE and AFTER INSERT statement trigger on payments: a statement''s payments keep the account state they change in memory, and its end writes it.';
REVOKE ALL ON FUNCTION @extschema@.batch_payments() FROM PUBLIC;
CREATE TRIGGER payments_batch_begin BEFORE INSERT ON @extschema@.payments
  FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.batch_payments();
CREATE TRIGGER payments_batch_end AFTER INSERT ON @extschema@.payments
  FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.batch_payments();

------------------------------------------------------------------------------
-- A payer's amounts per hour in its account_daily rows
------------------------------------------------------------------------------

-- payer_hourly's buckets move into the payer's row of their UTC day: the
-- hours with a sum other than 0, ascending, and their sums.  With the state
-- exact every bucket has its day's row (the payment that made the bucket
-- made the row); buckets whose day prune_state() deleted (only with a
-- payer_velocity_amount window over 30 days) are read by no rule from the
-- day's row on and are dropped.
ALTER TABLE @extschema@.account_daily
  ADD COLUMN out_hours smallint[] NOT NULL DEFAULT '{}',
  ADD COLUMN out_hour_sums numeric[] NOT NULL DEFAULT '{}';
COMMENT ON TABLE @extschema@.account_daily IS
  'Each account''s activity per UTC day (payments made, new payees, new payers): its normal level, against which velocity, fan-out and fan-in are compared; and the amounts it paid per hour of the day, which payer_velocity_amount sums.';
COMMENT ON COLUMN @extschema@.account_daily.out_hours IS
  'The hours of the UTC day (0 to 23, ascending) in which the account''s payments as payer sum to other than 0.';
COMMENT ON COLUMN @extschema@.account_daily.out_hour_sums IS
  'The sum of amount_base of the account''s payments as payer in each hour of out_hours, in its order.';
UPDATE @extschema@.account_daily d
   SET out_hours = h.hours, out_hour_sums = h.sums
  FROM (SELECT payer_id, (hour AT TIME ZONE 'UTC')::date AS day,
               array_agg(extract(hour FROM hour AT TIME ZONE 'UTC')::smallint ORDER BY hour) AS hours,
               array_agg(total ORDER BY hour) AS sums
          FROM @extschema@.payer_hourly
         WHERE total OPERATOR(pg_catalog.<>) 0
         GROUP BY 1, 2) h
 WHERE d.user_id OPERATOR(pg_catalog.=) h.payer_id AND d.day OPERATOR(pg_catalog.=) h.day;
ALTER EXTENSION p2pay DROP TABLE @extschema@.payer_hourly;
DROP TABLE @extschema@.payer_hourly;

-- Truncating payments empties the state derived from them, so that no
-- aggregate counts a payment that is gone.
CREATE OR REPLACE FUNCTION @extschema@.truncate_state() RETURNS trigger
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF TG_RELID OPERATOR(pg_catalog.<>) ALL (ARRAY['@extschema@.payments'::pg_catalog.regclass]::pg_catalog.oid[]) THEN
    RAISE EXCEPTION 'trigger function p2pay.truncate_state() can only run on p2pay.payments'
      USING ERRCODE = 'wrong_object_type',
            HINT = 'p2pay''s trigger functions keep p2pay''s own tables; drop this trigger.';
  END IF;
  TRUNCATE @extschema@.account_stats, @extschema@.pair_stats, @extschema@.account_daily;
  RETURN NULL;
END $$;

-- The daily rows accumulate with history, though a rule reads only a day
-- among the last 30 (plus each account's first day, which says how much
-- history it has) and the hours inside payer_velocity_amount's window.
-- prune_state() deletes the days that no payment created after now() - keep
-- reads, keeping every account's first day, so that the state stays the
-- size of the accounts' recent activity.  Run it daily (pg_cron, say).
-- hours is how many hours of the payers' amounts went with the days
-- deleted, days how many days.
CREATE OR REPLACE FUNCTION @extschema@.prune_state(keep interval DEFAULT '31 days',
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
  -- a payment at the horizon reads the 30 days before its own, and the
  -- hours from the start of the hour its velocity window begins in
  WITH gone AS (
    DELETE FROM @extschema@.account_daily d
     WHERE d.day < least((horizon AT TIME ZONE 'UTC')::date - 30,
                         (date_trunc('hour', horizon - velocity_window, 'UTC') AT TIME ZONE 'UTC')::date)
       AND EXISTS (SELECT 1 FROM @extschema@.account_daily f
                    WHERE f.user_id = d.user_id AND f.day < d.day)
    RETURNING cardinality(d.out_hours) AS n)
  SELECT coalesce(sum(n), 0), count(*) INTO hours, days FROM gone;
END
$$;
COMMENT ON FUNCTION @extschema@.prune_state(interval) IS
  'Delete the daily rows (with their hours) that no payment created in the last keep (at least 31 days) reads, keeping each account''s first day; returns how many hours and days went.';
REVOKE ALL ON FUNCTION @extschema@.prune_state(interval) FROM PUBLIC;

------------------------------------------------------------------------------
-- The small tables the scoring keeps in memory (src/refs.c): each announces
-- every change of its rows to every session, as rules and settings do.
------------------------------------------------------------------------------
COMMENT ON FUNCTION @extschema@.config_changed() IS
  'AFTER trigger on rules, settings and ruleset, and on the small tables the scoring keeps in memory (currencies, payment_methods, ruleset, blocklist, allowlist, snoozes): tells every session to reload them.';
DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['currencies', 'payment_methods', 'ruleset', 'blocklist', 'allowlist',
                           'snoozes'] LOOP
    EXECUTE pg_catalog.format(
      'CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON @extschema@.%I
         FOR EACH ROW EXECUTE FUNCTION @extschema@.config_changed()', t || '_announce', t);
    EXECUTE pg_catalog.format(
      'CREATE TRIGGER %I AFTER TRUNCATE ON @extschema@.%I
         FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.config_changed()',
      t || '_announce_truncate', t);
    EXECUTE pg_catalog.format('ALTER TABLE @extschema@.%I ENABLE ALWAYS TRIGGER %I',
                              t, t || '_announce');
    EXECUTE pg_catalog.format('ALTER TABLE @extschema@.%I ENABLE ALWAYS TRIGGER %I',
                              t, t || '_announce_truncate');
  END LOOP;
END
$$;
