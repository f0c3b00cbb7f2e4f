-- p2pay 1.2: ALTER EXTENSION p2pay UPDATE TO '1.2' from 1.1.
\echo Use "ALTER EXTENSION p2pay UPDATE TO '1.2'" to load this file. \quit

------------------------------------------------------------------------------
-- The HTTP API's payments (p2pay-http).  The daemon passes a request's body
-- as jsonb and sends back the jsonb these return: the database checks the
-- fields, and the caller's privileges apply as to any SQL, since the
-- functions run as the caller (the role the request authenticated as).
-- Errors name the field in the column field of the error, which p2pay-http
-- reports as "column".
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
  'HTTP API: the payment with this transaction_id as JSON (its columns a client sees), or null.';

-- Insert a payment given as a JSON object of its columns, and return it
-- scored.  Every field is checked before anything is stored: an unknown
-- field or one of the wrong JSON type is 22023, a missing required one
-- 23502, a value that is not of the column's type 22P02 (or the type's own
-- error), each naming the field.
CREATE FUNCTION @extschema@.api_create_payment(body jsonb) RETURNS jsonb
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  fields  CONSTANT text[] := ARRAY['payer_id', 'payee_id', 'amount', 'currency',
                                   'payment_method_id', 'transaction_id', 'created_at'];
  kinds   CONSTANT text[] := ARRAY['string', 'string', 'number', 'string',
                                   'string', 'string', 'string'];
  required CONSTANT int := 5;  -- the first five
  k       text;
  i       int;
  field   text;
  payer   uuid;
  payee   uuid;
  amount  numeric;
  currency char(3);
  method  uuid;
  tid     uuid;
  at      timestamptz;
BEGIN
  IF body IS NULL OR jsonb_typeof(body) <> 'object' THEN
    RAISE EXCEPTION 'p2pay: a payment is a JSON object'
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Give {"payer_id": ..., "payee_id": ..., "amount": ..., "currency": ..., "payment_method_id": ...}.';
  END IF;
  FOR k IN SELECT jsonb_object_keys(body) LOOP
    IF NOT k = ANY (fields) THEN
      RAISE EXCEPTION 'p2pay: a payment has no field "%"', left(k, 64)
        USING ERRCODE = 'invalid_parameter_value', COLUMN = left(k, 64),
              HINT = 'Its fields are ' || array_to_string(fields, ', ') || '.';
    END IF;
  END LOOP;
  FOR i IN 1 .. array_length(fields, 1) LOOP
    field := fields[i];
    IF NOT body ? field OR jsonb_typeof(body -> field) = 'null' THEN
      CONTINUE WHEN i > required;
      RAISE EXCEPTION 'p2pay: field "%" of a payment is missing', field
        USING ERRCODE = 'not_null_violation', COLUMN = field;
    END IF;
    -- an amount may be a JSON number or a string, as numeric's text is exact
    IF jsonb_typeof(body -> field) <> kinds[i]
       AND NOT (field = 'amount' AND jsonb_typeof(body -> field) = 'string') THEN
      RAISE EXCEPTION 'p2pay: field "%" of a payment must be a JSON %', field, kinds[i]
        USING ERRCODE = 'invalid_parameter_value', COLUMN = field,
              DETAIL = 'It is a JSON ' || jsonb_typeof(body -> field) || '.';
    END IF;
  END LOOP;

  -- The values, each in its column's type; an error names the field.
  BEGIN
    field := 'payer_id';          payer := (body ->> 'payer_id')::uuid;
    field := 'payee_id';          payee := (body ->> 'payee_id')::uuid;
    field := 'amount';            amount := (body ->> 'amount')::numeric;
    field := 'currency';          currency := (body ->> 'currency')::char(3);
    field := 'payment_method_id'; method := (body ->> 'payment_method_id')::uuid;
    field := 'transaction_id';    tid := (body ->> 'transaction_id')::uuid;
    field := 'created_at';        at := (body ->> 'created_at')::timestamptz;
  EXCEPTION WHEN data_exception THEN
    DECLARE
      state text;
      msg   text;
    BEGIN
      GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
      RAISE EXCEPTION 'p2pay: field "%" of a payment: %', field, msg
        USING ERRCODE = state, COLUMN = field;
    END;
  END;
  IF length(body ->> 'currency') <> 3 THEN
    RAISE EXCEPTION 'p2pay: field "currency" of a payment must be a three-letter code'
      USING ERRCODE = 'invalid_parameter_value', COLUMN = 'currency';
  END IF;

  INSERT INTO @extschema@.payments (transaction_id, payer_id, payee_id, amount, currency,
                                    payment_method_id, created_at)
  VALUES (coalesce(tid, gen_random_uuid()), payer, payee, amount, currency, method,
          coalesce(at, now()))
  RETURNING transaction_id INTO tid;
  RETURN @extschema@.api_payment(tid);
END $$;
COMMENT ON FUNCTION @extschema@.api_create_payment(jsonb) IS
  'HTTP API: insert the payment given as a JSON object of its columns (payer_id, payee_id, amount, currency, payment_method_id; transaction_id and created_at optional), scored by the trigger, and return it as api_payment() shows it.';

-- The review queue, oldest first, a page at a time: up to lim payments
-- after the one whose transaction_id is after (keyset on created_at and
-- transaction_id, so that a page stays right while others are resolved),
-- each with its reasons.
CREATE FUNCTION @extschema@.api_reviews(lim integer DEFAULT 50, after uuid DEFAULT NULL)
  RETURNS jsonb
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  after_at timestamptz;
  result   jsonb;
BEGIN
  IF lim IS NULL OR lim < 1 OR lim > 1000 THEN
    RAISE EXCEPTION 'p2pay: limit must be from 1 to 1000'
      USING ERRCODE = 'invalid_parameter_value', COLUMN = 'limit';
  END IF;
  IF after IS NOT NULL THEN
    SELECT p.created_at INTO after_at
      FROM @extschema@.payments p WHERE p.transaction_id OPERATOR(pg_catalog.=) after;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'p2pay: no payment has transaction_id %', after
        USING ERRCODE = 'no_data_found', COLUMN = 'after';
    END IF;
  END IF;
  SELECT coalesce(jsonb_agg(jsonb_build_object(
           'transaction_id', q.transaction_id, 'created_at', q.created_at,
           'payer_id', q.payer_id, 'payee_id', q.payee_id, 'amount', q.amount,
           'currency', q.currency, 'amount_base', q.amount_base, 'risk_score', q.risk_score,
           'reasons', q.reasons, 'ruleset_version', q.ruleset_version,
           'waiting_seconds', extract(epoch FROM q.waiting))
           ORDER BY q.created_at, q.transaction_id), '[]')
    INTO result
    FROM (SELECT r.* FROM @extschema@.review_queue r
           WHERE after IS NULL
              OR (r.created_at, r.transaction_id) > (after_at, after)
           ORDER BY r.created_at, r.transaction_id
           LIMIT lim) q;
  RETURN result;
END $$;
COMMENT ON FUNCTION @extschema@.api_reviews(integer, uuid) IS
  'HTTP API: the review queue as a JSON array, oldest first, lim payments after the transaction_id after.';

-- Resolve a review with a JSON body {"decision": "approve" | "decline",
-- "note": "..."}: resolve(), which refuses a payment no longer under review
-- (55000), so two analysts can't both resolve one.  Returns the payment.
CREATE FUNCTION @extschema@.api_resolve(transaction_id uuid, body jsonb) RETURNS jsonb
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  k text;
BEGIN
  IF body IS NULL OR jsonb_typeof(body) <> 'object' THEN
    RAISE EXCEPTION 'p2pay: a resolution is a JSON object'
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Give {"decision": "approve" or "decline", "note": "..."}.';
  END IF;
  FOR k IN SELECT jsonb_object_keys(body) LOOP
    IF k NOT IN ('decision', 'note') THEN
      RAISE EXCEPTION 'p2pay: a resolution has no field "%"', left(k, 64)
        USING ERRCODE = 'invalid_parameter_value', COLUMN = left(k, 64),
              HINT = 'Its fields are decision and note.';
    END IF;
  END LOOP;
  IF jsonb_typeof(body -> 'decision') IS DISTINCT FROM 'string' THEN
    RAISE EXCEPTION 'p2pay: field "decision" of a resolution must be "approve" or "decline"'
      USING ERRCODE = 'invalid_parameter_value', COLUMN = 'decision';
  END IF;
  IF body ? 'note' AND jsonb_typeof(body -> 'note') NOT IN ('string', 'null') THEN
    RAISE EXCEPTION 'p2pay: field "note" of a resolution must be a JSON string'
      USING ERRCODE = 'invalid_parameter_value', COLUMN = 'note';
  END IF;
  IF body ->> 'decision' NOT IN ('approve', 'decline') THEN
    RAISE EXCEPTION 'p2pay: field "decision" of a resolution must be "approve" or "decline"'
      USING ERRCODE = 'invalid_parameter_value', COLUMN = 'decision',
            DETAIL = 'It is "' || left(body ->> 'decision', 64) || '".';
  END IF;
  PERFORM @extschema@.resolve(api_resolve.transaction_id,
                              (body ->> 'decision')::@extschema@.decision, body ->> 'note');
  RETURN @extschema@.api_payment(api_resolve.transaction_id);
END $$;
COMMENT ON FUNCTION @extschema@.api_resolve(uuid, jsonb) IS
  'HTTP API: resolve a review with {"decision": "approve" | "decline", "note": "..."} through resolve() (55000 once it is no longer under review), and return the payment.';
