-- The HTTP API's SQL side: api_create_payment() takes a request's JSON body
-- and returns the scored payment; every field is checked, by name, before
-- anything is stored; privileges are the caller's.
CREATE EXTENSION p2pay;
SET TimeZone = 'UTC';
INSERT INTO p2pay.users (id, created_at) VALUES
  ('00000000-0000-4000-8000-00000000000a', '2020-01-01'),
  ('00000000-0000-4000-8000-00000000000b', '2020-01-01');
INSERT INTO p2pay.user_payment_methods VALUES
  ('00000000-0000-4000-8000-00000000000a', '00000000-0000-4000-8000-000000000001');

-- A payment in, the scored payment out, with the columns' names.
SELECT p2pay.api_create_payment('{"payer_id": "00000000-0000-4000-8000-00000000000a",
  "payee_id": "00000000-0000-4000-8000-00000000000b", "amount": 15000, "currency": "USD",
  "payment_method_id": "00000000-0000-4000-8000-000000000001",
  "transaction_id": "aaaaaaaa-0000-4000-8000-000000000001",
  "created_at": "2026-03-02T10:00:00Z"}') AS payment;
SELECT p2pay.api_payment('aaaaaaaa-0000-4000-8000-000000000001') AS payment;
SELECT p2pay.api_payment('aaaaaaaa-0000-4000-8000-000000000099') AS missing;
-- the amount as a string is exact; transaction_id and created_at may be left out
SELECT payment - 'transaction_id' - 'created_at' AS payment,
       (payment ->> 'created_at')::timestamptz > now() - interval '1 minute' AS now_by_default
  FROM p2pay.api_create_payment('{"payer_id": "00000000-0000-4000-8000-00000000000a",
         "payee_id": "00000000-0000-4000-8000-00000000000b", "amount": "0.10", "currency": "EUR",
         "payment_method_id": "00000000-0000-4000-8000-000000000001"}') AS payment;

-- Each refusal: its SQLSTATE, message and the field it names; nothing stored.
CREATE FUNCTION refusal(body text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  state text; msg text; col text;
BEGIN
  PERFORM p2pay.api_create_payment(body::jsonb);
  RETURN 'stored';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, col = COLUMN_NAME;
  -- a unique constraint's name depends on whether payments is partitioned
  RETURN state || ' [' || coalesce(col, '') || '] ' || regexp_replace(msg, 'constraint ".*"', 'constraint');
END $$;
-- (a transaction_id is unique with its created_at when payments is partitioned)
SELECT refusal(b) FROM (VALUES
  ('[1, 2]'),
  ('null'),
  ('{"payer_id": "00000000-0000-4000-8000-00000000000a", "payee": 1}'),
  ('{"payer_id": "00000000-0000-4000-8000-00000000000a", "amount": 5, "currency": "USD",
     "payment_method_id": "00000000-0000-4000-8000-000000000001"}'),
  ('{"payer_id": "00000000-0000-4000-8000-00000000000a", "payee_id": null, "amount": 5,
     "currency": "USD", "payment_method_id": "00000000-0000-4000-8000-000000000001"}'),
  ('{"payer_id": 7, "payee_id": "00000000-0000-4000-8000-00000000000b", "amount": 5,
     "currency": "USD", "payment_method_id": "00000000-0000-4000-8000-000000000001"}'),
  ('{"payer_id": "not-a-uuid", "payee_id": "00000000-0000-4000-8000-00000000000b", "amount": 5,
     "currency": "USD", "payment_method_id": "00000000-0000-4000-8000-000000000001"}'),
  ('{"payer_id": "00000000-0000-4000-8000-00000000000a", "payee_id": "00000000-0000-4000-8000-00000000000b",
     "amount": "five", "currency": "USD", "payment_method_id": "00000000-0000-4000-8000-000000000001"}'),
  ('{"payer_id": "00000000-0000-4000-8000-00000000000a", "payee_id": "00000000-0000-4000-8000-00000000000b",
     "amount": true, "currency": "USD", "payment_method_id": "00000000-0000-4000-8000-000000000001"}'),
  ('{"payer_id": "00000000-0000-4000-8000-00000000000a", "payee_id": "00000000-0000-4000-8000-00000000000b",
     "amount": 5, "currency": "USDX", "payment_method_id": "00000000-0000-4000-8000-000000000001"}'),
  ('{"payer_id": "00000000-0000-4000-8000-00000000000a", "payee_id": "00000000-0000-4000-8000-00000000000b",
     "amount": 5, "currency": "USD", "payment_method_id": "00000000-0000-4000-8000-000000000001",
     "created_at": "yesterday-ish"}'),
  ('{"payer_id": "00000000-0000-4000-8000-00000000000a", "payee_id": "00000000-0000-4000-8000-0000000000ff",
     "amount": 5, "currency": "USD", "payment_method_id": "00000000-0000-4000-8000-000000000001"}'),
  ('{"payer_id": "00000000-0000-4000-8000-00000000000a", "payee_id": "00000000-0000-4000-8000-00000000000b",
     "amount": -5, "currency": "USD", "payment_method_id": "00000000-0000-4000-8000-000000000001"}'),
  ('{"payer_id": "00000000-0000-4000-8000-00000000000a", "payee_id": "00000000-0000-4000-8000-00000000000b",
     "amount": 5, "currency": "USD", "payment_method_id": "00000000-0000-4000-8000-000000000001",
     "transaction_id": "aaaaaaaa-0000-4000-8000-000000000001", "created_at": "2026-03-02T10:00:00Z"}')
) AS t (b);
SELECT count(*) AS stored FROM p2pay.payments;

-- The caller's privileges: a role that may not insert payments can't
-- through the API either.
CREATE ROLE regress_p2pay_api_reader;
GRANT USAGE ON SCHEMA p2pay TO regress_p2pay_api_reader;
SET ROLE regress_p2pay_api_reader;
SELECT refusal('{"payer_id": "00000000-0000-4000-8000-00000000000a",
  "payee_id": "00000000-0000-4000-8000-00000000000b", "amount": 5, "currency": "USD",
  "payment_method_id": "00000000-0000-4000-8000-000000000001"}');
RESET ROLE;
REVOKE USAGE ON SCHEMA p2pay FROM regress_p2pay_api_reader;
DROP ROLE regress_p2pay_api_reader;

-- The review queue a page at a time, oldest first; a resolution through
-- resolve(), checked by field; a second resolution of one payment refused.
SELECT p2pay.api_create_payment(format('{"payer_id": "00000000-0000-4000-8000-00000000000a",
  "payee_id": "00000000-0000-4000-8000-00000000000b", "amount": %s, "currency": "USD",
  "payment_method_id": "00000000-0000-4000-8000-000000000001",
  "transaction_id": "aaaaaaaa-0000-4000-8000-00000000001%s",
  "created_at": "2026-03-02T1%s:00:00Z"}', 11000 + n, n, n)::jsonb) ->> 'decision' AS decision
  FROM generate_series(1, 3) n;
SELECT jsonb_path_query_array(p2pay.api_reviews(), '$[*].transaction_id') AS queue;
SELECT jsonb_path_query_array(p2pay.api_reviews(2), '$[*].transaction_id') AS first_page;
SELECT jsonb_path_query_array(p2pay.api_reviews(2, 'aaaaaaaa-0000-4000-8000-000000000011'),
                              '$[*].transaction_id') AS next_page;
SELECT e - 'waiting_seconds' AS oldest FROM jsonb_array_elements(p2pay.api_reviews(1)) e;
CREATE FUNCTION resolve_refusal(tid uuid, body text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  state text; msg text; col text;
BEGIN
  RETURN p2pay.api_resolve(tid, body::jsonb) ->> 'decision';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, col = COLUMN_NAME;
  RETURN state || ' [' || coalesce(col, '') || '] ' || msg;
END $$;
SELECT resolve_refusal(t::uuid, b) FROM (VALUES
  ('aaaaaaaa-0000-4000-8000-000000000011', '"approve"'),
  ('aaaaaaaa-0000-4000-8000-000000000011', '{"decision": "approve", "by": "me"}'),
  ('aaaaaaaa-0000-4000-8000-000000000011', '{"note": "no decision"}'),
  ('aaaaaaaa-0000-4000-8000-000000000011', '{"decision": "review"}'),
  ('aaaaaaaa-0000-4000-8000-000000000011', '{"decision": "approve", "note": 5}'),
  ('aaaaaaaa-0000-4000-8000-000000000099', '{"decision": "approve"}'),
  ('aaaaaaaa-0000-4000-8000-000000000011', '{"decision": "decline", "note": "confirmed with the bank"}'),
  ('aaaaaaaa-0000-4000-8000-000000000011', '{"decision": "approve"}')
) AS r (t, b);
SELECT transaction_id, old_decision, new_decision, note FROM p2pay.decision_log;
SELECT jsonb_path_query_array(p2pay.api_reviews(), '$[*].transaction_id') AS queue;
SELECT resolve_refusal(NULL, '{}') AS null_id;
SELECT p2pay.api_reviews(0);

DROP FUNCTION refusal(text), resolve_refusal(uuid, text);
DROP EXTENSION p2pay;
