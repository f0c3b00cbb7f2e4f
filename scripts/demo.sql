-- scripts/demo.sql: a scripted spring of peer-to-peer payments, replayed
-- through p2pay and printed with the decision each payment got.
--
-- Run by scripts/demo.sh (make demo) in a database where CREATE EXTENSION
-- p2pay has just been run.  Everything is fixed (user ids, times in UTC from
-- January to May 2025, amounts), so the output is the same on every run.
--
-- The rules keep their default parameters.  Each flagged payment is built to
-- cross one rule's line, and its story column says which.  The friends'
-- history in April means the flagged payments are between people who have
-- paid each other before, so new_payee_high_amount stays quiet on them, and
-- no payer has the five earlier payments amount_deviation needs except
-- Grace, whose amounts never change.
--
-- The scenario stays in schema demo (demo.people, demo.script); the printed
-- table is the view demo.report.

\set ON_ERROR_STOP on
SET client_min_messages = warning;
SET TimeZone = 'UTC';

CREATE SCHEMA demo;
COMMENT ON SCHEMA demo IS 'The make demo scenario: its people, its script and the report.';

------------------------------------------------------------------------------
-- People: ten named users, and 22 people answering a fake job advert who are
-- told to send a "processing fee" to Judy (the mule account).
------------------------------------------------------------------------------

CREATE TABLE demo.people (
  first_name text PRIMARY KEY,
  last_name  text NOT NULL,
  id         uuid NOT NULL UNIQUE,
  methods    text[] NOT NULL,
  role       text NOT NULL
);

INSERT INTO demo.people VALUES
  ('Alice', 'Martin',  '10000000-0000-4000-8000-000000000001', '{Bank transfer,Credit card}', 'friend; the round trip'),
  ('Bob',   'Chen',    '10000000-0000-4000-8000-000000000002', '{Bank transfer,Credit card}', 'friend; the round trip'),
  ('Carol', 'Diaz',    '10000000-0000-4000-8000-000000000003', '{Bank transfer,Credit card}', 'friend; buys a car'),
  ('David', 'Okafor',  '10000000-0000-4000-8000-000000000004', '{Bank transfer}',             'lodger; pays by an unregistered card'),
  ('Erin',  'Walsh',   '10000000-0000-4000-8000-000000000005', '{Bank transfer,Credit card}', 'landlady; pays in EUR'),
  ('Frank', 'Novak',   '10000000-0000-4000-8000-000000000006', '{Bank transfer}',             'structures 28,800 USD'),
  ('Grace', 'Kim',     '10000000-0000-4000-8000-000000000007', '{Credit card}',               'burst of payments'),
  ('Henry', 'Adams',   '10000000-0000-4000-8000-000000000008', '{Bank transfer}',             'dormant since January'),
  ('Ivan',  'Petrov',  '10000000-0000-4000-8000-000000000009', '{Bank transfer}',             'blocklisted fraudster'),
  ('Judy',  'Moreau',  '10000000-0000-4000-8000-000000000010', '{Bank transfer}',             'mule account');

INSERT INTO demo.people
SELECT f, l, format('20000000-0000-4000-8000-%s', lpad(i::text, 12, '0'))::uuid,
       '{Bank transfer}', 'answered the fake job advert'
  FROM unnest('{Liam,Olivia,Noah,Emma,Oliver,Ava,Elijah,Sophia,Lucas,Mia,Mason,
                Amelia,Logan,Harper,Ethan,Evelyn,Jacob,Abigail,Levi,Ella,Owen,Chloe}'::text[],
              '{Brooks,Reyes,Foster,Price,Hughes,Ward,Bennett,Gray,James,Watson,Cole,
                Perry,Long,Barnes,Ross,Hayes,Powell,Jenkins,Russell,Griffin,Sanders,Myers}'::text[])
       WITH ORDINALITY AS n(f, l, i);

-- Every account is months old by May, so new_account_high_amount stays quiet.
INSERT INTO p2pay.users (id, first_name, last_name, email_address, created_at)
SELECT id, first_name, last_name,
       lower(first_name || '.' || last_name) || '@example.com',
       '2024-09-01 09:00'
  FROM demo.people;

INSERT INTO p2pay.user_payment_methods (user_id, payment_method_id, details)
SELECT p.id, m.id, m.name || ' of ' || p.first_name || ' ' || p.last_name
  FROM demo.people p
 CROSS JOIN LATERAL unnest(p.methods) AS pm(name)
  JOIN p2pay.payment_methods m ON m.name = pm.name;

-- Blocklist entries count for every payment until they expire (never, here).
INSERT INTO p2pay.blocklist (user_id, reason)
SELECT id, 'Reported for phishing by three banks' FROM demo.people WHERE first_name = 'Ivan';

------------------------------------------------------------------------------
-- The script: one row per payment, replayed in time order (the rows below
-- are grouped by story, not by time).  Rule windows are measured back from
-- each payment's created_at, so a replayed payment is scored as it would have
-- been at its time.
------------------------------------------------------------------------------

CREATE TABLE demo.script (
  transaction_id uuid PRIMARY KEY,
  at             timestamptz NOT NULL,
  payer          text NOT NULL REFERENCES demo.people,
  payee          text NOT NULL REFERENCES demo.people,
  amount         numeric(12, 2) NOT NULL,
  currency       char(3) NOT NULL,
  method         text NOT NULL,
  story          text NOT NULL
);

INSERT INTO demo.script (transaction_id, at, payer, payee, amount, currency, method, story)
SELECT format('30000000-0000-4000-8000-%s', lpad(row_number() OVER (ORDER BY at)::text, 12, '0'))::uuid,
       at, payer, payee, amount, currency, method, story
  FROM (VALUES
  -- Henry's last payment before he goes quiet for more than 90 days.
  ('2025-01-20 10:00'::timestamptz, 'Henry', 'Alice',  250.00, 'USD', 'Bank transfer', 'concert tickets'),

  -- April: ordinary payments between friends.
  ('2025-04-03 19:30', 'Alice', 'Bob',     45.00, 'USD', 'Credit card',   'dinner split'),
  ('2025-04-04 08:15', 'Bob',   'Alice',   30.00, 'USD', 'Credit card',   'taxi share'),
  ('2025-04-06 12:00', 'Carol', 'Alice',   60.00, 'USD', 'Bank transfer', 'birthday present'),
  ('2025-04-08 18:00', 'Alice', 'Carol',   75.00, 'USD', 'Bank transfer', 'theatre tickets'),
  ('2025-04-10 09:00', 'David', 'Erin',  1100.00, 'USD', 'Bank transfer', 'first rent: new payee'),
  ('2025-04-12 20:00', 'Erin',  'Carol',   35.00, 'EUR', 'Credit card',   'paella night, in EUR'),
  ('2025-04-14 17:45', 'Frank', 'Bob',    120.00, 'USD', 'Bank transfer', 'season tickets share'),
  ('2025-04-15 21:10', 'Carol', 'David',   40.00, 'USD', 'Bank transfer', 'book club'),
  ('2025-04-18 13:20', 'Erin',  'Alice',   25.00, 'USD', 'Credit card',   'lunch'),
  ('2025-04-20 11:00', 'Grace', 'Bob',     15.00, 'USD', 'Credit card',   'cinema'),
  ('2025-04-22 19:00', 'Bob',   'Frank',   50.00, 'USD', 'Bank transfer', 'pub quiz'),
  ('2025-05-01 09:00', 'David', 'Erin',  1100.00, 'USD', 'Bank transfer', 'May rent: known payee'),

  -- Round trip: Bob sends Alice 1,500 and she sends it straight back.
  ('2025-05-05 10:00', 'Bob',   'Alice', 1500.00, 'USD', 'Bank transfer', 'round trip, leg 1'),
  ('2025-05-05 12:30', 'Alice', 'Carol',   18.00, 'USD', 'Credit card',   'coffee'),
  ('2025-05-05 16:00', 'Alice', 'Bob',   1500.00, 'USD', 'Bank transfer', 'round trip, leg 2'),

  -- Judy the mule forwards the day's fees to Ivan, who is blocklisted.
  ('2025-05-06 15:00', 'Judy',  'Ivan',  8500.00, 'USD', 'Bank transfer', 'mule pays out to Ivan'),

  -- Structuring: Frank moves 28,800 to Bob in three payments just under
  -- 10,000.  The third is the third in the band within 24 hours, and it also
  -- takes his 24-hour total past 20,000 (payer_velocity_amount).
  ('2025-05-08 09:10', 'Frank', 'Bob',   9600.00, 'USD', 'Bank transfer', 'structuring 1/3'),
  ('2025-05-08 13:40', 'Frank', 'Bob',   9400.00, 'USD', 'Bank transfer', 'structuring 2/3'),
  ('2025-05-08 17:55', 'Frank', 'Bob',   9800.00, 'USD', 'Bank transfer', 'structuring 3/3'),

  -- Henry wakes up after 108 days and pays more than 1,000.
  ('2025-05-08 11:00', 'Henry', 'Alice', 2400.00, 'USD', 'Bank transfer', 'dormant account wakes'),

  -- A large amount, and one that is large only once converted to USD.
  ('2025-05-09 10:30', 'Carol', 'Alice', 12500.00, 'USD', 'Bank transfer', 'buys Alice''s car'),
  ('2025-05-09 14:00', 'Erin',  'Carol',  9500.00, 'EUR', 'Bank transfer', '9,500 EUR = 10,260 USD'),

  -- David pays with a credit card he never registered.
  ('2025-05-09 18:00', 'David', 'Erin',    60.00, 'USD', 'Credit card',   'unregistered method: noted, not enough alone'),

  -- Erin buys tickets from Ivan: a small payment, declined all the same.
  ('2025-05-10 12:00', 'Erin',  'Ivan',    80.00, 'USD', 'Credit card',   'payee is blocklisted')
  ) AS s(at, payer, payee, amount, currency, method, story);

-- The mule: 22 people each send Judy a 450 USD "fee", one every 15 minutes;
-- from the 21st distinct payer in 24 hours on, payee_fan_in fires.
INSERT INTO demo.script (transaction_id, at, payer, payee, amount, currency, method, story)
SELECT format('40000000-0000-4000-8000-%s', lpad(n::text, 12, '0'))::uuid,
       '2025-05-06 09:00'::timestamptz + (n - 1) * interval '15 minutes',
       p.first_name, 'Judy', 450.00, 'USD', 'Bank transfer',
       format('fee to the mule %s/22', n)
  FROM (SELECT first_name, row_number() OVER (ORDER BY id) AS n
          FROM demo.people WHERE id::text LIKE '20000000-%') AS p;

-- The burst: Grace pays twelve 20 USD "gift cards" in 44 minutes; the 11th
-- payment in an hour fires payer_velocity_count.
INSERT INTO demo.script (transaction_id, at, payer, payee, amount, currency, method, story)
SELECT format('50000000-0000-4000-8000-%s', lpad(n::text, 12, '0'))::uuid,
       '2025-05-07 10:00'::timestamptz + (n - 1) * interval '4 minutes',
       'Grace', CASE WHEN n % 2 = 1 THEN 'Bob' ELSE 'Carol' END, 20.00, 'USD', 'Credit card',
       format('burst %s/12', n)
  FROM generate_series(1, 12) AS n;

------------------------------------------------------------------------------
-- Replay: one INSERT per payment, oldest first, as an application would.
-- The trigger writes risk_score, decision, reasons and amount_base.
------------------------------------------------------------------------------

DO $$
DECLARE
  pay record;
BEGIN
  FOR pay IN
    SELECT s.*, payer.id AS payer_id, payee.id AS payee_id, m.id AS method_id
      FROM demo.script s
      JOIN demo.people payer ON payer.first_name = s.payer
      JOIN demo.people payee ON payee.first_name = s.payee
      JOIN p2pay.payment_methods m ON m.name = s.method
     ORDER BY s.at, s.transaction_id
  LOOP
    INSERT INTO p2pay.payments
      (transaction_id, payer_id, payee_id, amount, currency, payment_method_id, created_at)
    VALUES
      (pay.transaction_id, pay.payer_id, pay.payee_id, pay.amount, pay.currency,
       pay.method_id, pay.at);
  END LOOP;
END
$$;

CREATE VIEW demo.report AS
SELECT to_char(p.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS time,
       payer.first_name || ' ' || payer.last_name AS payer,
       payee.first_name || ' ' || payee.last_name AS payee,
       p.amount,
       p.currency,
       round(p.risk_score::numeric, 3) AS risk_score,
       p.decision,
       array_to_string(p.reasons, ', ') AS reasons,
       s.story
  FROM p2pay.payments p
  JOIN p2pay.users payer ON payer.id = p.payer_id
  JOIN p2pay.users payee ON payee.id = p.payee_id
  LEFT JOIN demo.script s ON s.transaction_id = p.transaction_id
 ORDER BY p.created_at, p.id;
COMMENT ON VIEW demo.report IS 'Every payment of the demo with its score, decision and reasons.';

------------------------------------------------------------------------------
-- Report
------------------------------------------------------------------------------

\pset footer off
\echo
\echo 'Payments in time order, UTC; risk_score, decision and reasons were written by the p2pay trigger:'
SELECT * FROM demo.report;

\echo
\echo 'Decisions (review at risk_score >= 0.3, decline at >= 0.8 or on the blocklist):'
SELECT d.decision, count(p.id) AS payments
  FROM unnest(enum_range(NULL::p2pay.decision)) AS d(decision)
  LEFT JOIN p2pay.payments p ON p.decision = d.decision
 GROUP BY d.decision
 ORDER BY d.decision;

\echo
\echo 'Rules that fired:'
SELECT r.name AS rule, count(*) AS payments, r.weight
  FROM p2pay.payments p
 CROSS JOIN LATERAL unnest(p.reasons) AS fired(name)
  JOIN p2pay.rules r ON r.name = fired.name
 GROUP BY r.name, r.weight
 ORDER BY count(*) DESC, r.name;
