-- A scored payment's facts are fixed: they were counted in the account
-- state.  Other columns may change.  DELETE takes a payment out of the
-- state; TRUNCATE empties the state with the payments.
CREATE EXTENSION p2pay;

INSERT INTO p2pay.users (id)
  SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid FROM generate_series(1, 3) n;
INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, transaction_id)
VALUES ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000002', 10, 'USD',
        '00000000-0000-4000-8000-000000000001', 'aaaaaaaa-0000-4000-8000-000000000001');

UPDATE p2pay.payments SET amount = 20;
-- even a change of scale: the stream carries the amount as written
UPDATE p2pay.payments SET amount = 10.0;
UPDATE p2pay.payments SET payee_id = '00000000-0000-4000-8000-000000000003';
UPDATE p2pay.payments SET created_at = created_at - interval '1 day';
UPDATE p2pay.payments SET currency = 'EUR';
UPDATE p2pay.payments SET transaction_id = gen_random_uuid();
UPDATE p2pay.payments SET amount_base = 0;
-- the verdict columns are not facts; is_approved follows decision
UPDATE p2pay.payments SET decision = 'review', is_approved = true, reasons = '{analyst_hold}'
RETURNING amount, decision, is_approved, reasons;
UPDATE p2pay.payments SET decision = 'approve', reasons = '{}'
RETURNING amount, decision, is_approved, reasons;

-- State equal to what the remaining payments add up to, compared as text.
CREATE VIEW derived AS
  SELECT 'account' AS kind, u.id::text AS key,
         (SELECT count(*) FROM p2pay.payments p WHERE p.payer_id = u.id) || '/' ||
         (SELECT coalesce(sum(amount_base), 0) FROM p2pay.payments p WHERE p.payer_id = u.id) || '/' ||
         (SELECT count(*) FROM p2pay.payments p WHERE p.payee_id = u.id) || '/' ||
         (SELECT coalesce(sum(amount_base), 0) FROM p2pay.payments p WHERE p.payee_id = u.id) AS val
    FROM p2pay.users u WHERE u.id IN (SELECT user_id FROM p2pay.account_stats)
  UNION ALL
  SELECT 'pair', payer_id || '>' || payee_id,
         count(*) || '/' || sum(amount_base) || '/' || min(created_at) || '/' || max(created_at)
    FROM p2pay.payments GROUP BY payer_id, payee_id
  UNION ALL
  SELECT 'hour', payer_id || '@' || date_trunc('hour', created_at AT TIME ZONE 'UTC'),
         sum(amount_base)::text
    FROM p2pay.payments GROUP BY 2;
CREATE VIEW kept AS
  SELECT 'account' AS kind, user_id::text AS key,
         out_count || '/' || out_sum || '/' || in_count || '/' || in_sum AS val
    FROM p2pay.account_stats
  UNION ALL
  SELECT 'pair', payer_id || '>' || payee_id, n || '/' || total || '/' || first_at || '/' || last_at
    FROM p2pay.pair_stats
  UNION ALL
  SELECT 'hour', d.user_id || '@' || (d.day + h.hour * interval '1 hour'), h.total::text
    FROM p2pay.account_daily d, unnest(d.out_hours, d.out_hour_sums) h (hour, total);

INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id, created_at)
SELECT '00000000-0000-4000-8000-000000000001',
       ('00000000-0000-4000-8000-00000000000' || (2 + i % 2))::uuid, 100 + i, 'USD',
       '00000000-0000-4000-8000-000000000001', '2026-03-01 10:00+00'::timestamptz + i * interval '20 minutes'
  FROM generate_series(1, 8) i;
SELECT kind, count(*) FROM kept GROUP BY kind ORDER BY kind;
SELECT count(*) AS differences FROM ((TABLE derived EXCEPT TABLE kept) UNION ALL (TABLE kept EXCEPT TABLE derived)) d;
-- a payment in the middle of a pair, one at the end of a pair and the only
-- one of its hour
DELETE FROM p2pay.payments WHERE amount IN (103, 108, 104);
SELECT count(*) AS differences FROM ((TABLE derived EXCEPT TABLE kept) UNION ALL (TABLE kept EXCEPT TABLE derived)) d;
-- every payment of one pair
DELETE FROM p2pay.payments WHERE payee_id = '00000000-0000-4000-8000-000000000003';
SELECT count(*) AS differences FROM ((TABLE derived EXCEPT TABLE kept) UNION ALL (TABLE kept EXCEPT TABLE derived)) d;
SELECT count(*) AS pairs FROM p2pay.pair_stats;

TRUNCATE p2pay.payments;
SELECT (SELECT count(*) FROM p2pay.account_stats) AS accounts,
       (SELECT count(*) FROM p2pay.pair_stats) AS pairs,
       (SELECT count(*) FROM p2pay.account_daily) AS days;

DROP VIEW derived, kept;
DROP EXTENSION p2pay;
