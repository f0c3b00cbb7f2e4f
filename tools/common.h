/*
 * common.h: what p2pay's programs (p2pay-stream, p2pay-forward,
 * p2pay-http) share besides the replication protocol: their name in
 * messages, the log line, the ways they stop on an error, and sleeping.
 *
 * Conventions every program follows: a message is one line on standard
 * error, prefixed with the program's name; an error ends the program with
 * exit status 1, a bad command line with 2 (and a pointer to --help).
 */
#ifndef P2PAY_TOOLS_COMMON_H
#define P2PAY_TOOLS_COMMON_H

#include <stdint.h>

/* For gcc and clang: die() never returns, and formats are checked. */
#define NORETURN __attribute__((noreturn))
#define PRINTF_LIKE(n) __attribute__((format(printf, n, n + 1)))

/* The program's name in its messages: each main() sets it first. */
extern const char *progname;

extern void logmsg(const char *fmt,...) PRINTF_LIKE(1);
extern NORETURN void die(const char *fmt,...) PRINTF_LIKE(1);
extern NORETURN void bad_usage(const char *fmt,...) PRINTF_LIKE(1);
extern const char *pq_message(const char *msg);
extern void nap(int64_t usecs);

#endif							/* P2PAY_TOOLS_COMMON_H */
