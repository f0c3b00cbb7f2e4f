/*
 * locks.h: the account locks every writer of the per-account state takes
 * first (locks.c).
 */
#ifndef P2PAY_LOCKS_H
#define P2PAY_LOCKS_H

#include "facts.h"
#include "rules.h"

extern int	p2pay_multi_payment_lock_timeout;	/* p2pay.multi_payment_lock_timeout */
extern int	p2pay_lock_escalation_accounts; /* p2pay.lock_escalation_accounts */
extern void p2pay_lock_register_callbacks(void);
extern void p2pay_lock_accounts(const pg_uuid_t *a, const pg_uuid_t *b, Oid caller);
extern void p2pay_lock_payment(Oid nspid, const P2payConfig *cfg, const PaymentInput *in,
							   const PaymentFacts *facts, Oid caller);
extern bool p2pay_accounts_locked(void);

#endif							/* P2PAY_LOCKS_H */
