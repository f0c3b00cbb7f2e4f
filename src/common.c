/*
 * common.c: small helpers every p2pay file may use, and that use nothing
 * of p2pay's: how a message quotes a client's input, and which transaction
 * events end a transaction.
 */
#include "postgres.h"

#include "p2pay.h"

#include "access/xact.h"
#include "mb/pg_wchar.h"

/*
 * Whether a transaction callback's event ends the transaction: its locks
 * are released (or handed to a prepared transaction), and what p2pay
 * follows through a transaction (the account locks it holds, the mode it
 * deletes payments in) starts again with the next.
 */
bool
p2pay_xact_ends(XactEvent event)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			return true;
		default:
			return false;
	}
}

/*
 * An input value as a message quotes it: at most P2PAY_ECHO_MAX bytes, cut
 * on a character boundary, with "..." where it was cut.  A message never
 * grows with what a client sent (an amount of 1e131071 is 8 characters
 * long and 131,073 digits printed).
 */
char *
p2pay_echo(const char *value)
{
	size_t		len;
	int			cut;

	if (value == NULL)
		return pstrdup("(null)");
	len = strnlen(value, P2PAY_ECHO_MAX + 1);
	if (len <= P2PAY_ECHO_MAX)
		return pstrdup(value);
	cut = pg_mbcliplen(value, (int) len, P2PAY_ECHO_MAX);
	return psprintf("%.*s...", cut, value);
}
