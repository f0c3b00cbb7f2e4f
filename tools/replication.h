/*
 * replication.h: the small pieces of the streaming replication protocol
 * that p2pay's libpq clients share (tools/p2pay-stream.c,
 * tools/forward/source.c and tools/p2pay-http.c's live feed).
 *
 * Protocol (PostgreSQL docs, "Streaming Replication Protocol"): after
 * START_REPLICATION the connection is in COPY BOTH mode.  The server sends
 * CopyData messages 'w' (XLogData: one message of the output plugin) and
 * 'k' (keepalive); the client sends 'r' (standby status update).  Integers
 * are big-endian and times are microseconds since 2000-01-01 UTC, converted
 * by hand so that a client needs libpq alone, not the server's headers.
 *
 * Everything here is static inline, so that a client that uses part of it
 * compiles without unused-function warnings.
 */
#ifndef P2PAY_REPLICATION_H
#define P2PAY_REPLICATION_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

typedef uint64_t Lsn;			/* a WAL position, as the server's XLogRecPtr */

/* Microseconds from the Unix epoch to PostgreSQL's, 2000-01-01. */
#define PG_EPOCH_USECS (INT64_C(946684800) * 1000000)

/* Sizes of the CopyData messages, type byte included. */
#define XLOGDATA_HEADER 25		/* 'w', dataStart, walEnd, sendTime */
#define KEEPALIVE_SIZE 18		/* 'k', walEnd, sendTime, replyRequested */
#define STATUS_SIZE 34			/* 'r', write, flush, apply, clock, reply */

/* printf arguments for an Lsn in the server's X/X notation. */
#define LSN_FORMAT "%X/%X"
#define LSN_ARGS(lsn) (unsigned) ((lsn) >> 32), (unsigned) (lsn)

/*
 * Append s to dst between quote characters q, doubling any q inside:
 * "identifier" and 'literal' as the replication command scanner reads them
 * (no backslash is special there; PQescapeLiteral may write E'...', which
 * the replication grammar does not accept).  dst needs 2 * strlen(s) + 3.
 */
static inline char *
append_quoted(char *dst, const char *s, char q)
{
	*dst++ = q;
	for (; *s; s++)
	{
		if (*s == q)
			*dst++ = q;
		*dst++ = *s;
	}
	*dst++ = q;
	*dst = '\0';
	return dst;
}

/* Parse "X/X" (hex halves) into *lsn. */
static inline bool
parse_lsn(const char *s, Lsn *lsn)
{
	unsigned int hi,
				lo;
	char		extra;

	if (sscanf(s, "%X/%X%c", &hi, &lo, &extra) != 2)
		return false;
	*lsn = ((Lsn) hi << 32) | lo;
	return true;
}

static inline uint64_t
get_be64(const char *p)
{
	uint64_t	v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | (unsigned char) p[i];
	return v;
}

static inline void
put_be64(char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (char) (v & 0xff);
}

/* Microseconds on a clock: CLOCK_MONOTONIC to schedule, CLOCK_REALTIME to report. */
static inline int64_t
usecs_now(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * Send a standby status update that reports lsn as written, flushed and
 * applied: the flush position is what the server keeps as the slot's
 * confirmed_flush_lsn.  The server ignores a zero (invalid) position.
 * Returns false on a connection error (PQerrorMessage says which).
 */
static inline bool
send_standby_status(PGconn *conn, Lsn lsn)
{
	char		msg[STATUS_SIZE];

	msg[0] = 'r';
	put_be64(msg + 1, lsn);		/* write */
	put_be64(msg + 9, lsn);		/* flush: what the slot may forget */
	put_be64(msg + 17, lsn);	/* apply */
	put_be64(msg + 25, (uint64_t) (usecs_now(CLOCK_REALTIME) - PG_EPOCH_USECS));
	msg[33] = 0;				/* no reply requested */
	return PQputCopyData(conn, msg, STATUS_SIZE) > 0 && PQflush(conn) == 0;
}

/*
 * The command that starts streaming a logical slot, in a malloc'd string
 * (NULL when out of memory):
 *   START_REPLICATION SLOT "slot" LOGICAL X/X ("name" 'value', "name")
 * Each option is NAME=VALUE, or NAME alone for an option without a value.
 */
static inline char *
start_replication_command(const char *slot, Lsn startpos, char *const *opts, int nopts)
{
	size_t		len = 64 + 2 * strlen(slot) + 3;
	char	   *cmd,
			   *p;

	for (int i = 0; i < nopts; i++)
		len += 2 * strlen(opts[i]) + 8;
	if ((cmd = malloc(len)) == NULL)
		return NULL;
	p = cmd + sprintf(cmd, "START_REPLICATION SLOT ");
	p = append_quoted(p, slot, '"');
	p += sprintf(p, " LOGICAL " LSN_FORMAT, LSN_ARGS(startpos));
	for (int i = 0; i < nopts; i++)
	{
		const char *eq = strchr(opts[i], '=');
		char	   *name = strdup(opts[i]);

		if (name == NULL)
		{
			free(cmd);
			return NULL;
		}
		if (eq != NULL)
			name[eq - opts[i]] = '\0';
		p += sprintf(p, i == 0 ? " (" : ", ");
		p = append_quoted(p, name, '"');
		free(name);
		if (eq != NULL)
		{
			*p++ = ' ';
			p = append_quoted(p, eq + 1, '\'');
		}
	}
	if (nopts > 0)
		strcpy(p, ")");
	return cmd;
}

#endif							/* P2PAY_REPLICATION_H */
