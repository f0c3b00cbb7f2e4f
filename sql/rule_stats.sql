-- p2pay.rule_stats: per rule, how often it was evaluated and fired, and how
-- long it took, counted in shared memory (the test cluster preloads p2pay).
-- The figures are this database's and this file runs alone in it, so after
-- a reset they count exactly the payments below.  Times vary: only their
-- relations are shown.  Then p2pay.decision_stats: the decisions of
-- committed payments.
CREATE EXTENSION p2pay;
SET TimeZone = 'UTC';

CREATE FUNCTION u(n int) RETURNS uuid LANGUAGE sql IMMUTABLE
  AS $$ SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid $$;
CREATE FUNCTION method(n int) RETURNS uuid LANGUAGE sql IMMUTABLE
  AS $$ SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid $$;

\set T '''2026-03-02 10:30:00+00'''::timestamptz

-- Users 1 to 4 opened long ago, user 5 the day before; all have the bank
-- transfer registered.
INSERT INTO p2pay.users (id, first_name, created_at)
  SELECT u(n), 'user' || n, CASE WHEN n = 5 THEN :T - interval '1 day' ELSE '2020-01-01' END
    FROM generate_series(1, 5) n;
INSERT INTO p2pay.user_payment_methods (user_id, payment_method_id)
  SELECT u(n), method(1) FROM generate_series(1, 5) n;

-- Insert one payment and show its reasons.
CREATE FUNCTION pay(payer int, payee int, amount numeric, at timestamptz, meth int DEFAULT 1)
RETURNS text[] LANGUAGE sql AS $$
  INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
  VALUES (u(payer), u(payee), amount, 'USD', method(meth), at)
  RETURNING reasons
$$;

-- The counters, without the times.
CREATE VIEW counts AS SELECT rule, evaluations, fires FROM p2pay.rule_stats;

-- A reset zeroes every counter and restarts since.
SELECT now() AS before_reset \gset
SELECT p2pay.rule_stats_reset();
SELECT * FROM counts;
SELECT count(DISTINCT since) AS one_since, min(since) > :'before_reset' AS since_is_the_reset
  FROM p2pay.rule_stats;

-- Four payments, each evaluated by all 13 rules (and one reading of the
-- facts): nothing fires; amount_limit; unregistered_method and
-- new_payee_high_amount; new_account_high_amount and new_payee_high_amount.
SELECT pay(1, 2, 10, :T - interval '3 days');
SELECT pay(1, 2, 10000.01, :T);
SELECT pay(3, 4, 5000, :T, 2);
SELECT pay(5, 1, 2000, :T);
SELECT * FROM counts;

-- Times: never negative, the maximum at least the mean, zero where
-- nothing was evaluated.
SELECT rule, mean_us >= 0 AS mean_ok, max_us >= mean_us AS max_ok,
       evaluations > 0 OR max_us = 0 AS zero_ok
  FROM p2pay.rule_stats;

-- A rule that is off is not evaluated: amount_limit is off, so the next
-- payment, above its limit, counts nothing for it.  A shadow rule is
-- evaluated and its fires counted: payer_velocity_amount (10 + 10000.01 +
-- 20000 in 24 hours) fires in shadow.
UPDATE p2pay.rules SET mode = 'off' WHERE name = 'amount_limit';
UPDATE p2pay.rules SET mode = 'shadow' WHERE name = 'payer_velocity_amount';
SELECT pay(1, 2, 20000, :T + interval '1 minute');
SELECT rule, evaluations, fires FROM counts
 WHERE rule IN ('amount_limit', 'payer_velocity_amount', 'payer_velocity_count', 'facts');
SELECT shadow_reasons FROM p2pay.payments WHERE amount = 20000;

-- The figures are not transactional: a rolled-back payment was evaluated,
-- and stays counted.
BEGIN;
SELECT pay(2, 3, 10, :T + interval '2 minutes');
ROLLBACK;
SELECT rule, evaluations FROM counts WHERE rule IN ('amount_limit', 'round_trip', 'facts');

-- Reset again: all zero, and since moves on.
SELECT max(since) AS first_since FROM p2pay.rule_stats \gset
SELECT p2pay.rule_stats_reset();
SELECT sum(evaluations) AS evaluations, sum(fires) AS fires,
       max(mean_us) AS mean_us, max(max_us) AS max_us,
       bool_and(since > :'first_since') AS since_moved
  FROM p2pay.rule_stats;

-- The figures are this database's own block, not the overflow block.
SELECT DISTINCT overflow FROM p2pay.rule_stats;

-- p2pay.decision_stats: per decision, the payments committed with it.  A
-- reset zeroes the three counters and restarts since.
SELECT p2pay.decision_stats_reset();
SELECT decision, payments, overflow, since > :'first_since' AS since_moved
  FROM p2pay.decision_stats;

CREATE FUNCTION decide(payer int, payee int, amount numeric, at timestamptz)
RETURNS p2pay.decision LANGUAGE sql AS $$
  INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
  VALUES (u(payer), u(payee), amount, 'USD', method(1), at)
  RETURNING decision
$$;
CREATE VIEW decisions AS SELECT decision, payments FROM p2pay.decision_stats;
INSERT INTO p2pay.blocklist (user_id, reason) VALUES (u(4), 'decision_stats test');

-- One payment of each decision: a small one is approved, a new account's
-- large one reviewed, one to a blocklisted payee declined.
SELECT decide(1, 3, 10, :T + interval '3 minutes');
SELECT decide(5, 1, 2000, :T + interval '3 minutes');
SELECT decide(2, 4, 10, :T + interval '3 minutes');
SELECT * FROM decisions;

-- Counted at commit: not before, and never for a rolled-back transaction.
BEGIN;
SELECT decide(1, 3, 11, :T + interval '4 minutes');
SELECT payments AS approved_before_commit FROM decisions WHERE decision = 'approve';
ROLLBACK;
SELECT * FROM decisions;

-- Within a transaction: a payment in a savepoint rolled back is not
-- counted; those in released savepoints (nested) and outside are.
BEGIN;
SAVEPOINT a;
SELECT decide(2, 4, 12, :T + interval '5 minutes');
ROLLBACK TO SAVEPOINT a;
SAVEPOINT b;
SELECT decide(1, 3, 13, :T + interval '5 minutes');
SAVEPOINT c;
SELECT decide(2, 4, 14, :T + interval '5 minutes');
RELEASE SAVEPOINT c;
SAVEPOINT d;
SELECT decide(1, 3, 15, :T + interval '5 minutes');
ROLLBACK TO SAVEPOINT d;
RELEASE SAVEPOINT b;
SELECT decide(5, 1, 2001, :T + interval '5 minutes');
COMMIT;
SELECT * FROM decisions;

-- The counts are those of the payments stored since the reset.
SELECT d.decision, d.payments = count(p.id) AS matches_payments
  FROM p2pay.decision_stats d
  LEFT JOIN p2pay.payments p
    ON p.decision::text = d.decision AND p.created_at >= :T + interval '3 minutes'
 GROUP BY d.decision, d.payments
 ORDER BY d.decision;

-- Each reset is its own: rule_stats_reset() leaves the decisions, and
-- decision_stats_reset() the rules.
SELECT p2pay.rule_stats_reset();
SELECT * FROM decisions;
SELECT decide(1, 3, 16, :T + interval '6 minutes');
SELECT p2pay.decision_stats_reset();
SELECT * FROM decisions;
SELECT evaluations FROM p2pay.rule_stats WHERE rule = 'facts';

DROP VIEW counts, decisions;
DROP FUNCTION pay(int, int, numeric, timestamptz, int), decide(int, int, numeric, timestamptz),
  u(int), method(int);
DROP EXTENSION p2pay;
