/*
 * source.c: p2pay-forward's replication source: the slot, the stream's
 * messages, the key of each line, and the status updates that confirm a
 * position to the server.
 *
 * It reads the slot over the streaming replication protocol, as
 * tools/p2pay-stream does, asking the plugin for the option key, which
 * puts each line's key first in a fixed form: {"key":"<text>", or
 * {"key":null, followed by the rest of the line as it is without the
 * option (src/output.c).  The key is taken from there by position, and the
 * line handed on is the one without the option, so that a consumer sees
 * the same line whether the forwarder asked for a key or not.  A line not
 * in that form stops the forwarder: the plugin that sent it is not the one
 * this program was written for.
 *
 * A status update confirms f->confirmed, which queue.c (Kafka) or
 * sink_file.c moves only over what the sink holds, and only after the
 * sink has made it durable (file_sync, mock_sync).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>

#include "forward.h"

/* Fsync what the confirmed position vouches for, then report it. */
void
send_feedback(Forwarder *f)
{
	file_sync(f);
	mock_sync();
	if (f->conn == NULL)
		return;
	if (!send_standby_status(f->conn, f->confirmed))
	{
		/* the main loop notices the lost connection on its next read */
		logmsg("could not send a status update: %s", pq_message(PQerrorMessage(f->conn)));
		return;
	}
	if (f->verbose && f->confirmed != f->reported)
		logmsg("confirmed " LSN_FORMAT, LSN_ARGS(f->confirmed));
	f->reported = f->confirmed;
	f->next_feedback = usecs_now(CLOCK_MONOTONIC) + FEEDBACK_USECS;
}

/*
 * Whether a failed command may succeed if tried again: a lost connection, a
 * server starting or stopping, no free connection or WAL sender, or the slot
 * still held by the walsender of a connection that has just gone.
 */
static bool
transient(const PGresult *res)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	return state == NULL || strncmp(state, "08", 2) == 0 || strncmp(state, "53", 2) == 0 ||
		strncmp(state, "57P", 3) == 0 || strcmp(state, "55006") == 0;
}

/*
 * Connect, check the slot (creating it with --create-slot) and start
 * streaming from its confirmed position.  On failure returns false with
 * the reason in err, and *fatal set unless trying again may help (a
 * missing or invalidated slot, a bad option: the caller exits).
 *
 * --create-slot acts only while this process has never found the slot: a
 * slot that disappears later (dropped while the forwarder was reconnecting)
 * took its position with it, and a new one would start at the server's
 * current position, silently skipping every event in between.  An
 * invalidated slot (max_slot_wal_keep_size) is never replaced either.
 */
bool
pg_start(Forwarder *f, char *err, size_t errlen, bool *fatal)
{
	const char *keys[] = {"dbname", "replication", "fallback_application_name", NULL};
	const char *values[] = {f->dsn, "database", "p2pay-forward", NULL};
	char	   *literal,
			   *sql,
			   *cmd;
	PGresult   *res;
	Lsn			from = 0;

	*fatal = false;

	/*
	 * The DSN comes first and is expanded as a connection string; the keys
	 * after it override it, so the connection is always a logical
	 * replication one.
	 */
	f->conn = PQconnectdbParams(keys, values, 1);
	if (PQstatus(f->conn) != CONNECTION_OK)
	{
		snprintf(err, errlen, "could not connect to PostgreSQL: %s",
				 pq_message(PQerrorMessage(f->conn)));
		goto fail;
	}

	/* A logical replication connection runs plain SQL too (simple protocol). */
	literal = PQescapeLiteral(f->conn, f->slot, strlen(f->slot));
	if (literal == NULL || (sql = malloc(strlen(literal) + 200)) == NULL)
		die("out of memory");
	sprintf(sql, "SELECT plugin, confirmed_flush_lsn, wal_status = 'lost'"
			" FROM pg_catalog.pg_replication_slots"
			" WHERE slot_name = %s AND slot_type = 'logical'", literal);
	PQfreemem(literal);
	res = PQexec(f->conn, sql);
	free(sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		snprintf(err, errlen, "could not look up slot \"%s\": %s", f->slot,
				 pq_message(PQresultErrorMessage(res)));
		*fatal = !transient(res);
		PQclear(res);
		goto fail;
	}
	if (PQntuples(res) == 0)
	{
		PQclear(res);
		if (f->slot_seen)
		{
			snprintf(err, errlen,
					 "replication slot \"%s\" no longer exists\n"
					 "It was dropped while p2pay-forward was running, and the events it held"
					 " are lost to the topic: create the slot again and reconcile the topic"
					 " with p2pay.payments, e.g. with p2pay.flagged_since() (--create-slot creates a slot at the first start only).",
					 f->slot);
			*fatal = true;
			goto fail;
		}
		if (!f->create_slot)
		{
			snprintf(err, errlen,
					 "replication slot \"%s\" does not exist\n"
					 "Create it with --create-slot, or with"
					 " SELECT pg_create_logical_replication_slot('%s', 'p2pay').",
					 f->slot, f->slot);
			*fatal = true;
			goto fail;
		}
		if (f->failover && PQserverVersion(f->conn) < 170000)
		{
			snprintf(err, errlen,
					 "--failover needs PostgreSQL 17 or later, not %d\n"
					 "Without failover, a consumer catches up after a promotion with"
					 " p2pay.flagged_since() (docs/stream.md: Standbys and failover).",
					 PQserverVersion(f->conn) / 10000);
			*fatal = true;
			goto fail;
		}
		if ((cmd = malloc(2 * strlen(f->slot) + 64)) == NULL)
			die("out of memory");
		strcpy(append_quoted(cmd + sprintf(cmd, "CREATE_REPLICATION_SLOT "), f->slot, '"'),
			   f->failover ? " LOGICAL p2pay (FAILOVER)" : " LOGICAL p2pay");
		res = PQexec(f->conn, cmd);
		free(cmd);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
		{
			snprintf(err, errlen, "could not create slot \"%s\": %s", f->slot,
					 pq_message(PQresultErrorMessage(res)));
			*fatal = !transient(res);
			PQclear(res);
			goto fail;
		}
		if (!parse_lsn(PQgetvalue(res, 0, 1), &from))
			from = 0;
		logmsg("created replication slot \"%s\" with output plugin p2pay at " LSN_FORMAT,
			   f->slot, LSN_ARGS(from));
	}
	else
	{
		if (strcmp(PQgetvalue(res, 0, 0), "p2pay") != 0)
		{
			snprintf(err, errlen, "replication slot \"%s\" uses output plugin \"%s\", not p2pay",
					 f->slot, PQgetvalue(res, 0, 0));
			*fatal = true;
			PQclear(res);
			goto fail;
		}
		if (strcmp(PQgetvalue(res, 0, 2), "t") == 0)
		{
			snprintf(err, errlen,
					 "replication slot \"%s\" has been invalidated\n"
					 "The server removed WAL the slot still needed (max_slot_wal_keep_size),"
					 " so the events it held are lost to the topic: drop the slot, create it"
					 " again, and reconcile the topic with p2pay.payments, e.g. with p2pay.flagged_since().",
					 f->slot);
			*fatal = true;
			PQclear(res);
			goto fail;
		}
		if (PQgetisnull(res, 0, 1) || !parse_lsn(PQgetvalue(res, 0, 1), &from))
			from = 0;
	}
	PQclear(res);
	f->slot_seen = true;

	/* A bad plugin option or a slot in use fails here, in the server's words. */
	cmd = start_replication_command(f->slot, 0, f->plugin_opts, f->nplugin_opts);
	if (cmd == NULL)
		die("out of memory");
	res = PQexec(f->conn, cmd);
	free(cmd);
	if (PQresultStatus(res) != PGRES_COPY_BOTH)
	{
		snprintf(err, errlen, "could not start streaming slot \"%s\": %s", f->slot,
				 pq_message(PQresultErrorMessage(res)[0] ? PQresultErrorMessage(res)
							: PQerrorMessage(f->conn)));
		*fatal = !transient(res);
		PQclear(res);
		goto fail;
	}
	PQclear(res);

	/*
	 * Confirm nothing the server has not resent on this connection: after a
	 * crash the slot may be behind what was confirmed before, and its
	 * position is the one to build on.
	 */
	f->confirmed = f->reported = from;
	logmsg("streaming slot \"%s\" from its confirmed position " LSN_FORMAT,
		   f->slot, LSN_ARGS(from));
	return true;

fail:
	PQfinish(f->conn);
	f->conn = NULL;
	return false;
}

/*
 * End the COPY, dropping whatever the server still sends (it is
 * unconfirmed, so the next start receives it), and close the connection.
 */
void
pg_stop(Forwarder *f)
{
	PGresult   *res;
	char	   *msg;

	if (f->conn == NULL)
		return;
	if (PQstatus(f->conn) == CONNECTION_OK &&
		PQputCopyEnd(f->conn, NULL) > 0 && PQflush(f->conn) == 0)
	{
		while (PQgetCopyData(f->conn, &msg, 0) > 0)
			PQfreemem(msg);
		while ((res = PQgetResult(f->conn)) != NULL)
			PQclear(res);
	}
	PQfinish(f->conn);
	f->conn = NULL;
}

/*
 * Split a line written under the option key into its key and the line as
 * it is without the option, in place: {"key":"K",REST gives K and {REST,
 * {"key":null,REST the empty key and {REST.  K holds no quote or
 * backslash (the plugin writes null rather than a key that needs escapes),
 * so it ends at the first quote.  The "{" of the value overwrites the
 * comma before REST.  Returns false when the line is not in that form.
 */
bool
split_keyed_line(char *data, size_t len, const char **key, size_t *keylen,
				 char **value, size_t *valuelen)
{
	static const char string_key[] = "{\"key\":\"";
	static const char null_key[] = "{\"key\":null,";
	size_t		rest;			/* where REST starts */

	if (len > sizeof(null_key) - 1 &&
		memcmp(data, null_key, sizeof(null_key) - 1) == 0)
	{
		*key = "";
		*keylen = 0;
		rest = sizeof(null_key) - 1;
	}
	else if (len > sizeof(string_key) - 1 &&
			 memcmp(data, string_key, sizeof(string_key) - 1) == 0)
	{
		const char *start = data + sizeof(string_key) - 1;
		const char *quote = memchr(start, '"', len - (size_t) (start - data));

		if (quote == NULL || memchr(start, '\\', (size_t) (quote - start)) != NULL ||
			(size_t) (quote - data) + 2 >= len || quote[1] != ',')
			return false;
		*key = start;
		*keylen = (size_t) (quote - start);
		rest = (size_t) (quote - data) + 2;
	}
	else
		return false;
	if (data[rest] != '"' || data[len - 1] != '}')
		return false;
	data[rest - 1] = '{';
	*value = data + rest - 1;
	*valuelen = len - rest + 1;
	return true;
}

/* Hand one message of the stream, a line of the plugin, to the sink. */
static void
handle_xlogdata(Forwarder *f, char *data, size_t len, Lsn lsn)
{
	const char *key;
	size_t		keylen;
	char	   *value;
	size_t		vlen;

	f->received++;
	if (!split_keyed_line(data, len, &key, &keylen, &value, &vlen))
		die("the message at " LSN_FORMAT " does not start with the key the plugin was asked"
			" for (option " KEY_OPTION "): \"%.60s\"\n"
			"p2pay-forward reads the key of each line of p2pay's plugin at a fixed place;"
			" the slot's plugin wrote something else.",
			LSN_ARGS(lsn), data);
	if (f->out != NULL)
	{
		file_write(f, value, vlen, lsn);
		return;
	}
	if (kafka_produce(f, key, keylen, value, vlen, f->tail, lsn))
		queue_message(f, lsn);
}

/*
 * Handle one CopyData message from the server.  Returns false when the
 * message is not one the protocol has.
 */
bool
handle_copydata(Forwarder *f, char *msg, int len)
{
	if (msg[0] == 'w' && len >= XLOGDATA_HEADER)
	{
		Lsn			walend = get_be64(msg + 9);

		if (walend > f->server_end)
			f->server_end = walend;
		handle_xlogdata(f, msg + XLOGDATA_HEADER, (size_t) (len - XLOGDATA_HEADER),
						get_be64(msg + 1));
		return true;
	}
	if (msg[0] == 'k' && len >= KEEPALIVE_SIZE)
	{
		Lsn			walend = get_be64(msg + 1);

		if (walend > f->server_end)
			f->server_end = walend;
		queue_keepalive(f, walend);
		if (msg[17])
		{
			advance_confirmed(f);
			send_feedback(f);
		}
		return true;
	}
	return false;
}

/*
 * Wait until the server sends something or timeout_usecs pass.  A signal
 * interrupts the wait (the handler is installed without SA_RESTART).
 */
void
wait_for_server(Forwarder *f, int64_t timeout_usecs)
{
	int			sock = PQsocket(f->conn);
	fd_set		ready;
	struct timeval tv;

	if (timeout_usecs < 0)
		timeout_usecs = 0;
	tv.tv_sec = (time_t) (timeout_usecs / 1000000);
	tv.tv_usec = (suseconds_t) (timeout_usecs % 1000000);
	FD_ZERO(&ready);
	FD_SET(sock, &ready);
	if (select(sock + 1, &ready, NULL, NULL, &tv) < 0 && errno != EINTR)
		die("select() failed: %s", strerror(errno));
}
