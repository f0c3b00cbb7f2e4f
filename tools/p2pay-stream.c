/*
 * p2pay-stream.c: follow a logical replication slot over the streaming
 * replication protocol and write each message as one line.
 *
 * The third way of reading the p2pay stream, after the SQL functions
 * (pg_logical_slot_get_changes) and pg_recvlogical: a libpq client small
 * enough to read in one sitting.  tools/p2pay-forward, the forwarder to
 * Kafka, grew from it.
 *
 * Delivery is at least once.  The position the client confirms (the flush
 * position of its standby status updates, which the server keeps as the
 * slot's confirmed_flush_lsn) never passes a message that is not yet
 * written, flushed and, with -f, fsynced.  On the next start the server
 * resends every transaction that commits at or after that position, so a
 * crash can repeat events but never lose one.
 *
 * The protocol's messages, and the helpers shared with p2pay-forward, are
 * in tools/replication.h; messages and exits, in tools/common.h.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "common.h"			/* progname, die, bad_usage */
#include "replication.h"		/* Lsn, message sizes, protocol helpers */

/* The session: connection, output, and how far the output has got. */
typedef struct Stream
{
	PGconn	   *conn;
	FILE	   *out;
	bool		sync_out;		/* fsync after each line (-f) */
	Lsn			flushed;		/* everything before it is written out */
	Lsn			endpos;			/* -E; 0 for none */
	long		max_messages;	/* -n; 0 for no limit */
	long		written;
	int64_t		status_usecs;	/* -s; 0 for no periodic updates */
	int64_t		next_status;	/* monotonic time of the next update */
} Stream;

static volatile sig_atomic_t stop_signal = 0;

/* Print libpq's or the server's error message as it is, and exit 1. */
static NORETURN void
die_pq(const char *msg)
{
	fputs(msg, stderr);
	exit(1);
}

/*
 * Print the error of a command that failed (the server's, else libpq's),
 * end the connection and exit 1.
 */
static NORETURN void
die_result(PGconn *conn, PGresult *res)
{
	const char *msg = PQresultErrorMessage(res);

	fputs(msg[0] ? msg : PQerrorMessage(conn), stderr);
	PQclear(res);
	PQfinish(conn);
	exit(1);
}

static void
usage(void)
{
	printf("%s follows a logical replication slot over the replication protocol\n"
		   "and writes each message it receives as one line.\n\n"
		   "Usage: %s -d DSN -S SLOT [OPTION]...\n\n"
		   "  -d DSN       connection string or database name (replication=database is added)\n"
		   "  -S SLOT      the logical replication slot to read (required)\n"
		   "  -o NAME=VAL  an option of the slot's output plugin; repeatable (-o NAME: no value)\n"
		   "  -I LSN       start position (default: where the slot was last confirmed)\n"
		   "  -E LSN       stop once the stream reaches LSN (later messages are left unread)\n"
		   "  -n COUNT     stop after COUNT messages\n"
		   "  -f FILE      append to FILE, fsyncing every line (default: standard output)\n"
		   "  -s SECONDS   interval between status updates (default 1; 0: only when asked)\n"
		   "  --help       show this help and exit\n\n"
		   "A position is confirmed to the server only once written, so a restart\n"
		   "resends rather than skips.  SIGINT and SIGTERM stop cleanly.\n",
		   progname, progname);
}

static void
on_signal(int signo)
{
	stop_signal = signo;
}

/*
 * Send a standby status update confirming s->flushed.  Written, flushed and
 * applied are one position: a line is fully written out before the next
 * message is read.  The server ignores a zero (invalid) position.
 */
static void
send_status(Stream *s)
{
	if (!send_standby_status(s->conn, s->flushed))
		die_pq(PQerrorMessage(s->conn));
	s->next_status = usecs_now(CLOCK_MONOTONIC) + s->status_usecs;
}

/* Write one message as a line, durably before its position is confirmed. */
static void
write_line(Stream *s, const char *data, size_t len)
{
	if (fwrite(data, 1, len, s->out) != len || fputc('\n', s->out) == EOF ||
		fflush(s->out) != 0)
		die("could not write output: %s", strerror(errno));
	if (s->sync_out && fsync(fileno(s->out)) != 0)
		die("could not fsync output: %s", strerror(errno));
}

/*
 * Handle one CopyData message from the server.  Returns true once the
 * stream has reached where it was asked to stop (-E or -n).
 */
static bool
handle_message(Stream *s, const char *msg, int len)
{
	Lsn			pos;

	if (msg[0] == 'w' && len >= XLOGDATA_HEADER)
	{
		/*
		 * dataStart is the position of the change (or commit) the message
		 * came from.  A message past the end position is left unwritten and
		 * unconfirmed, for the next run.
		 */
		pos = get_be64(msg + 1);
		if (s->endpos != 0 && pos > s->endpos)
			return true;
		write_line(s, msg + XLOGDATA_HEADER, (size_t) (len - XLOGDATA_HEADER));

		/*
		 * Confirming a change's position lets the slot forget transactions
		 * that committed before it, never this one, whose commit lies later:
		 * a transaction cut short by a crash is resent whole.
		 */
		if (pos > s->flushed)
			s->flushed = pos;
		s->written++;
		return (s->endpos != 0 && pos >= s->endpos) ||
			(s->max_messages > 0 && s->written >= s->max_messages);
	}
	if (msg[0] == 'k' && len >= KEEPALIVE_SIZE)
	{
		/*
		 * Nothing is pending here, since each message is written before the
		 * next is read, so the client may confirm up to walEnd, how far the
		 * server has decoded.  That is safe: the server sends in WAL order
		 * on this one connection, so every message of every transaction that
		 * committed before walEnd has arrived, and been written.  A
		 * transaction still open at walEnd commits after it, and the server
		 * resends every transaction that commits at or after the confirmed
		 * position.  Without this, changes that emit nothing (approved
		 * payments, other tables) would hold the slot, and its WAL, back.
		 */
		pos = get_be64(msg + 1);
		if (pos > s->flushed)
			s->flushed = pos;
		if (s->endpos != 0 && pos >= s->endpos)
			return true;
		if (msg[17])
			send_status(s);
		return false;
	}
	die("unexpected message \"%c\" of %d bytes in the stream", msg[0], len);
}

/*
 * Wait until the server sends something, the next status update is due or
 * a second has passed.  A signal that lands between the main loop's check
 * and select() waits for the timeout: hence the one-second cap.
 */
static void
wait_for_input(Stream *s)
{
	int			sock = PQsocket(s->conn);
	int64_t		wait = 1000000;
	fd_set		ready;
	struct timeval tv;

	if (s->status_usecs > 0 && s->next_status - usecs_now(CLOCK_MONOTONIC) < wait)
		wait = s->next_status - usecs_now(CLOCK_MONOTONIC);
	if (wait < 0)
		wait = 0;
	tv.tv_sec = (time_t) (wait / 1000000);
	tv.tv_usec = (suseconds_t) (wait % 1000000);
	FD_ZERO(&ready);
	FD_SET(sock, &ready);
	if (select(sock + 1, &ready, NULL, NULL, &tv) < 0 && errno != EINTR)
		die("select() failed: %s", strerror(errno));
	if (!PQconsumeInput(s->conn))
		die_pq(PQerrorMessage(s->conn));
}

/*
 * Stop cleanly: confirm what was written, end the COPY and wait for the
 * server to end it too.  Data the server sends meanwhile is dropped,
 * unconfirmed; the next run receives it.  Returns the exit status.
 */
static int
finish(Stream *s)
{
	PGresult   *res;
	char	   *msg;
	int			len;
	int			status = 0;

	send_status(s);
	if (PQputCopyEnd(s->conn, NULL) <= 0 || PQflush(s->conn) != 0)
		die_pq(PQerrorMessage(s->conn));
	while ((len = PQgetCopyData(s->conn, &msg, 0)) > 0)
		PQfreemem(msg);
	if (len == -2)
		die_pq(PQerrorMessage(s->conn));
	while ((res = PQgetResult(s->conn)) != NULL)
	{
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
		{
			fputs(PQresultErrorMessage(res), stderr);
			status = 1;
		}
		PQclear(res);
	}
	return status;
}

int
main(int argc, char **argv)
{
	static const struct option long_options[] = {{"help", no_argument, NULL, 'h'}, {0}};
	const char *keys[] = {"dbname", "replication", "fallback_application_name", NULL};
	const char *values[] = {"", "database", "p2pay-stream", NULL};
	const char *slot = NULL;
	const char *file = NULL;
	static char **opts;		/* static: reachable (not leaked) at any exit */
	int			nopts = 0;
	char	   *cmd;
	Lsn			startpos = 0;
	Stream		s = {.status_usecs = 1000000};
	PGresult   *res;
	struct sigaction sa;
	char	   *end;
	int			c;

	progname = "p2pay-stream";
	opts = calloc((size_t) argc, sizeof(char *));
	if (opts == NULL)
		die("out of memory");
	while ((c = getopt_long(argc, argv, "d:S:o:I:E:n:f:s:", long_options, NULL)) != -1)
	{
		switch (c)
		{
			case 'd':
				values[0] = optarg;
				break;
			case 'S':
				slot = optarg;
				break;
			case 'o':
				if (optarg[0] == '\0' || optarg[0] == '=')
					bad_usage("an output plugin option needs a name: -o %s", optarg);
				opts[nopts++] = optarg;
				break;
			case 'I':
				if (!parse_lsn(optarg, &startpos))
					bad_usage("invalid start position (want X/X): %s", optarg);
				break;
			case 'E':
				if (!parse_lsn(optarg, &s.endpos) || s.endpos == 0)
					bad_usage("invalid end position (want X/X, not 0/0): %s", optarg);
				break;
			case 'n':
				s.max_messages = strtol(optarg, &end, 10);
				if (*end != '\0' || s.max_messages <= 0)
					bad_usage("invalid message count: %s", optarg);
				break;
			case 'f':
				file = optarg;
				break;
			case 's':
				{
					double		secs = strtod(optarg, &end);

					if (end == optarg || *end != '\0' || !(secs >= 0 && secs <= 86400))
						bad_usage("invalid status interval: %s", optarg);
					s.status_usecs = (int64_t) (secs * 1000000);
					break;
				}
			case 'h':
				usage();
				return 0;
			default:
				bad_usage("invalid command line");
		}
	}
	if (optind < argc)
		bad_usage("too many arguments, starting with %s", argv[optind]);
	if (slot == NULL || slot[0] == '\0')
		bad_usage("no slot given: name the logical replication slot with -S SLOT");

	s.out = stdout;
	if (file != NULL && strcmp(file, "-") != 0)
	{
		if ((s.out = fopen(file, "a")) == NULL)
			die("could not open \"%s\": %s", file, strerror(errno));
		s.sync_out = true;
	}

	/*
	 * The DSN comes first and is expanded as a connection string; the keys
	 * after it override it, so the connection is always a logical
	 * replication one.
	 */
	s.conn = PQconnectdbParams(keys, values, 1);
	if (PQstatus(s.conn) != CONNECTION_OK)
		die_pq(PQerrorMessage(s.conn));

	/* START_REPLICATION SLOT "slot" LOGICAL X/X ("name" 'value', "name") */
	if ((cmd = start_replication_command(slot, startpos, opts, nopts)) == NULL)
		die("out of memory");

	/* A missing slot or a bad plugin option fails here, in the server's words. */
	free(opts);
	opts = NULL;
	res = PQexec(s.conn, cmd);
	free(cmd);
	if (PQresultStatus(res) != PGRES_COPY_BOTH)
		die_result(s.conn, res);
	PQclear(res);

	/* Without SA_RESTART, so that a signal interrupts select() at once. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	s.next_status = usecs_now(CLOCK_MONOTONIC) + s.status_usecs;
	while (!stop_signal)
	{
		char	   *msg;
		int			len;
		bool		done;

		if (s.status_usecs > 0 && usecs_now(CLOCK_MONOTONIC) >= s.next_status)
			send_status(&s);
		len = PQgetCopyData(s.conn, &msg, 1);
		if (len == 0)
		{
			wait_for_input(&s);
			continue;
		}
		if (len == -1)
		{
			/* the server ended the stream: an error, or it is shutting down */
			res = PQgetResult(s.conn);
			if (PQresultStatus(res) == PGRES_FATAL_ERROR)
				die_result(s.conn, res);
			PQclear(res);
			die("the server ended the stream");
		}
		if (len < 0)
			die_pq(PQerrorMessage(s.conn));
		done = handle_message(&s, msg, len);
		PQfreemem(msg);
		if (done)
			break;
	}

	c = finish(&s);
	PQfinish(s.conn);
	if (s.out != stdout && fclose(s.out) != 0)
		die("could not close \"%s\": %s", file, strerror(errno));
	return c;
}
