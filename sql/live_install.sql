-- Installing p2pay on a live system.  The payments that exist are loaded
-- without scoring (triggers off) and counted with rebuild_state(): from the
-- first payment after, every account is known, and the verdicts are those
-- of a ledger that had p2pay all along.  Without the history (a cold
-- start) the same payments are scored as if every account were new.
CREATE EXTENSION p2pay;
SET TimeZone = 'UTC';

CREATE FUNCTION u(n int) RETURNS uuid LANGUAGE sql IMMUTABLE
  AS $$ SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid $$;
CREATE FUNCTION tx(seq int) RETURNS uuid LANGUAGE sql IMMUTABLE
  AS $$ SELECT ('aaaaaaaa-0000-4000-8000-' || lpad(seq::text, 12, '0'))::uuid $$;
INSERT INTO p2pay.users (id, created_at) SELECT u(n), '2020-01-01' FROM generate_series(1, 99) n;
INSERT INTO p2pay.user_payment_methods
  SELECT u(n), '00000000-0000-4000-8000-000000000001' FROM generate_series(1, 99) n;
\set T '''2026-03-20 00:00:00+00'''::timestamptz

-- The ledger: 40 days of history before T, then the day after it.
--   shop:      1 is paid 150 by 25 customers (10..34) every day, and 30
--              on the day after T;
--   habit:     40 pays 41 20 a day, and 150 after T;
--   known:     42 paid 43 2000 thirty days before T, and again after it;
--   dormant:   44 paid 45 50 120 days before T, and 3000 after it.
CREATE TABLE ledger (seq serial, scenario text, payer int, payee int, amount numeric, at timestamptz);
INSERT INTO ledger (scenario, payer, payee, amount, at)
SELECT scenario, payer, payee, amount, at FROM (
  SELECT 'shop', 10 + c, 1, 150, :T - d * interval '1 day' + interval '9 hours' + c * interval '15 minutes'
    FROM generate_series(1, 40) d, generate_series(0, 24) c
  UNION ALL
  SELECT 'shop', 10 + c, 1, 150, :T + interval '9 hours' + c * interval '10 minutes'
    FROM generate_series(0, 29) c
  UNION ALL
  SELECT 'habit', 40, 41, 20, :T - d * interval '1 day' + interval '18 hours' FROM generate_series(1, 40) d
  UNION ALL
  VALUES ('habit', 40, 41, 150, :T + interval '18 hours'),
         ('known', 42, 43, 2000, :T - interval '30 days'),
         ('known', 42, 43, 2000, :T + interval '12 hours'),
         ('dormant', 44, 45, 50, :T - interval '120 days'),
         ('dormant', 44, 45, 3000, :T + interval '13 hours')
) AS l (scenario, payer, payee, amount, at)
ORDER BY at, payer;
SELECT scenario, count(*) FILTER (WHERE at < :T) AS history, count(*) FILTER (WHERE at >= :T) AS after
  FROM ledger GROUP BY 1 ORDER BY 1;

CREATE TABLE verdicts (run text, seq int, decision p2pay.decision, reasons text[]);
-- Insert the ledger's payments from "from" on through the trigger, in
-- time order, and keep the verdicts of those after T.
CREATE PROCEDURE replay(run text, "from" timestamptz) LANGUAGE sql AS $$
  INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency,
                              payment_method_id, created_at)
    SELECT tx(seq), u(payer), u(payee),
           amount, 'USD', '00000000-0000-4000-8000-000000000001', at
      FROM ledger WHERE at >= "from" ORDER BY at, seq;
  INSERT INTO verdicts
    SELECT run, l.seq, p.decision, p.reasons
      FROM ledger l JOIN p2pay.payments p
        ON p.transaction_id = tx(l.seq)
     WHERE l.at >= '2026-03-20 00:00:00+00';
$$;
-- Empty the ledger and its state for the next run.
CREATE PROCEDURE reset() LANGUAGE sql AS $$
  TRUNCATE p2pay.payments;
  SELECT p2pay.rebuild_state();
$$;

-- 1. p2pay all along: every payment through the trigger.
CALL replay('all along', '-infinity');
CALL reset();

-- 2. Cold start: p2pay installed at T, nothing loaded.
CALL replay('cold start', :T);
CALL reset();

-- 3. Installed on the live system: the history loaded without scoring
--    (no verdicts, amount_base computed as the trigger would), counted with
--    rebuild_state(), then the payments after T through the trigger.
SET session_replication_role = replica;
INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency,
                            payment_method_id, created_at, amount_base)
  SELECT tx(l.seq), u(l.payer), u(l.payee),
         l.amount, 'USD', '00000000-0000-4000-8000-000000000001', l.at, l.amount * c.rate_to_base
    FROM ledger l JOIN p2pay.currencies c ON c.code = 'USD'
   WHERE l.at < :T ORDER BY l.at, l.seq;
RESET session_replication_role;
SELECT p2pay.rebuild_state();
SELECT count(*) AS unscored_history FROM p2pay.payments WHERE decision IS NULL;
CALL replay('installed', :T);

-- Installed with its history, p2pay decides as it would have all along:
-- the same decision and reasons for every payment after T.
SELECT count(*) AS differ FROM (
  (SELECT seq, decision, reasons FROM verdicts WHERE run = 'installed'
   EXCEPT SELECT seq, decision, reasons FROM verdicts WHERE run = 'all along')
  UNION ALL
  (SELECT seq, decision, reasons FROM verdicts WHERE run = 'all along'
   EXCEPT SELECT seq, decision, reasons FROM verdicts WHERE run = 'installed')) d;

-- What the history changes, per scenario: on a cold start the shop's
-- customers past the 20th look like a mule's payers (150 each, no normal
-- yet), the habit's 150 is no deviation (fewer than 5 payments known), and
-- the dormant account is not known to be idle.  Nor does a cold start take
-- the known payee for a new one: p2pay has just met its payer.
SELECT l.scenario, v.run, count(DISTINCT v.seq) AS payments,
       count(DISTINCT v.seq) FILTER (WHERE v.decision <> 'approve') AS flagged,
       array_agg(DISTINCT r ORDER BY r) FILTER (WHERE r IS NOT NULL) AS rules
  FROM verdicts v JOIN ledger l USING (seq)
  LEFT JOIN LATERAL unnest(v.reasons) r ON true
 WHERE v.run <> 'installed'
 GROUP BY 1, 2 ORDER BY 1, 2;

DROP PROCEDURE replay(text, timestamptz), reset();
DROP TABLE ledger, verdicts;
DROP FUNCTION u(int), tx(int);
DROP EXTENSION p2pay;
