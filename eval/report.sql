-- eval/report.sql: the make eval report, as Markdown, from a database where
-- scripts/eval.sh has replayed the simulated network through p2pay.
--
-- Run with psql -At (unaligned, tuples only): every SELECT below returns one
-- text cell, a paragraph or a table.  The views it creates in schema eval
-- stay for a kept cluster (EVAL_KEEP=1).  Rule names come from the payments'
-- reasons and from p2pay.rules, never from this file: a rule added to the
-- catalogue shows up by itself.
--
-- A payment is flagged when the trigger's decision is review or decline.  A
-- fraud instance is caught when at least one of its payments is flagged.

\set ON_ERROR_STOP on
SET client_min_messages = warning;

-- A Markdown table of a query's result, columns padded so that it reads in
-- a terminal too; columns holding only numbers are right-aligned.
CREATE OR REPLACE FUNCTION eval.md_table(query text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  data    json;
  cols    text[];
  ncols   integer;
  nrows   integer;
  width   integer[];
  numeric_col boolean[];
  cells   text[];
  cell    text;
  lines   text[] := '{}';
  parts   text[];
BEGIN
  EXECUTE format('SELECT coalesce(json_agg(q), ''[]'') FROM (%s) q', query) INTO data;
  nrows := json_array_length(data);
  IF nrows = 0 THEN
    RETURN '_(none)_';
  END IF;
  SELECT array_agg(k ORDER BY n) INTO cols
    FROM json_object_keys(data -> 0) WITH ORDINALITY AS t(k, n);
  ncols := cardinality(cols);
  width := array_fill(3, ARRAY[ncols]);
  numeric_col := array_fill(true, ARRAY[ncols]);
  cells := array_fill(NULL::text, ARRAY[nrows * ncols]);
  FOR i IN 0 .. nrows - 1 LOOP
    FOR j IN 1 .. ncols LOOP
      cell := replace(coalesce(data -> i ->> cols[j], ''), '|', '\|');
      cells[i * ncols + j] := cell;
      width[j] := greatest(width[j], length(cell), length(cols[j]));
      IF cell <> '' AND cell !~ '^-?[0-9]+(\.[0-9]+)?$' THEN
        numeric_col[j] := false;
      END IF;
    END LOOP;
  END LOOP;
  parts := '{}';
  FOR j IN 1 .. ncols LOOP
    parts := parts || rpad(cols[j], width[j]);
  END LOOP;
  lines := lines || ('| ' || array_to_string(parts, ' | ') || ' |');
  parts := '{}';
  FOR j IN 1 .. ncols LOOP
    parts := parts || CASE WHEN numeric_col[j] THEN repeat('-', width[j] + 1) || ':'
                           ELSE repeat('-', width[j] + 2) END;
  END LOOP;
  lines := lines || ('|' || array_to_string(parts, '|') || '|');
  FOR i IN 0 .. nrows - 1 LOOP
    parts := '{}';
    FOR j IN 1 .. ncols LOOP
      cell := cells[i * ncols + j];
      parts := parts || CASE WHEN numeric_col[j] THEN lpad(cell, width[j]) ELSE rpad(cell, width[j]) END;
    END LOOP;
    lines := lines || ('| ' || array_to_string(parts, ' | ') || ' |');
  END LOOP;
  RETURN array_to_string(lines, E'\n');
END $$;

-- Percentage of part in whole, one decimal; NULL when whole is 0.
CREATE OR REPLACE FUNCTION eval.pct(part numeric, whole numeric) RETURNS numeric
LANGUAGE sql IMMUTABLE AS $$ SELECT round(100.0 * part / nullif(whole, 0), 1) $$;

-- "rule n, rule n, ..." from (rule, n) pairs, most frequent first.
CREATE OR REPLACE FUNCTION eval.rule_list(rules text[]) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT coalesce(string_agg(format('%s %s', r, n), ', ' ORDER BY n DESC, r), '')
    FROM (SELECT r, count(*) AS n FROM unnest(rules) AS r GROUP BY r) x
$$;

-- Every payment of the scored period with its label and its verdict.
CREATE OR REPLACE VIEW eval.scored AS
SELECT l.transaction_id, l.typology, l.instance, l.step, l.is_fraud,
       p.created_at, p.amount_base, p.decision, p.reasons,
       p.decision <> 'approve' AS flagged,
       coalesce(p.shadow_decision, p.decision) <> 'approve' AS shadow_flagged,
       coalesce(p.shadow_reasons, '{}') AS shadow_reasons
  FROM eval.labels l
  JOIN p2pay.payments p USING (transaction_id)
 WHERE l.in_period;

-- The typologies in the simulator's order.
CREATE OR REPLACE VIEW eval.typologies AS
SELECT split_part(item, '=', 1) AS typology, n AS position,
       split_part(item, '=', 2)::integer AS planned
  FROM eval.meta, unnest(string_to_array(value, ',')) WITH ORDINALITY AS u(item, n)
 WHERE key = 'instances';

-- Per fraud typology: instances caught, fraudulent payments flagged.
CREATE OR REPLACE VIEW eval.typology_summary AS
SELECT s.typology,
       count(DISTINCT s.instance) AS instances,
       count(DISTINCT s.instance) FILTER (WHERE s.flagged) AS caught,
       count(*) AS payments,
       count(*) FILTER (WHERE s.flagged) AS flagged,
       count(*) FILTER (WHERE s.decision = 'decline') AS declined,
       count(DISTINCT s.instance) FILTER (WHERE s.shadow_flagged) AS shadow_caught,
       count(*) FILTER (WHERE s.shadow_flagged) AS shadow_flagged,
       coalesce(min(t.position), 1000) AS position
  FROM eval.scored s LEFT JOIN eval.typologies t USING (typology)
 WHERE s.is_fraud
 GROUP BY s.typology;

-- Per fraud typology and step: what was flagged, and which rules fired
-- (whatever the decision).
CREATE OR REPLACE VIEW eval.step_rules AS
SELECT s.typology, s.step, count(*) AS payments,
       count(*) FILTER (WHERE s.flagged) AS flagged,
       (SELECT eval.rule_list(array_agg(x))
          FROM eval.scored s2, unnest(s2.reasons) AS x
         WHERE s2.is_fraud AND s2.typology = s.typology AND s2.step = s.step) AS rules_fired,
       (SELECT eval.rule_list(array_agg(x))
          FROM eval.scored s2, unnest(s2.shadow_reasons) AS x
         WHERE s2.is_fraud AND s2.typology = s.typology AND s2.step = s.step) AS shadow_rules_fired,
       coalesce(min(t.position), 1000) AS position, min(s.created_at) AS first_at
  FROM eval.scored s
  LEFT JOIN eval.typologies t USING (typology)
 WHERE s.is_fraud
 GROUP BY s.typology, s.step;

-- Per rule: how often it fired on honest and on fraudulent payments, and
-- how many honest flags it is part of.
CREATE OR REPLACE VIEW eval.rule_summary AS
SELECT r.rule,
       count(*) FILTER (WHERE NOT s.is_fraud AND s.flagged) AS honest_flags,
       count(*) FILTER (WHERE NOT s.is_fraud AND s.flagged AND cardinality(s.reasons) = 1) AS sole_reason,
       count(*) FILTER (WHERE NOT s.is_fraud) AS fired_on_honest,
       count(*) FILTER (WHERE s.is_fraud) AS fired_on_fraud,
       count(DISTINCT (s.typology, s.instance)) FILTER (WHERE s.is_fraud) AS fraud_instances
  FROM eval.scored s, unnest(s.reasons) AS r(rule)
 GROUP BY r.rule;

-- Per kind of honest payment: how many were flagged, and by what.
CREATE OR REPLACE VIEW eval.honest_kinds AS
SELECT s.step AS kind, count(*) AS payments,
       count(*) FILTER (WHERE s.flagged) AS flagged,
       count(*) FILTER (WHERE s.shadow_flagged) AS shadow_flagged,
       (SELECT eval.rule_list(array_agg(x))
          FROM eval.scored s2, unnest(s2.reasons) AS x
         WHERE NOT s2.is_fraud AND s2.flagged AND s2.step = s.step) AS rules_on_flagged
  FROM eval.scored s
 WHERE NOT s.is_fraud
 GROUP BY s.step;

-- The headline figures.
CREATE OR REPLACE VIEW eval.overall AS
SELECT count(*) AS payments,
       count(*) FILTER (WHERE NOT is_fraud) AS honest,
       count(*) FILTER (WHERE is_fraud) AS fraud,
       count(*) FILTER (WHERE flagged) AS flagged,
       count(*) FILTER (WHERE decision = 'review') AS reviewed,
       count(*) FILTER (WHERE decision = 'decline') AS declined,
       count(*) FILTER (WHERE NOT is_fraud AND flagged) AS honest_flagged,
       count(*) FILTER (WHERE NOT is_fraud AND decision = 'decline') AS honest_declined,
       count(*) FILTER (WHERE is_fraud AND flagged) AS fraud_flagged,
       count(*) FILTER (WHERE shadow_flagged) AS shadow_flagged_all,
       count(*) FILTER (WHERE NOT is_fraud AND shadow_flagged) AS shadow_honest_flagged,
       count(*) FILTER (WHERE is_fraud AND shadow_flagged) AS shadow_fraud_flagged
  FROM eval.scored;

SELECT EXISTS (SELECT FROM p2pay.rules WHERE mode = 'shadow') AS has_shadow \gset

------------------------------------------------------------------------------
-- The report
------------------------------------------------------------------------------

WITH m AS (SELECT jsonb_object_agg(key, value) AS v FROM eval.meta)
SELECT format(E'# p2pay evaluation\n\n'
              'Run %s, p2pay commit %s.\n\n'
              'Simulated network (eval/simulate.py, seed %s, data sha256 %s…): %s people '
              '(%s of them tenants) in friend circles, %s landlords, %s businesses with %s customers '
              'a weekday; %s planted fraud instances per typology (%s).  Scored period %s to %s '
              '(%s days), after %s days of warm-up and months of sparse history replayed unscored.  '
              '%s payments replayed through the trigger in created_at order, %s a transaction, in %s s; '
              '%s of them in the scored period.',
              v->>'run_date', v->>'commit', v->>'seed', v->>'data_sha256', v->>'people',
              v->>'tenants', v->>'landlords', v->>'businesses', v->>'customers',
              CASE WHEN (SELECT count(DISTINCT planned) FROM eval.typologies) = 1
                   THEN (SELECT min(planned)::text FROM eval.typologies) ELSE 'varying' END,
              replace(v->>'instances', ',', ', '),
              left(v->>'period_start', 10), left(v->>'period_end', 10), v->>'days',
              v->>'warmup_days', v->>'payments', v->>'batch', v->>'replay_seconds',
              v->>'payments_in_period')
       || CASE WHEN v->>'rules_sql' <> 'none'
               THEN format(E'  Rules changed by %s before the replay.', v->>'rules_sql') ELSE '' END
       || format(E'\n\nOther simulator settings: friend_rate %s, large_per_day %s, marketplace_rate %s, '
                 'occasional_share %s, unregistered_share %s, eur_share %s.',
                 v->>'friend_rate', v->>'large_per_day', v->>'marketplace_rate',
                 v->>'occasional_share', v->>'unregistered_share', v->>'eur_share')
  FROM m;

SELECT E'\n## Fraud caught, per typology\n\n'
       'An instance is caught when at least one of its payments is flagged (review or decline).' || E'\n';
SELECT eval.md_table($q$
  SELECT typology, instances, caught, eval.pct(caught, instances) AS "caught %",
         payments AS "fraud payments", flagged, eval.pct(flagged, payments) AS "flagged %",
         declined
    FROM (SELECT typology, instances, caught, payments, flagged, declined, position
            FROM eval.typology_summary
          UNION ALL
          SELECT 'all fraud', sum(instances), sum(caught), sum(payments), sum(flagged),
                 sum(declined), 10000
            FROM eval.typology_summary) t
   ORDER BY position, typology
$q$);

SELECT E'\n## Overall\n';
SELECT eval.md_table($q$
  SELECT figure, value FROM eval.overall, LATERAL (VALUES
    (1, 'payments scored', payments::text),
    (2, 'honest payments', honest::text),
    (3, 'fraudulent payments', fraud::text),
    (4, 'honest payments flagged', honest_flagged::text),
    (5, 'false-positive rate (flagged honest / honest)', eval.pct(honest_flagged, honest) || ' %'),
    (6, 'honest payments declined', honest_declined::text),
    (7, 'review load: flagged per 1,000 payments', round(1000.0 * flagged / nullif(payments, 0), 1)::text),
    (8, '  of which reviews / declines per 1,000',
        round(1000.0 * reviewed / nullif(payments, 0), 1) || ' / ' ||
        round(1000.0 * declined / nullif(payments, 0), 1)),
    (9, 'share of flags that are fraud (precision)', eval.pct(fraud_flagged, flagged) || ' %'),
    (10, 'fraudulent payments flagged (recall)', eval.pct(fraud_flagged, fraud) || ' %')
  ) AS f(n, figure, value)
  ORDER BY n
$q$);

SELECT E'\n## Rules behind the honest flags\n\n'
       'Per rule that fired in the period: honest payments flagged with it among their reasons, '
       'those where it was the only reason, and how often it fired at all on honest and on '
       'fraudulent payments (whatever the decision).' || E'\n';
SELECT eval.md_table($q$
  SELECT rule, honest_flags AS "honest flags",
         eval.pct(honest_flags, (SELECT honest_flagged FROM eval.overall)) AS "% of honest flags",
         sole_reason AS "sole reason", fired_on_honest AS "fired on honest",
         fired_on_fraud AS "fired on fraud", fraud_instances AS "fraud instances"
    FROM eval.rule_summary
   ORDER BY honest_flags DESC, fired_on_honest DESC, rule
$q$);

SELECT E'\n## Honest payments flagged, per kind\n';
SELECT eval.md_table($q$
  SELECT kind, payments, flagged, eval.pct(flagged, payments) AS "flagged %",
         rules_on_flagged AS "rules on the flagged ones"
    FROM eval.honest_kinds
   ORDER BY flagged DESC, payments DESC, kind
$q$);

SELECT E'\n## Rules fired on the fraud, per typology and step\n\n'
       'Every rule that fired on the step''s payments, whatever the decision, with the number of payments.' || E'\n';
SELECT eval.md_table($q$
  SELECT typology, step, payments, flagged, eval.pct(flagged, payments) AS "flagged %",
         rules_fired AS "rules fired"
    FROM eval.step_rules
   ORDER BY position, typology, first_at
$q$);

\if :has_shadow
SELECT E'\n## With the shadow rules active\n\n'
       'Rules in shadow mode: ' || string_agg(name, ', ' ORDER BY name) ||
       '.  The same figures from shadow_decision, the decision each payment would have had with them active.' || E'\n'
  FROM p2pay.rules WHERE mode = 'shadow';
SELECT eval.md_table($q$
  SELECT typology, instances, shadow_caught AS caught, eval.pct(shadow_caught, instances) AS "caught %",
         payments AS "fraud payments", shadow_flagged AS flagged,
         eval.pct(shadow_flagged, payments) AS "flagged %"
    FROM eval.typology_summary
   ORDER BY position, typology
$q$);
SELECT '';
SELECT eval.md_table($q$
  SELECT eval.pct(shadow_honest_flagged, honest) || ' %' AS "false-positive rate",
         round(1000.0 * shadow_flagged_all / nullif(payments, 0), 1) AS "flagged per 1,000",
         eval.pct(shadow_fraud_flagged, fraud) || ' %' AS "fraud payments flagged"
    FROM eval.overall
$q$);
SELECT '';
SELECT eval.md_table($q$
  SELECT typology, step, shadow_rules_fired AS "shadow rules fired"
    FROM eval.step_rules WHERE shadow_rules_fired <> ''
   ORDER BY position, typology, first_at
$q$);
\endif

SELECT E'\n## Rule configuration\n\n'
       || format('Thresholds: review at %s, decline at %s.', review_threshold, decline_threshold) || E'\n'
  FROM p2pay.settings;
SELECT eval.md_table($q$
  SELECT name AS rule, mode::text AS mode, weight, params::text AS params
    FROM p2pay.rules ORDER BY name
$q$);
