/*
 * bench/plpgsql_rules.sql: p2pay's default rules written by hand in PL/pgSQL.
 *
 * This is the alternative that `make bench` compares p2pay's C trigger
 * against; it is not part of the extension and is not installed by it.  It
 * is what a user would write without p2pay: a BEFORE INSERT row trigger that
 * runs one plain query per rule over p2pay.payments (and users,
 * user_payment_methods, currencies, blocklist), with the default parameters
 * of docs/rules.md's rule table written into the code.  It reads none of
 * p2pay's per-account state (account_stats, pair_stats, account_daily)
 * and none of its configuration (rules, settings, allowlist, snoozes,
 * shadow modes): a change to those does not reach it.  Like p2pay
 * (docs/internals.md, "Concurrency") it takes a transaction-scoped advisory lock on the
 * payer and on the payee, in a fixed order, so that two concurrent payments
 * of one account can't both slip under a limit: without them the counts
 * would not be exact, and the comparison would not be of the same rules.
 *
 * Load it into a database where CREATE EXTENSION p2pay has been done:
 *
 *   psql -v ON_ERROR_STOP=1 -f bench/plpgsql_rules.sql
 *
 * It creates schema bench, the view bench.payments_in_base, the trigger
 * function bench.plpgsql_score() and the trigger payments_plpgsql_score on
 * p2pay.payments, created disabled.  Then
 *
 *   SELECT bench.use_plpgsql();  -- adds the indexes the queries need,
 *                                -- switches payments_score off, this on
 *   SELECT bench.use_p2pay();    -- the reverse
 *
 * Payments scored here are not counted in p2pay's per-account state and
 * keep amount_base NULL (the amounts are converted through currencies at
 * query time, as a user without p2pay would do): delete them (or TRUNCATE
 * p2pay.payments) before going back to p2pay's trigger.  Loading the file
 * again replaces what it created and leaves payments_plpgsql_score disabled.
 */

CREATE SCHEMA IF NOT EXISTS bench;
COMMENT ON SCHEMA bench IS
  'Benchmark helpers: the hand-written PL/pgSQL alternative to p2pay''s trigger.';

-- Every payment with its amount in the base currency.  The rate is read at
-- query time (p2pay fixes amount_base at insert time; the two agree while
-- rates don't change).
CREATE OR REPLACE VIEW bench.payments_in_base AS
  SELECT p.id, p.payer_id, p.payee_id, p.created_at,
         p.amount * c.rate_to_base AS base_amount
    FROM p2pay.payments p
    JOIN p2pay.currencies c ON c.code = p.currency;
COMMENT ON VIEW bench.payments_in_base IS
  'Payments with amount * rate_to_base: the amounts the hand-written rules compare.';

/*
 * The rules in docs/rules.md's catalogue order, which is the order of reasons.
 * Windows count a payment when its created_at is after NEW.created_at minus
 * the window, with no upper bound; the new payment is not in the table yet
 * (a BEFORE trigger), so each count adds it.  A rule whose amount condition
 * fails does not run its query.
 */
CREATE OR REPLACE FUNCTION bench.plpgsql_score() RETURNS trigger
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
  t          timestamptz := NEW.created_at;
  today      date := (NEW.created_at AT TIME ZONE 'UTC')::date;
  today_start timestamptz;
  month_start timestamptz;  -- 30 UTC days before today: the span of an account's normal
  amt        numeric;       -- this payment in the base currency
  n          bigint;
  total      numeric;
  mean       numeric;
  normal     numeric;       -- an account's usual count for the rule's window
  days       int;
  first_at   timestamptz;
  last_at    timestamptz;
  blocked    boolean := false;
  reasons    text[] := '{}';
  keep       float8 := 1;   -- product of (1 - weight) over the rules that fired
  score      float8;
BEGIN
  -- one payment of an account at a time, lower uuid first
  PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext(LEAST(NEW.payer_id, NEW.payee_id)::text));
  PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext(GREATEST(NEW.payer_id, NEW.payee_id)::text));
  today_start := today::timestamp AT TIME ZONE 'UTC';
  month_start := (today - 30)::timestamp AT TIME ZONE 'UTC';

  SELECT NEW.amount * c.rate_to_base INTO amt
    FROM p2pay.currencies c WHERE c.code = NEW.currency;

  -- amount_limit: amount above 10000
  IF amt > 10000 THEN
    reasons := reasons || 'amount_limit'::text;
    keep := keep * (1 - 0.5);
  END IF;

  -- payer_velocity_count: more than 10 payments in the last hour, and (with
  -- 7 days of history) more than 3 times the payer's normal for an hour:
  -- its payments per day over the last 30 days, divided by 24
  SELECT count(*) + 1 INTO n
    FROM p2pay.payments p
   WHERE p.payer_id = NEW.payer_id AND p.created_at > t - interval '1 hour';
  IF n > 10 THEN
    SELECT least(min(p.created_at), (SELECT min(q.created_at) FROM p2pay.payments q
                                      WHERE q.payee_id = NEW.payer_id))
      INTO first_at
      FROM p2pay.payments p WHERE p.payer_id = NEW.payer_id;
    days := least(30, coalesce(today - (first_at AT TIME ZONE 'UTC')::date, 0));
    SELECT count(*) INTO total
      FROM p2pay.payments p
     WHERE p.payer_id = NEW.payer_id
       AND p.created_at >= month_start AND p.created_at < today_start;
    normal := total / greatest(days, 1) / 24;
    IF days < 7 OR n > 3 * normal THEN
      reasons := reasons || 'payer_velocity_count'::text;
      keep := keep * (1 - 0.4);
    END IF;
  END IF;

  -- payer_velocity_amount: the payer's total in 24 hours above 20000
  SELECT amt + coalesce(sum(p.base_amount), 0) INTO total
    FROM bench.payments_in_base p
   WHERE p.payer_id = NEW.payer_id AND p.created_at > t - interval '24 hours';
  IF total > 20000 THEN
    reasons := reasons || 'payer_velocity_amount'::text;
    keep := keep * (1 - 0.4);
  END IF;

  -- payer_fan_out: more than 10 distinct payees in 24 hours, and (with 7
  -- days of history) more than 3 times the payer's normal distinct payees
  -- per day over the last 30 days
  SELECT count(DISTINCT p.payee_id) FILTER (WHERE p.payee_id <> NEW.payee_id) + 1 INTO n
    FROM p2pay.payments p
   WHERE p.payer_id = NEW.payer_id AND p.created_at > t - interval '24 hours';
  IF n > 10 THEN
    SELECT least(min(p.created_at), (SELECT min(q.created_at) FROM p2pay.payments q
                                      WHERE q.payee_id = NEW.payer_id))
      INTO first_at
      FROM p2pay.payments p WHERE p.payer_id = NEW.payer_id;
    days := least(30, coalesce(today - (first_at AT TIME ZONE 'UTC')::date, 0));
    SELECT count(DISTINCT (p.payee_id, (p.created_at AT TIME ZONE 'UTC')::date)) INTO total
      FROM p2pay.payments p
     WHERE p.payer_id = NEW.payer_id
       AND p.created_at >= month_start AND p.created_at < today_start;
    normal := total / greatest(days, 1);
    IF days < 7 OR n > 3 * normal THEN
      reasons := reasons || 'payer_fan_out'::text;
      keep := keep * (1 - 0.3);
    END IF;
  END IF;

  -- payee_fan_in: more than 20 distinct payers into the payee in 24 hours,
  -- and (with 7 days of history) more than 3 times its normal
  SELECT count(DISTINCT p.payer_id) FILTER (WHERE p.payer_id <> NEW.payer_id) + 1 INTO n
    FROM p2pay.payments p
   WHERE p.payee_id = NEW.payee_id AND p.created_at > t - interval '24 hours';
  IF n > 20 THEN
    SELECT least(min(p.created_at), (SELECT min(q.created_at) FROM p2pay.payments q
                                      WHERE q.payer_id = NEW.payee_id))
      INTO first_at
      FROM p2pay.payments p WHERE p.payee_id = NEW.payee_id;
    days := least(30, coalesce(today - (first_at AT TIME ZONE 'UTC')::date, 0));
    SELECT count(DISTINCT (p.payer_id, (p.created_at AT TIME ZONE 'UTC')::date)) INTO total
      FROM p2pay.payments p
     WHERE p.payee_id = NEW.payee_id
       AND p.created_at >= month_start AND p.created_at < today_start;
    normal := total / greatest(days, 1);
    IF days < 7 OR n > 3 * normal THEN
      reasons := reasons || 'payee_fan_in'::text;
      keep := keep * (1 - 0.4);
    END IF;
  END IF;

  -- structuring: an amount in [9000, 10000), and at least 3 such payments
  -- by the payer in 24 hours, this one included
  IF amt >= 9000 AND amt < 10000 THEN
    SELECT count(*) + 1 INTO n
      FROM bench.payments_in_base p
     WHERE p.payer_id = NEW.payer_id AND p.created_at > t - interval '24 hours'
       AND p.base_amount >= 9000 AND p.base_amount < 10000;
    IF n >= 3 THEN
      reasons := reasons || 'structuring'::text;
      keep := keep * (1 - 0.6);
    END IF;
  END IF;

  -- new_payee_high_amount: the first payment ever from payer to payee, above 1000
  IF amt > 1000 AND NOT EXISTS (SELECT 1 FROM p2pay.payments p
                                 WHERE p.payer_id = NEW.payer_id AND p.payee_id = NEW.payee_id) THEN
    reasons := reasons || 'new_payee_high_amount'::text;
    keep := keep * (1 - 0.2);
  END IF;

  -- new_account_high_amount: a payer account opened in the last 7 days pays above 1000
  IF amt > 1000 AND EXISTS (SELECT 1 FROM p2pay.users u
                             WHERE u.id = NEW.payer_id AND u.created_at > t - interval '7 days') THEN
    reasons := reasons || 'new_account_high_amount'::text;
    keep := keep * (1 - 0.3);
  END IF;

  -- round_trip: the payee paid the payer at least 1000 in 24 hours, and this is at least 1000
  IF amt >= 1000 AND EXISTS (SELECT 1 FROM bench.payments_in_base p
                              WHERE p.payer_id = NEW.payee_id AND p.payee_id = NEW.payer_id
                                AND p.created_at > t - interval '24 hours'
                                AND p.base_amount >= 1000) THEN
    reasons := reasons || 'round_trip'::text;
    keep := keep * (1 - 0.3);
  END IF;

  -- unregistered_method: the method is not one the payer registered
  IF NOT EXISTS (SELECT 1 FROM p2pay.user_payment_methods m
                  WHERE m.user_id = NEW.payer_id AND m.payment_method_id = NEW.payment_method_id) THEN
    reasons := reasons || 'unregistered_method'::text;
    keep := keep * (1 - 0.25);
  END IF;

  -- amount_deviation: at least 5 earlier payments, and the amount above 5 times their mean
  SELECT count(*), avg(p.base_amount) INTO n, mean
    FROM bench.payments_in_base p WHERE p.payer_id = NEW.payer_id;
  IF n >= 5 AND amt > 5 * mean THEN
    reasons := reasons || 'amount_deviation'::text;
    keep := keep * (1 - 0.25);
  END IF;

  -- dormant_reactivation: the payer's previous payment is older than 90 days, amount above 1000
  IF amt > 1000 THEN
    SELECT max(p.created_at) INTO last_at
      FROM p2pay.payments p WHERE p.payer_id = NEW.payer_id AND p.created_at <= t;
    IF last_at < t - interval '90 days' THEN
      reasons := reasons || 'dormant_reactivation'::text;
      keep := keep * (1 - 0.3);
    END IF;
  END IF;

  -- blocklist: payer or payee listed, the entry not expired at the payment's time
  IF EXISTS (SELECT 1 FROM p2pay.blocklist b
              WHERE b.user_id IN (NEW.payer_id, NEW.payee_id)
                AND (b.expires_at IS NULL OR b.expires_at > t)) THEN
    blocked := true;
    reasons := reasons || 'blocklist'::text;
    keep := keep * (1 - 1.0);
  END IF;

  -- pass_through: the payer received from at least 5 distinct payers in 24
  -- hours, and this payment (at least 1000) moves at least half of it on
  IF amt >= 1000 THEN
    SELECT count(DISTINCT p.payer_id), sum(p.base_amount) INTO n, total
      FROM bench.payments_in_base p
     WHERE p.payee_id = NEW.payer_id AND p.created_at > t - interval '24 hours';
    IF n >= 5 AND total > 0 AND amt >= 0.5 * total THEN
      reasons := reasons || 'pass_through'::text;
      keep := keep * (1 - 0.6);
    END IF;
  END IF;

  -- cycle: this payment (at least 1000) closes a loop payer -> payee -> C
  -- -> payer, or payer -> payee -> C -> D -> payer, every leg at least 1000
  -- in 24 hours
  IF amt >= 1000 AND (
       EXISTS (SELECT 1
                 FROM bench.payments_in_base bc
                 JOIN bench.payments_in_base ca ON ca.payer_id = bc.payee_id
                WHERE bc.payer_id = NEW.payee_id AND bc.payee_id <> NEW.payer_id
                  AND bc.created_at > t - interval '24 hours' AND bc.base_amount >= 1000
                  AND ca.payee_id = NEW.payer_id
                  AND ca.created_at > t - interval '24 hours' AND ca.base_amount >= 1000)
    OR EXISTS (SELECT 1
                 FROM bench.payments_in_base bc
                 JOIN bench.payments_in_base cd ON cd.payer_id = bc.payee_id
                 JOIN bench.payments_in_base da ON da.payer_id = cd.payee_id
                WHERE bc.payer_id = NEW.payee_id AND bc.payee_id <> NEW.payer_id
                  AND bc.created_at > t - interval '24 hours' AND bc.base_amount >= 1000
                  AND cd.payee_id NOT IN (NEW.payer_id, NEW.payee_id)
                  AND cd.created_at > t - interval '24 hours' AND cd.base_amount >= 1000
                  AND da.payee_id = NEW.payer_id
                  AND da.created_at > t - interval '24 hours' AND da.base_amount >= 1000)) THEN
    reasons := reasons || 'cycle'::text;
    keep := keep * (1 - 0.5);
  END IF;

  -- rounded to 12 decimals so that a score equal to a threshold reaches it
  score := round((1 - keep)::numeric, 12)::float8;
  NEW.risk_score := score;
  NEW.reasons := reasons;
  NEW.decision := CASE WHEN blocked THEN 'decline'
                       WHEN score >= 0.8 THEN 'decline'
                       WHEN score >= 0.3 THEN 'review'
                       ELSE 'approve' END::p2pay.decision;
  NEW.is_approved := NEW.decision = 'approve';
  RETURN NEW;
END
$$;
COMMENT ON FUNCTION bench.plpgsql_score() IS
  'BEFORE INSERT trigger: p2pay''s default rules by hand, one query per rule over p2pay.payments; the benchmark''s alternative.';

DROP TRIGGER IF EXISTS payments_plpgsql_score ON p2pay.payments;
CREATE TRIGGER payments_plpgsql_score BEFORE INSERT ON p2pay.payments
  FOR EACH ROW EXECUTE FUNCTION bench.plpgsql_score();
ALTER TABLE p2pay.payments DISABLE TRIGGER payments_plpgsql_score;

-- Score with the hand-written trigger: add the indexes its queries need
-- (p2pay's payments_payer_time_idx already serves the payer's windows) and
-- swap the triggers.
CREATE OR REPLACE FUNCTION bench.use_plpgsql() RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- fan-in, pass-through and an account's first payment as payee
  CREATE INDEX IF NOT EXISTS payments_bench_payee_time_idx
    ON p2pay.payments (payee_id, created_at);
  -- new payee, round trip and the legs of a cycle: one pair's payments
  CREATE INDEX IF NOT EXISTS payments_bench_pair_time_idx
    ON p2pay.payments (payer_id, payee_id, created_at);
  ALTER TABLE p2pay.payments DISABLE TRIGGER payments_score;
  ALTER TABLE p2pay.payments ENABLE TRIGGER payments_plpgsql_score;
END
$$;
COMMENT ON FUNCTION bench.use_plpgsql() IS
  'Score payments with the hand-written PL/pgSQL trigger: creates its indexes, disables payments_score, enables payments_plpgsql_score.';

-- Score with p2pay's trigger again: the reverse of use_plpgsql().
CREATE OR REPLACE FUNCTION bench.use_p2pay() RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  DROP INDEX IF EXISTS p2pay.payments_bench_payee_time_idx;
  DROP INDEX IF EXISTS p2pay.payments_bench_pair_time_idx;
  ALTER TABLE p2pay.payments DISABLE TRIGGER payments_plpgsql_score;
  ALTER TABLE p2pay.payments ENABLE TRIGGER payments_score;
END
$$;
COMMENT ON FUNCTION bench.use_p2pay() IS
  'Score payments with p2pay''s C trigger: drops the hand-written trigger''s indexes, disables payments_plpgsql_score, enables payments_score.';
