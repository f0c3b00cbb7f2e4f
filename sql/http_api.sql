-- The HTTP API's SQL side: each endpoint's api_* function takes the path
-- segment, the query string (a JSON object of strings) and the body (JSON),
-- checks every name and value before anything is stored, and returns JSON;
-- privileges are the caller's.
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


-- call(sql): what an endpoint's statement returns, or its error as
-- p2pay-http reports it: SQLSTATE, [column], message.
CREATE FUNCTION call(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  result text; state text; msg text; col text;
BEGIN
  EXECUTE 'SELECT (' || sql || ')::text' INTO result;
  RETURN coalesce(result, 'null');
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, col = COLUMN_NAME;
  RETURN state || ' [' || coalesce(col, '') || '] ' || regexp_replace(msg, 'constraint ".*"', 'constraint');
END $$;
-- hint(sql): the hint of the error it raises.
CREATE FUNCTION hint(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  h text;
BEGIN
  EXECUTE 'SELECT (' || sql || ')::text';
  RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT;
  RETURN h;
END $$;

-- Currencies: a list by code, a page after a code, one by code, a new one.
SELECT p2pay.api_currencies('{}');
SELECT p2pay.api_currencies('{"limit": "1", "after": "EUR"}');
SELECT p2pay.api_currency('EUR'), p2pay.api_currency('XXX') IS NULL AS missing,
       p2pay.api_currency('EURO') IS NULL AS not_cut_to_three;
SELECT p2pay.api_create_currency('{"code": "GBP", "name": "Pound sterling", "rate_to_base": "1.25"}');
SELECT call(c) FROM (VALUES
  ($$p2pay.api_create_currency('{"code": "GBP", "name": "Pound", "rate_to_base": 1.3}')$$),
  ($$p2pay.api_create_currency('{"code": "USD", "name": "Dollar", "rate_to_base": 1}')$$),
  ($$p2pay.api_create_currency('{"code": "gbx", "name": "Penny", "rate_to_base": 0.0125}')$$),
  ($$p2pay.api_create_currency('{"code": "CHF", "name": "Franc"}')$$),
  ($$p2pay.api_create_currency('{"code": "CHF", "name": "Franc", "rate_to_base": "one"}')$$),
  ($$p2pay.api_create_currency('{"code": "CHF", "name": "Franc", "rate_to_base": -1}')$$),
  ($$p2pay.api_create_currency('{"code": "CHF", "name": 5, "rate_to_base": 1}')$$),
  ($$p2pay.api_create_currency('{"code": "CHF", "name": "Franc", "rate_to_base": 1, "symbol": "Fr"}')$$),
  ($$p2pay.api_currencies('{"limit": "0"}')$$),
  ($$p2pay.api_currencies('{"limit": "1001"}')$$),
  ($$p2pay.api_currencies('{"limit": "ten"}')$$),
  ($$p2pay.api_currencies('{"limit": 10}')$$),
  ($$p2pay.api_currencies('{"sort": "name"}')$$),
  ($$p2pay.api_currencies('[]')$$)
) AS t (c);
SELECT hint($$p2pay.api_currencies('{"sort": "name"}')$$) AS hint_lists_arguments;
-- an existing code is refused, not turned into an update (as pg_restore's inserts are)
SELECT code, name, rate_to_base FROM p2pay.currencies WHERE code IN ('GBP', 'USD') ORDER BY code;

-- Payment methods.
SELECT jsonb_path_query_array(p2pay.api_payment_methods('{}'), '$[*].name') AS methods;
SELECT p2pay.api_payment_methods('{"limit": "1", "after": "00000000-0000-4000-8000-000000000002"}');
SELECT p2pay.api_create_payment_method('{"name": "Wallet", "id": "00000000-0000-4000-8000-0000000000aa"}');
SELECT p2pay.api_payment_method('00000000-0000-4000-8000-0000000000aa');
SELECT (p2pay.api_create_payment_method('{"name": "Voucher"}') ->> 'id')::uuid IS NOT NULL AS id_made;
SELECT call(c) FROM (VALUES
  ($$p2pay.api_payment_method('00000000-0000-4000-8000-0000000000ff')$$),
  ($$p2pay.api_create_payment_method('{"name": "Wallet"}')$$),
  ($$p2pay.api_create_payment_method('{"name": "Other", "id": "00000000-0000-4000-8000-000000000001"}')$$),
  ($$p2pay.api_create_payment_method('{"name": "Other", "id": "1"}')$$),
  ($$p2pay.api_create_payment_method('{}')$$),
  ($$p2pay.api_payment_methods('{"after": "Cash"}')$$)
) AS t (c);
SELECT name FROM p2pay.payment_methods WHERE id = '00000000-0000-4000-8000-000000000001';

-- Users and their payment methods.
SELECT p2pay.api_create_user('{"id": "00000000-0000-4000-8000-00000000000c", "first_name": "Cy",
  "last_name": "C", "email_address": "cy@example.com", "created_at": "2026-01-05T00:00:00Z"}');
SELECT u - 'id' - 'created_at' AS user_made, (u ->> 'id')::uuid IS NOT NULL AS id_made,
       (u ->> 'created_at')::timestamptz > now() - interval '1 minute' AS now_by_default
  FROM p2pay.api_create_user('{}') u;
DELETE FROM p2pay.users WHERE created_at > '2026-06-01';
SELECT p2pay.api_user('00000000-0000-4000-8000-00000000000c');
SELECT jsonb_path_query_array(p2pay.api_users('{"limit": "2"}'), '$[*].id') AS first_page;
SELECT jsonb_path_query_array(p2pay.api_users('{"limit": "2", "after": "00000000-0000-4000-8000-00000000000b"}'),
                              '$[*].id') AS next_page;
SELECT p2pay.api_create_user_payment_method('00000000-0000-4000-8000-00000000000c',
  '{"payment_method_id": "00000000-0000-4000-8000-0000000000aa", "details": "wallet of Cy"}');
SELECT p2pay.api_create_user_payment_method('00000000-0000-4000-8000-00000000000c',
  '{"payment_method_id": "00000000-0000-4000-8000-000000000002"}');
SELECT p2pay.api_user_payment_methods('00000000-0000-4000-8000-00000000000c', '{}');
SELECT p2pay.api_user_payment_methods('00000000-0000-4000-8000-00000000000c',
  '{"after": "00000000-0000-4000-8000-000000000002"}');
SELECT call(c) FROM (VALUES
  ($$p2pay.api_user('00000000-0000-4000-8000-0000000000ff')$$),
  ($$p2pay.api_user_payment_methods('00000000-0000-4000-8000-0000000000ff', '{}')$$),
  ($$p2pay.api_create_user('{"id": "00000000-0000-4000-8000-00000000000c"}')$$),
  ($$p2pay.api_create_user('{"created_at": "soon"}')$$),
  ($$p2pay.api_create_user('{"first_name": ["C", "y"]}')$$),
  ($$p2pay.api_create_user('{"name": "Cy"}')$$),
  ($$p2pay.api_users('{"after": "c"}')$$),
  ($$p2pay.api_create_user_payment_method('00000000-0000-4000-8000-00000000000c',
      '{"payment_method_id": "00000000-0000-4000-8000-0000000000aa"}')$$),
  ($$p2pay.api_create_user_payment_method('00000000-0000-4000-8000-00000000000c',
      '{"payment_method_id": "00000000-0000-4000-8000-0000000000ff"}')$$),
  ($$p2pay.api_create_user_payment_method('00000000-0000-4000-8000-0000000000ff',
      '{"payment_method_id": "00000000-0000-4000-8000-000000000001"}')$$),
  ($$p2pay.api_create_user_payment_method('00000000-0000-4000-8000-00000000000c', '{"details": "x"}')$$)
) AS t (c);

-- Three more payments of a to b, for review.
SELECT p2pay.api_create_payment(format('{"payer_id": "00000000-0000-4000-8000-00000000000a",
  "payee_id": "00000000-0000-4000-8000-00000000000b", "amount": %s, "currency": "USD",
  "payment_method_id": "00000000-0000-4000-8000-000000000001",
  "transaction_id": "aaaaaaaa-0000-4000-8000-00000000001%s",
  "created_at": "2026-03-02T1%s:00:00Z"}', 11000 + n, n, n)::jsonb) ->> 'decision' AS decision
  FROM generate_series(1, 3) n;

-- The payment list, newest first: by payer, payee, either, decision and
-- time, a page at a time.  a pays b (10:00, 11:00-13:00 above, and one of
-- 0.10 now), c pays a and b.
SELECT p2pay.api_create_payment(format('{"payer_id": "00000000-0000-4000-8000-00000000000c",
  "payee_id": "00000000-0000-4000-8000-00000000000%s", "amount": 20, "currency": "USD",
  "payment_method_id": "00000000-0000-4000-8000-0000000000aa",
  "transaction_id": "cccccccc-0000-4000-8000-00000000000%s",
  "created_at": "2026-03-02T1%s:30:00Z"}', CASE WHEN n % 2 = 1 THEN 'a' ELSE 'b' END, n, n)::jsonb)
       ->> 'decision' AS decision
  FROM generate_series(1, 3) n;
-- the same created_at twice: transaction_id descending breaks the tie
SELECT p2pay.api_create_payment('{"payer_id": "00000000-0000-4000-8000-00000000000c",
  "payee_id": "00000000-0000-4000-8000-00000000000b", "amount": 20, "currency": "USD",
  "payment_method_id": "00000000-0000-4000-8000-0000000000aa",
  "transaction_id": "cccccccc-0000-4000-8000-000000000009", "created_at": "2026-03-02T12:30:00Z"}')
       ->> 'decision' AS decision;
-- ids(query): the list's payments by the end of their transaction_id and
-- their time ("now" for the one made at now() above)
CREATE FUNCTION ids(query text) RETURNS jsonb LANGUAGE sql AS $$
  SELECT jsonb_agg(CASE WHEN (e ->> 'created_at')::timestamptz > '2026-06-01' THEN 'now'
                        ELSE right(e ->> 'transaction_id', 2) || ' ' || (e ->> 'created_at') END)
    FROM jsonb_array_elements(p2pay.api_payments(query::jsonb)) e
$$;
SELECT ids('{}') AS everything;
SELECT ids('{"limit": "3"}') AS first_page;
SELECT ids('{"limit": "3", "after": "cccccccc-0000-4000-8000-000000000009"}') AS second_page;
SELECT ids('{"limit": "3", "after": "aaaaaaaa-0000-4000-8000-000000000012"}') AS third_page;
SELECT ids('{"payer_id": "00000000-0000-4000-8000-00000000000c"}') AS paid_by_c;
SELECT ids('{"payee_id": "00000000-0000-4000-8000-00000000000a"}') AS paid_to_a;
SELECT ids('{"user_id": "00000000-0000-4000-8000-00000000000a"}') AS a_paid_or_paid;
SELECT ids('{"user_id": "00000000-0000-4000-8000-00000000000a", "limit": "2",
             "after": "aaaaaaaa-0000-4000-8000-000000000013"}') AS a_second_page;
SELECT ids('{"user_id": "00000000-0000-4000-8000-00000000000a",
             "payee_id": "00000000-0000-4000-8000-00000000000b"}') AS a_to_b;
SELECT ids('{"decision": "review"}') AS under_review;
SELECT ids('{"from": "2026-03-02T11:00:00Z", "to": "2026-03-02T12:30:00Z"}') AS from_to;
SELECT p2pay.api_payments('{"payer_id": "00000000-0000-4000-8000-00000000000c", "limit": "1"}')
  = jsonb_build_array(p2pay.api_payment('cccccccc-0000-4000-8000-000000000003')) AS items_as_api_payment;
SELECT call(c) FROM (VALUES
  ($$p2pay.api_payments('{"payer": "00000000-0000-4000-8000-00000000000a"}')$$),
  ($$p2pay.api_payments('{"payer_id": "a"}')$$),
  ($$p2pay.api_payments('{"decision": "maybe"}')$$),
  ($$p2pay.api_payments('{"from": "last week"}')$$),
  ($$p2pay.api_payments('{"after": "aaaaaaaa-0000-4000-8000-000000000099"}')$$),
  ($$p2pay.api_payments('{"limit": "-1"}')$$)
) AS t (c);
SELECT hint($$p2pay.api_payments('{"payer": "00000000-0000-4000-8000-00000000000a"}')$$) AS hint_lists_arguments;

-- The README's roles (the grants of its "Privileges" section), and two
-- analysts and an application that log in as themselves (session_user is
-- who claims and resolves).
CREATE ROLE regress_p2pay_app NOLOGIN;
SELECT p2pay.grant_app('regress_p2pay_app');
CREATE ROLE regress_p2pay_analyst NOLOGIN;
SELECT p2pay.grant_analyst('regress_p2pay_analyst');
CREATE ROLE regress_p2pay_shop NOLOGIN IN ROLE regress_p2pay_app;
CREATE ROLE regress_p2pay_alice NOLOGIN IN ROLE regress_p2pay_analyst;
CREATE ROLE regress_p2pay_bob NOLOGIN IN ROLE regress_p2pay_analyst;

-- The application: creates users and payments, reads payments; can't
-- claim, release, resolve, read the queue, the rules or backtest.
SET SESSION AUTHORIZATION regress_p2pay_shop;
SELECT p2pay.api_create_user('{"id": "00000000-0000-4000-8000-00000000000d", "created_at": "2026-01-01T00:00:00Z"}')
       ->> 'id' AS user_made;
SELECT p2pay.api_create_payment('{"payer_id": "00000000-0000-4000-8000-00000000000d",
  "payee_id": "00000000-0000-4000-8000-00000000000b", "amount": 12000, "currency": "USD",
  "payment_method_id": "00000000-0000-4000-8000-000000000001",
  "transaction_id": "dddddddd-0000-4000-8000-000000000001", "created_at": "2026-03-03T10:00:00Z"}')
       ->> 'decision' AS decision;
SELECT ids('{"payer_id": "00000000-0000-4000-8000-00000000000d"}') AS app_reads_payments;
SELECT call(c) FROM (VALUES
  ($$p2pay.api_claim('dddddddd-0000-4000-8000-000000000001', '{}')$$),
  ($$p2pay.api_release('dddddddd-0000-4000-8000-000000000001')$$),
  ($$p2pay.api_resolve('dddddddd-0000-4000-8000-000000000001', '{"decision": "approve"}')$$),
  ($$p2pay.api_reviews('{}')$$),
  ($$p2pay.api_rules('{}')$$),
  ($$p2pay.api_backtest('{"from": "2026-03-01", "to": "2026-04-01"}')$$),
  ($$p2pay.api_create_currency('{"code": "CHF", "name": "Franc", "rate_to_base": 1.1}')$$)
) AS t (c);
RESET SESSION AUTHORIZATION;
SELECT count(*) AS no_claims FROM p2pay.review_claims;

-- The review queue a page at a time, oldest first, with its claims.
SELECT jsonb_path_query_array(p2pay.api_reviews('{}'), '$[*].transaction_id') AS queue;
SELECT jsonb_path_query_array(p2pay.api_reviews('{"limit": "2"}'), '$[*].transaction_id') AS first_page;
SELECT jsonb_path_query_array(p2pay.api_reviews('{"limit": "2", "after": "aaaaaaaa-0000-4000-8000-000000000011"}'),
                              '$[*].transaction_id') AS next_page;
SELECT e - 'waiting_seconds' AS oldest FROM jsonb_array_elements(p2pay.api_reviews('{"limit": "1"}')) e;

-- Alice claims a review; Bob can neither claim nor resolve it, nor
-- release her claim; she extends it, releases it; Bob claims it.
SET SESSION AUTHORIZATION regress_p2pay_alice;
SELECT c - 'claimed_at' - 'expires_at' AS claim,
       (c ->> 'expires_at')::timestamptz - (c ->> 'claimed_at')::timestamptz AS lasts
  FROM p2pay.api_claim('aaaaaaaa-0000-4000-8000-000000000012', NULL) c;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_p2pay_bob;
SELECT call(c) FROM (VALUES
  ($$p2pay.api_claim('aaaaaaaa-0000-4000-8000-000000000012', '{"minutes": 5}')$$),
  ($$p2pay.api_resolve('aaaaaaaa-0000-4000-8000-000000000012', '{"decision": "approve"}')$$),
  ($$p2pay.api_release('aaaaaaaa-0000-4000-8000-000000000012')$$)
) AS t (c);
SELECT e ->> 'transaction_id' AS id, e ->> 'claimed_by' AS claimed_by,
       (e ->> 'claim_expires_at')::timestamptz - now() > interval '14 minutes' AS expires_in_15_minutes
  FROM jsonb_array_elements(p2pay.api_reviews('{}')) e;
RESET SESSION AUTHORIZATION;
-- her own claim again: extended, claimed_at kept
UPDATE p2pay.review_claims SET claimed_at = claimed_at - interval '1 minute';
SET SESSION AUTHORIZATION regress_p2pay_alice;
SELECT c ->> 'claimed_by' AS claimed_by, (c ->> 'expires_at')::timestamptz - now() AS expires_in,
       now() - (c ->> 'claimed_at')::timestamptz >= interval '1 minute' AS claimed_at_kept
  FROM p2pay.api_claim('aaaaaaaa-0000-4000-8000-000000000012', '{"minutes": 240}') c;
SELECT p2pay.api_release('aaaaaaaa-0000-4000-8000-000000000012') ->> 'claimed_by' AS released;
SELECT call($$p2pay.api_release('aaaaaaaa-0000-4000-8000-000000000012')$$) AS released_again;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_p2pay_bob;
SELECT p2pay.api_claim('aaaaaaaa-0000-4000-8000-000000000012', '{"minutes": 1}') ->> 'claimed_by' AS claimed_by;
RESET SESSION AUTHORIZATION;
-- Bob's claim lapses: nobody holds it, and Alice takes it over.
UPDATE p2pay.review_claims SET claimed_at = now() - interval '2 minutes', expires_at = now() - interval '1 minute';
SELECT e ->> 'claimed_by' AS claimed_by, e ->> 'claim_expires_at' AS claim_expires_at
  FROM jsonb_array_elements(p2pay.api_reviews('{}')) e
 WHERE e ->> 'transaction_id' = 'aaaaaaaa-0000-4000-8000-000000000012';
SET SESSION AUTHORIZATION regress_p2pay_alice;
SELECT c ->> 'claimed_by' AS claimed_by, (c ->> 'claimed_at')::timestamptz = now() AS claimed_now
  FROM p2pay.api_claim('aaaaaaaa-0000-4000-8000-000000000012', '{}') c;
SELECT p2pay.api_resolve('aaaaaaaa-0000-4000-8000-000000000012',
                         '{"decision": "decline", "note": "mule"}') ->> 'decision' AS resolved;
RESET SESSION AUTHORIZATION;
SELECT count(*) AS claims_left FROM p2pay.review_claims;
SELECT transaction_id, old_decision, new_decision, note, resolved_by FROM p2pay.decision_log
 ORDER BY id;

-- Resolutions and claims refused: by field, a payment no longer under
-- review, no such payment.
SET SESSION AUTHORIZATION regress_p2pay_bob;
SELECT call(c) FROM (VALUES
  ($$p2pay.api_resolve('aaaaaaaa-0000-4000-8000-000000000012', '{"decision": "approve"}')$$),
  ($$p2pay.api_claim('aaaaaaaa-0000-4000-8000-000000000012', '{}')$$),
  ($$p2pay.api_claim('aaaaaaaa-0000-4000-8000-000000000099', '{}')$$),
  ($$p2pay.api_resolve('aaaaaaaa-0000-4000-8000-000000000099', '{"decision": "approve"}')$$),
  ($$p2pay.api_claim('aaaaaaaa-0000-4000-8000-000000000013', '{"minutes": 0}')$$),
  ($$p2pay.api_claim('aaaaaaaa-0000-4000-8000-000000000013', '{"minutes": 241}')$$),
  ($$p2pay.api_claim('aaaaaaaa-0000-4000-8000-000000000013', '{"minutes": 1.5}')$$),
  ($$p2pay.api_claim('aaaaaaaa-0000-4000-8000-000000000013', '{"minutes": "5"}')$$),
  ($$p2pay.api_claim('aaaaaaaa-0000-4000-8000-000000000013', '{"until": "noon"}')$$),
  ($$p2pay.api_claim('aaaaaaaa-0000-4000-8000-000000000013', '[]')$$),
  ($$p2pay.api_resolve('aaaaaaaa-0000-4000-8000-000000000013', '"approve"')$$),
  ($$p2pay.api_resolve('aaaaaaaa-0000-4000-8000-000000000013', '{"decision": "approve", "by": "me"}')$$),
  ($$p2pay.api_resolve('aaaaaaaa-0000-4000-8000-000000000013', '{"note": "no decision"}')$$),
  ($$p2pay.api_resolve('aaaaaaaa-0000-4000-8000-000000000013', '{"decision": "review"}')$$),
  ($$p2pay.api_resolve('aaaaaaaa-0000-4000-8000-000000000013', '{"decision": "approve", "note": 5}')$$),
  ($$p2pay.api_resolve(NULL, '{"decision": "approve"}')$$),
  ($$p2pay.api_reviews('{"limit": "0"}')$$),
  ($$p2pay.api_reviews('{"after": "aaaaaaaa-0000-4000-8000-000000000099"}')$$),
  ($$p2pay.api_reviews('{"page": "2"}')$$)
) AS t (c);
SELECT jsonb_path_query_array(p2pay.api_reviews('{}'), '$[*].transaction_id') AS queue;
RESET SESSION AUTHORIZATION;
SELECT count(*) AS claims_left FROM p2pay.review_claims;

-- Rules with their statistics, counted since the reset.
SELECT p2pay.rule_stats_reset();
SELECT p2pay.api_create_payment('{"payer_id": "00000000-0000-4000-8000-00000000000b",
  "payee_id": "00000000-0000-4000-8000-00000000000c", "amount": 15000, "currency": "USD",
  "payment_method_id": "00000000-0000-4000-8000-000000000001", "created_at": "2026-03-04T10:00:00Z"}')
       ->> 'decision' AS decision;
SET SESSION AUTHORIZATION regress_p2pay_alice;
SELECT jsonb_array_length(p2pay.api_rules('{}')) = (SELECT count(*) FROM p2pay.rules) AS every_rule;
SELECT e - 'since' - 'mean_us' - 'max_us' AS amount_limit,
       (e ->> 'since')::timestamptz <= now() AS since, (e ->> 'max_us')::float8 >= 0 AS max_us
  FROM jsonb_array_elements(p2pay.api_rules()) e WHERE e ->> 'name' = 'amount_limit';
SELECT call($$p2pay.api_rules('{"mode": "active"}')$$), hint($$p2pay.api_rules('{"mode": "active"}')$$);

-- A backtest of March, as the rules are and with amount_limit off.
SELECT b - 'rules' AS backtest, b -> 'rules' -> -1 AS overall
  FROM p2pay.api_backtest('{"from": "2026-03-01T00:00:00Z", "to": "2026-04-01T00:00:00Z"}') b;
SELECT r ->> 'rule' AS rule, r -> 'fired' AS fired, r -> 'would_review' AS would_review
  FROM jsonb_array_elements(p2pay.api_backtest('{"from": "2026-03-01T00:00:00Z", "to": "2026-04-01T00:00:00Z",
         "rules": [{"name": "amount_limit", "mode": "off"}]}') -> 'rules') r
 WHERE r ->> 'rule' IN ('amount_limit', 'overall');
SELECT call(c) FROM (VALUES
  ($$p2pay.api_backtest('{"from": "2026-03-01"}')$$),
  ($$p2pay.api_backtest('{"from": "2026-04-01", "to": "2026-03-01"}')$$),
  ($$p2pay.api_backtest('{"from": "March", "to": "2026-04-01"}')$$),
  ($$p2pay.api_backtest('{"from": "2026-03-01", "to": "2026-04-01", "rules": {"name": "amount_limit"}}')$$),
  ($$p2pay.api_backtest('{"from": "2026-03-01", "to": "2026-04-01", "rules": [{"name": "no_such_rule"}]}')$$),
  ($$p2pay.api_backtest('{"from": "2026-03-01", "to": "2026-04-01", "until": "2026-05-01"}')$$)
) AS t (c);
RESET SESSION AUTHORIZATION;

DROP ROLE regress_p2pay_shop, regress_p2pay_alice, regress_p2pay_bob;
DROP OWNED BY regress_p2pay_app, regress_p2pay_analyst;
DROP ROLE regress_p2pay_app, regress_p2pay_analyst;
DROP FUNCTION refusal(text), call(text), hint(text), ids(text);
DROP EXTENSION p2pay;
