/*
 * timeutil.h: the UTC hours and days p2pay's state is kept by.
 *
 * account_daily is kept by the UTC day, and a payer's amounts in it by the
 * hour of that day (payer_hourly, by the UTC hour, in the 1.0/1.1 layout);
 * the trigger's state (store.c) and the backtest's replay (backtest.c)
 * compute them here, alike, with integer arithmetic on the microseconds
 * of a timestamptz (no time zone is consulted).  Timestamps before 2000
 * are negative: the floor, not the truncation, is the start.
 */
#ifndef P2PAY_TIMEUTIL_H
#define P2PAY_TIMEUTIL_H

#include "datatype/timestamp.h"
#include "utils/date.h"

/* The start of the UTC hour holding ts. */
static inline TimestampTz
p2pay_hour_of(TimestampTz ts)
{
	TimestampTz r = ts % USECS_PER_HOUR;

	return r < 0 ? ts - r - USECS_PER_HOUR : ts - r;
}

/* The start of the UTC day holding ts. */
static inline TimestampTz
p2pay_day_of(TimestampTz ts)
{
	TimestampTz r = ts % USECS_PER_DAY;

	return r < 0 ? ts - r - USECS_PER_DAY : ts - r;
}

/* The hour of its UTC day that ts falls in, 0 to 23 (account_daily.out_hours). */
static inline int
p2pay_hour_of_day(TimestampTz ts)
{
	return (int) ((p2pay_hour_of(ts) - p2pay_day_of(ts)) / USECS_PER_HOUR);
}

/* The UTC day holding ts, as a date (account_daily.day). */
static inline DateADT
p2pay_date_of(TimestampTz ts)
{
	return (DateADT) (p2pay_day_of(ts) / USECS_PER_DAY);
}

#endif							/* P2PAY_TIMEUTIL_H */
