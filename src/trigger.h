/*
 * trigger.h: what the trigger (trigger.c) shares: the mode this
 * transaction deletes payments in.
 */
#ifndef P2PAY_TRIGGER_H
#define P2PAY_TRIGGER_H

extern int	p2pay_future_tolerance;	/* p2pay.future_tolerance */
extern int	p2pay_delete_mode;	/* p2pay.delete_mode */
extern int	p2pay_delete_mode_fixed(void);
extern void p2pay_delete_mode_register_callbacks(void);

#endif							/* P2PAY_TRIGGER_H */
