-- eval/views.sql: the functions and views that eval/report.sql and
-- eval/summary.sql read, in schema eval of a database where scripts/eval.sh
-- has replayed a simulated network through p2pay.  They stay for a kept
-- cluster (EVAL_KEEP=1).  Rule names come from the payments' reasons and
-- from p2pay.rules, never from this file: a rule added to the catalogue
-- shows up by itself.
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
