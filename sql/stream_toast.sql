-- The stream never drops a value TOAST keeps out of line: an update's WAL
-- record lacks the values it left unchanged in TOAST, and the plugin takes
-- them from the old row, which REPLICA IDENTITY FULL logs whole.  Where the
-- WAL doesn't hold a value (the replica identity changed), the event
-- carries null for it and a WARNING names the payment and the column.
CREATE EXTENSION p2pay;
UPDATE p2pay.rules SET weight = 0.3 WHERE name = 'unregistered_method';
SELECT 'created' FROM pg_create_logical_replication_slot('p2pay_toast', 'p2pay');

INSERT INTO p2pay.users (id, created_at) VALUES
  ('00000000-0000-4000-8000-00000000000a', '2020-01-01'),
  ('00000000-0000-4000-8000-00000000000b', '2020-01-01');

-- A payment as an event must carry it, field by field.
CREATE FUNCTION as_event(p p2pay.payments) RETURNS jsonb LANGUAGE sql AS $$
  SELECT jsonb_build_object(
    'transaction_id', p.transaction_id, 'payer_id', p.payer_id, 'payee_id', p.payee_id,
    'amount', p.amount::text, 'currency', p.currency,
    'payment_method_id', p.payment_method_id,
    'created_at', to_char(p.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'risk_score', p.risk_score, 'decision', p.decision, 'reasons', p.reasons)
$$;
-- Deleted payments, as they were.
CREATE TABLE gone (transaction_id uuid, row jsonb);
-- The events since the last call: each with its payment's reasons counted,
-- and whether it carries the payment as the table has it now (or had it,
-- if deleted).
CREATE FUNCTION events() RETURNS TABLE (event text, tid text, old_decision text,
                                        decision text, reasons int, complete boolean)
LANGUAGE sql AS $$
  SELECT e->>'event', right(e->>'transaction_id', 2), e->>'old_decision', e->>'decision',
         CASE jsonb_typeof(e->'reasons') WHEN 'array' THEN jsonb_array_length(e->'reasons') END,
         (e - 'event' - 'old_decision') =
           coalesce((SELECT as_event(p) FROM p2pay.payments p
                      WHERE p.transaction_id::text = e->>'transaction_id'),
                    (SELECT g.row FROM gone g
                      WHERE g.transaction_id::text = e->>'transaction_id'))
    FROM (SELECT data::jsonb AS e
            FROM pg_logical_slot_get_changes('p2pay_toast', NULL, NULL, 'include-approved', 'on',
                   'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0')) s
$$;
-- A thousand md5 strings: about 33 kB that compress poorly, so that the
-- array is stored out of line.
CREATE FUNCTION big_reasons() RETURNS text[] LANGUAGE sql AS $$
  SELECT array_agg(md5(i::text) ORDER BY i) FROM generate_series(1, 1000) i
$$;
CREATE FUNCTION pay(tid int) RETURNS p2pay.decision LANGUAGE sql AS $$
  INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency,
                              payment_method_id, created_at)
  VALUES (('bbbbbbbb-0000-4000-8000-' || lpad(tid::text, 12, '0'))::uuid,
          '00000000-0000-4000-8000-00000000000a', '00000000-0000-4000-8000-00000000000b',
          20 + tid, 'USD', '00000000-0000-4000-8000-000000000001',
          '2026-03-01 10:00:00.123456+00'::timestamptz + tid * interval '1 minute')
  RETURNING decision
$$;
CREATE FUNCTION tid(n int) RETURNS uuid LANGUAGE sql AS $$
  SELECT ('bbbbbbbb-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid
$$;

-- A flagged insert with a large reasons array (loaded with the trigger off,
-- as a bulk load does), which goes out of line: the event has all of it.
SET session_replication_role = replica;
INSERT INTO p2pay.payments (transaction_id, payer_id, payee_id, amount, currency,
                            payment_method_id, created_at, risk_score, decision, reasons)
VALUES (tid(1), '00000000-0000-4000-8000-00000000000a', '00000000-0000-4000-8000-00000000000b',
        42.50, 'EUR', '00000000-0000-4000-8000-000000000001', '2026-03-01 09:00:00+00',
        0.75, 'review', big_reasons());
RESET session_replication_role;
-- (in the TOAST table of the table holding it: payments, or its partition)
SELECT pg_relation_size(reltoastrelid) > 0 AS out_of_line
  FROM pg_class WHERE oid = (SELECT tableoid FROM p2pay.payments WHERE transaction_id = tid(1));
SELECT * FROM events();

-- Payments scored by the trigger, whose reasons the owner then makes large:
-- the update that changes only reasons emits nothing; the decision changes
-- that follow, by resolve() and by the owner's UPDATE, leave reasons in
-- TOAST untouched, and their events still carry the whole array.
SELECT pay(2), pay(3);
SELECT * FROM events();
UPDATE p2pay.payments SET reasons = reasons || big_reasons()
 WHERE transaction_id IN (tid(2), tid(3));
SELECT * FROM events();
SELECT p2pay.resolve(tid(2), 'approve');
UPDATE p2pay.payments SET decision = 'decline' WHERE transaction_id = tid(3);
SELECT * FROM events();

-- The whole old row of a delete, reasons and all.
SELECT pay(5);
SELECT * FROM events();
UPDATE p2pay.payments SET reasons = big_reasons() WHERE transaction_id = tid(5);
WITH d AS (DELETE FROM p2pay.payments p WHERE transaction_id = tid(5)
           RETURNING p.transaction_id, as_event(p))
INSERT INTO gone SELECT * FROM d;
SELECT * FROM events();

-- With another replica identity the WAL lacks the old row, and so the
-- values left in TOAST.  (p2pay's own triggers refuse such changes; these
-- are made with them off.)  The events carry null for what the WAL doesn't
-- hold, with a warning naming the payment and the columns.
ALTER TABLE p2pay.payments DISABLE TRIGGER USER;
ALTER TABLE p2pay.payments REPLICA IDENTITY DEFAULT;
UPDATE p2pay.payments SET decision = 'review' WHERE transaction_id = tid(3);
-- the old row holds only the primary key (id), so not even which payment
DELETE FROM p2pay.payments WHERE transaction_id = tid(2);
ALTER TABLE p2pay.payments REPLICA IDENTITY USING INDEX payments_transaction_id_key;
DELETE FROM p2pay.payments WHERE transaction_id = tid(3);
-- no old row at all: the delete is still an event
ALTER TABLE p2pay.payments REPLICA IDENTITY NOTHING;
DELETE FROM p2pay.payments WHERE transaction_id = tid(1);
ALTER TABLE p2pay.payments ENABLE TRIGGER USER;
SELECT data FROM pg_logical_slot_get_changes('p2pay_toast', NULL, NULL,
  'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');

-- REPLICA IDENTITY FULL again: complete events, no warning.
ALTER TABLE p2pay.payments REPLICA IDENTITY FULL;
SELECT pay(4);
SELECT * FROM events();
UPDATE p2pay.payments SET reasons = big_reasons() WHERE transaction_id = tid(4);
SELECT p2pay.resolve(tid(4), 'decline');
SELECT * FROM events();

SELECT pg_drop_replication_slot('p2pay_toast');
DROP FUNCTION events(), as_event(p2pay.payments), big_reasons(), pay(int), tid(int);
DROP TABLE gone;
DROP EXTENSION p2pay;
