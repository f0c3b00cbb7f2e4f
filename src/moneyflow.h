/*
 * moneyflow.h: the money-flow facts of a large payment and the accounts a
 * loop of four passes through, in SQL (moneyflow.c).
 */
#ifndef P2PAY_MONEYFLOW_H
#define P2PAY_MONEYFLOW_H

#include "facts.h"
#include "rules.h"

extern void p2pay_read_money_flow(const P2payConfig *cfg, Oid nspid, const PaymentInput *in,
								  PaymentFacts *facts, bool record, bool sum, bool loops,
								  bool cycle_on);
extern uint64 p2pay_cycle_candidates(Oid nspid, const PaymentInput *in, TimestampTz since,
									 double min_amount);

#endif							/* P2PAY_MONEYFLOW_H */
