/* p2pay--1.0--1.1.sql: from 1.0 to 1.1 */

\echo Use "ALTER EXTENSION p2pay UPDATE TO '1.1'" to load this file. \quit

------------------------------------------------------------------------------
-- Retention: archiving deletes (p2pay.delete_mode)
------------------------------------------------------------------------------

-- A delete of a payment is a reversal (it leaves the per-account state and
-- is a deleted event on the stream) or, with p2pay.delete_mode = archive,
-- archiving (it stays in the state, and the stream passes over it).  This
-- trigger fixes the transaction's mode at its first delete and marks the
-- transaction in the WAL for the stream before each delete is logged.
CREATE FUNCTION @extschema@.mark_delete() RETURNS trigger
  AS 'MODULE_PATHNAME', 'p2pay_mark_delete_trigger' LANGUAGE C;
COMMENT ON FUNCTION @extschema@.mark_delete() IS
  'BEFORE DELETE trigger on payments: fixes the transaction''s p2pay.delete_mode at its first delete and marks archived and reversed deletes for the stream.';
-- A trigger function of p2pay's own, like the others: nobody needs EXECUTE
-- to fire it.
REVOKE ALL ON FUNCTION @extschema@.mark_delete() FROM PUBLIC;
CREATE TRIGGER payments_mark_delete BEFORE DELETE ON @extschema@.payments
  FOR EACH ROW EXECUTE FUNCTION @extschema@.mark_delete();
COMMENT ON FUNCTION @extschema@.forget_payment() IS
  'AFTER DELETE trigger on payments: takes a reversed payment out of the per-account state; an archived one (p2pay.delete_mode = archive) stays.';
