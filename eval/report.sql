-- eval/report.sql: the make eval report of one database, as Markdown, from
-- a database where scripts/eval.sh has replayed a simulated network through
-- p2pay, after eval/views.sql.
--
-- Run with psql -At (unaligned, tuples only): every SELECT below returns one
-- text cell, a paragraph or a table.  psql's variable part chooses what is
-- printed: header (the run and the network), details (what was caught and
-- flagged, and by which rules), config (the rules' configuration), or all
-- three when it is unset.  scripts/eval.sh prints the header and the
-- configuration once, and the details of each database replayed.

\set ON_ERROR_STOP on
SET client_min_messages = warning;

\if :{?part}
\else
\set part all
\endif
SELECT :'part' IN ('all', 'header') AS part_header,
       :'part' IN ('all', 'details') AS part_details,
       :'part' IN ('all', 'config') AS part_config,
       EXISTS (SELECT FROM p2pay.rules WHERE mode = 'shadow') AS has_shadow \gset

------------------------------------------------------------------------------
-- The run and the network
------------------------------------------------------------------------------

\if :part_header
WITH m AS (SELECT jsonb_object_agg(key, value) AS v FROM eval.meta)
SELECT format(E'# p2pay evaluation\n\n'
              'Run %s, p2pay commit %s.\n\n'
              'Simulated network (eval/simulate.py, seed %s, data sha256 %s…): %s people '
              '(%s of them tenants) in friend circles, %s landlords, %s businesses with %s customers '
              'a weekday, %s busy ones with %s, %s opening during the period with %s; '
              '%s planted fraud instances per typology (%s).  Scored period %s to %s '
              '(%s days), after %s days of warm-up and months of sparse history: %s payments in all, '
              '%s of them in the scored period.',
              v->>'run_date', v->>'commit', v->>'seed', v->>'data_sha256', v->>'people',
              v->>'tenants', v->>'landlords', v->>'businesses', v->>'customers',
              coalesce(v->>'busy_businesses', '0'), coalesce(v->>'busy_customers', '-'),
              coalesce(v->>'new_businesses', '0'), coalesce(v->>'new_customers', '-'),
              CASE WHEN (SELECT count(DISTINCT planned) FROM eval.typologies) = 1
                   THEN (SELECT min(planned)::text FROM eval.typologies) ELSE 'varying' END,
              replace(v->>'instances', ',', ', '),
              left(v->>'period_start', 10), left(v->>'period_end', 10), v->>'days',
              v->>'warmup_days', v->>'payments', v->>'payments_in_period')
       || format(E'\n\nOther simulator settings: friend_rate %s, large_per_day %s, marketplace_rate %s, '
                 'occasional_share %s, unregistered_share %s, eur_share %s.',
                 v->>'friend_rate', v->>'large_per_day', v->>'marketplace_rate',
                 v->>'occasional_share', v->>'unregistered_share', v->>'eur_share')
       || format(E'\n\nRules: review at %s, decline at %s; %s rules active, %s in shadow, %s off%s.',
                 s.review_threshold, s.decline_threshold,
                 (SELECT count(*) FROM p2pay.rules WHERE mode = 'active'),
                 (SELECT count(*) FROM p2pay.rules WHERE mode = 'shadow'),
                 (SELECT count(*) FROM p2pay.rules WHERE mode = 'off'),
                 CASE WHEN v->>'rules_sql' <> 'none'
                      THEN format(', changed by %s before the replay', v->>'rules_sql') ELSE '' END)
  FROM m, p2pay.settings s;
\endif

------------------------------------------------------------------------------
-- What was caught and flagged
------------------------------------------------------------------------------

\if :part_details
WITH m AS (SELECT jsonb_object_agg(key, value) AS v FROM eval.meta)
SELECT CASE WHEN v->>'mode' = 'cold'
            THEN format(E'\nCold start: only the %s payments of the scored period were loaded, '
                        'so that no account had any history in p2pay before its first payment '
                        '(account ages are the true ones).  Replayed through the trigger in '
                        'created_at order, %s a transaction, in %s s.',
                        v->>'replayed', v->>'batch', v->>'replay_seconds')
            ELSE format(E'\nWarm: all %s payments replayed through the trigger in created_at '
                        'order, %s a transaction, in %s s; the %s of the scored period are scored '
                        'with the history before them.',
                        v->>'replayed', v->>'batch', v->>'replay_seconds', v->>'payments_in_period')
       END
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

\endif

------------------------------------------------------------------------------
-- The rules' configuration
------------------------------------------------------------------------------

\if :part_config
SELECT E'\n## Rule configuration\n\n'
       || format('Thresholds: review at %s, decline at %s.', review_threshold, decline_threshold) || E'\n'
  FROM p2pay.settings;
SELECT eval.md_table($q$
  SELECT name AS rule, mode::text AS mode, weight, params::text AS params
    FROM p2pay.rules ORDER BY name
$q$);
\endif
