/*
 * compat.h: differences between the PostgreSQL major versions p2pay builds
 * against (13 to 17), gathered in one place.  Code elsewhere uses the names
 * defined here and never tests PG_VERSION_NUM itself.
 */
#ifndef P2PAY_COMPAT_H
#define P2PAY_COMPAT_H

#include "postgres.h"
#include "utils/guc.h"

/* MarkGUCPrefixReserved appeared in 15; older versions only warn. */
#if PG_VERSION_NUM < 150000
#define MarkGUCPrefixReserved(prefix) EmitWarningsOnPlaceholders(prefix)
#endif

/* numeric NaN and infinities: 14 added infinities and numeric_is_inf. */
#if PG_VERSION_NUM >= 140000
#define p2pay_numeric_is_special(num) (numeric_is_nan(num) || numeric_is_inf(num))
#else
#define p2pay_numeric_is_special(num) numeric_is_nan(num)
#endif

#endif							/* P2PAY_COMPAT_H */
