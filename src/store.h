/*
 * store.h: the per-account state tables (store.c): the facts read from
 * them for the trigger, recording a payment in them, and forgetting a
 * reversed one.  The accounts are locked (locks.h) before any of these.
 */
#ifndef P2PAY_STORE_H
#define P2PAY_STORE_H

#include "facts.h"
#include "rules.h"

extern void p2pay_read_facts(const P2payConfig *cfg, Oid nspid, const PaymentInput *in,
							 PaymentFacts *facts, bool record);
extern bool p2pay_paid_after(Oid nspid, const pg_uuid_t *account, const pg_uuid_t *except,
							 TimestampTz after, bool latest);
extern void p2pay_forget_payment(const pg_uuid_t *payer, const pg_uuid_t *payee,
								 TimestampTz created_at, Numeric amount_base);
extern void p2pay_statement_begins(void);
extern void p2pay_statement_ends(void);
extern bool p2pay_statement_framed(void);
extern bool p2pay_statement_note(int64 id, bool recorded);
extern void p2pay_write_pending(void);
extern void p2pay_statement_register_callbacks(void);

#endif							/* P2PAY_STORE_H */
