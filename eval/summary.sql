-- eval/summary.sql: the headline figures of one database where
-- scripts/eval.sh has replayed a simulated network through p2pay, after
-- eval/views.sql, as one line of JSON: the run's meta (simulator settings,
-- mode, timings), the overall counts, and per fraud typology its instances,
-- those caught, its payments and those flagged.  eval/tables.py composes the
-- tables that compare databases from these lines.
--
-- Run with psql -At (unaligned, tuples only).

\set ON_ERROR_STOP on
SET client_min_messages = warning;

SELECT json_build_object(
         'database', current_database(),
         'meta', (SELECT json_object_agg(key, value ORDER BY key) FROM eval.meta),
         'overall', (SELECT row_to_json(o) FROM eval.overall o),
         'typologies', (SELECT coalesce(json_agg(json_build_object(
                                   'typology', typology, 'instances', instances,
                                   'caught', caught, 'payments', payments, 'flagged', flagged)
                                 ORDER BY position, typology), '[]')
                          FROM eval.typology_summary))::text;
