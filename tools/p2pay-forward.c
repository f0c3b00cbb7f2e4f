/*
 * p2pay-forward.c: deliver the p2pay stream from a logical replication slot
 * to a Kafka topic (or to a file), at least once.
 *
 * It reads the slot over the streaming replication protocol, as
 * tools/p2pay-stream does, and produces each line to a topic with
 * librdkafka, keyed by the event's payer_id, so that one payer's events go
 * to one partition in stream order.  An event without a payer_id (a
 * truncate) gets the empty key, which the partitioner set here
 * (murmur2_random, Java's) always hashes to the same partition.
 *
 * The rule that makes it at least once: the position confirmed to the
 * server (the flush position of the standby status updates, kept as the
 * slot's confirmed_flush_lsn) never passes a message that Kafka has not
 * acknowledged.  The messages and keepalives of the stream enter a queue in
 * the order they arrive; a message leaves it when its delivery report says
 * acknowledged, and the confirmed position is that of the last entry of the
 * queue's acknowledged head.  The server resends every transaction that
 * commits at or after the confirmed position, so a crash of the forwarder,
 * of PostgreSQL or of Kafka can repeat events but not lose one.
 *
 * Kafka is asked for the strongest acknowledgement there is: the
 * idempotent producer (enable.idempotence=true, which implies acks=all and
 * in-order retries), message.timeout.ms=0 (retry forever: while the
 * brokers are down, messages wait and nothing is confirmed) and
 * enable.gapless.guarantee=true (a failure that could leave a gap stops the
 * producer rather than let later messages through).  A delivery that fails
 * even so is never skipped: the forwarder stops confirming, drops the
 * replication connection and the producer's queue, and starts again from
 * the confirmed position, so the failed message and everything after it are
 * produced again, in order (a "rewind"), after a backoff.  A message Kafka
 * refuses for good (too large, no permission) therefore halts the stream
 * at that event, with an error in the log each time, until the cause is
 * fixed; it is never dropped.
 *
 * With --to FILE (or stdout) each line is written and flushed, and the file
 * is fsynced before any position past it is confirmed.
 *
 * Single-threaded: the main loop reads the replication connection, serves
 * librdkafka's delivery reports (rd_kafka_poll, on this thread), and sends a
 * status update every second.  It stops reading while --max-in-flight
 * events are unacknowledged.
 *
 * Test-only options, accepted only with -X test.mock.num.brokers=N (which
 * makes librdkafka start an in-process mock cluster in place of real
 * brokers): --mock-dump FILE appends every acknowledged message to FILE
 * (fsynced before the position is confirmed), --mock-outage N:FILE takes
 * every mock broker down after N acknowledgements until FILE exists, and
 * --mock-fail COUNT@N makes the next COUNT produce requests after N
 * acknowledgements fail with a permanent error.  See t/007_forward.pl.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "replication.h"

/* Kafka's Produce request, for the mock cluster's error injection. */
#define KAFKA_API_PRODUCE 0

/* How often the confirmed position is reported to the server. */
#define FEEDBACK_USECS 1000000

/* Backoff between attempts after a failure: from 1 s, doubling, to 30 s. */
#define BACKOFF_MIN_USECS 1000000
#define BACKOFF_MAX_USECS 30000000

/* An entry of the queue of what the stream has handed over, in order. */
typedef struct Pending
{
	Lsn			lsn;			/* a message's dataStart, a keepalive's walEnd */
	bool		is_message;
	bool		acked;			/* Kafka acknowledged it (keepalives: always) */
} Pending;

/* The forwarder's configuration and state. */
typedef struct Forwarder
{
	/* what the command line and environment asked for */
	const char *dsn;
	const char *slot;
	const char *brokers;
	const char *topic;
	const char *to;				/* NULL: Kafka; "-" or "stdout"; a file */
	char	  **plugin_opts;
	int			nplugin_opts;
	bool		create_slot;
	bool		failover;		/* --create-slot makes a failover slot (17) */
	bool		slot_seen;		/* the slot existed (or was made) on a start */
	bool		verbose;
	int64_t		progress_usecs; /* --status-interval; 0: none */
	int64_t		connect_usecs;	/* --connect-timeout */
	int64_t		drain_usecs;	/* --drain-timeout */
	uint64_t	max_in_flight;

	/* the replication connection */
	PGconn	   *conn;
	Lsn			confirmed;		/* every event before it is delivered */
	Lsn			reported;		/* last flush position sent to the server */
	Lsn			server_end;		/* the server's walEnd, for the lag */
	int64_t		next_feedback;
	int64_t		next_progress;

	/* the Kafka sink */
	rd_kafka_conf_t *kconf;		/* kept to create the producer again */
	rd_kafka_t *rk;
	Pending    *queue;			/* ring of queue_size() entries */
	uint64_t	head;			/* sequence number of the oldest entry */
	uint64_t	tail;			/* sequence number of the next entry */
	uint64_t	epoch;			/* reports of sequence numbers below it are stale */
	uint64_t	unacked;		/* messages in the queue not yet acknowledged */
	bool		failed;			/* a delivery failed: rewind */
	char		failure[512];

	/* the file sink */
	FILE	   *out;
	bool		out_fsync;		/* a regular file: fsync before confirming */
	bool		out_dirty;

	/* test-only: the mock cluster */
	int			mock_brokers;	/* test.mock.num.brokers; 0: real brokers */
	FILE	   *mock_dump;
	bool		mock_dump_dirty;
	long		mock_outage_after;	/* 0: no outage */
	const char *mock_outage_until;
	int			mock_outage_state;	/* 0 not yet, 1 down, 2 over */
	long		mock_fail_after;	/* 0: no injected failure */
	int			mock_fail_count;
	bool		mock_fail_done;

	/* counters, for the progress line */
	long		received;		/* messages read from the stream */
	long		delivered;		/* acknowledged (or written) */
	long		rewinds;
} Forwarder;

/* For gcc and clang: die() never returns, and formats are checked. */

static const char *progname = "p2pay-forward";
static volatile sig_atomic_t stop_signal = 0;
static volatile sig_atomic_t signals_seen = 0;

/* Log one line to stderr, prefixed with the program's name. */
/*
 * Log one line to stderr, prefixed with the program's name, in one write:
 * librdkafka logs from its own threads.
 */
static PRINTF_LIKE(1) void
logmsg(const char *fmt,...)
{
	char		line[2048];
	int			len;
	va_list		ap;

	len = snprintf(line, sizeof(line), "%s: ", progname);
	va_start(ap, fmt);
	vsnprintf(line + len, sizeof(line) - (size_t) len - 1, fmt, ap);
	va_end(ap);
	strcat(line, "\n");
	fputs(line, stderr);
}

/* Log a message and exit 1. */
static NORETURN PRINTF_LIKE(1) void
die(const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, "%s: error: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* Complain about the command line, and exit 2. */
static NORETURN PRINTF_LIKE(1) void
bad_usage(const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry \"%s --help\" for more information.\n", progname);
	exit(2);
}

/*
 * libpq's or the server's message on one line, to be followed by more
 * words: each line break, with the indentation after it, becomes a space.
 */
static const char *
pq_message(const char *msg)
{
	static char buf[1024];
	size_t		len = 0;

	for (const char *p = msg; *p && len < sizeof(buf) - 1; p++)
	{
		if (*p != '\n')
			buf[len++] = *p;
		else
		{
			while (p[1] == '\t' || p[1] == ' ')
				p++;
			if (p[1] != '\0')
				buf[len++] = ' ';
		}
	}
	buf[len] = '\0';
	return buf;
}

static void
usage(void)
{
	printf("%s delivers the p2pay stream of a logical replication slot to a Kafka\n"
		   "topic, at least once, keyed by payer_id; or to a file.\n\n"
		   "Usage: %s --slot SLOT --brokers HOSTS --topic TOPIC [OPTION]...\n"
		   "       %s --slot SLOT --to stdout|FILE [OPTION]...\n\n"
		   "Source:\n"
		   "  -d, --dsn DSN             connection string or database name; replication=database\n"
		   "                            is added (env P2PAY_DSN; libpq's PG* variables apply)\n"
		   "  -S, --slot SLOT           the logical replication slot to read (env P2PAY_SLOT)\n"
		   "      --create-slot         create the slot, with output plugin p2pay, if it is\n"
		   "                            missing at start (never once it has been found)\n"
		   "      --failover            with --create-slot: a failover slot, which a standby\n"
		   "                            with sync_replication_slots takes over (PostgreSQL 17)\n"
		   "  -o, --option NAME=VALUE   an option of the p2pay output plugin, e.g.\n"
		   "                            -o min-decision=decline; repeatable\n\n"
		   "Sink:\n"
		   "  -b, --brokers HOSTS       Kafka bootstrap servers, host:port,... (env P2PAY_BROKERS)\n"
		   "  -t, --topic TOPIC         the topic to produce to (env P2PAY_TOPIC)\n"
		   "  -X KEY=VALUE              a librdkafka configuration property; repeatable\n"
		   "      --to stdout|FILE      write lines instead, FILE appended and fsynced\n"
		   "                            before a position past them is confirmed\n\n"
		   "Operation:\n"
		   "  -s, --status-interval SECONDS  log a progress line this often (default 10; 0: never)\n"
		   "      --connect-timeout SECONDS  how long to wait for the brokers at start (default 30)\n"
		   "      --drain-timeout SECONDS    how long SIGTERM waits for Kafka (default 60)\n"
		   "      --max-in-flight COUNT      stop reading while this many events are\n"
		   "                                 unacknowledged (default 100000)\n"
		   "  -v, --verbose             also log every confirmed position\n"
		   "      --help                show this help and exit\n\n"
		   "A position is confirmed to PostgreSQL only once Kafka has acknowledged (or\n"
		   "the file holds, fsynced) every event before it, so a restart resends rather\n"
		   "than skips: events may come twice, never not at all.  A failed delivery is\n"
		   "produced again from the confirmed position.  Defaults set here:\n"
		   "enable.idempotence=true (acks=all), message.timeout.ms=0 (retry forever),\n"
		   "enable.gapless.guarantee=true, partitioner=murmur2_random.  Events without\n"
		   "payer_id (truncate) get the empty key.  SIGINT and SIGTERM drain and stop.\n"
		   "Exit status: 0 after a clean stop, 1 on an error, 2 on a bad command line.\n",
		   progname, progname, progname);
}

/* Sleep usecs (less if a signal lands). */
static void
nap(int64_t usecs)
{
	struct timespec ts = {.tv_sec = (time_t) (usecs / 1000000),
	.tv_nsec = (long) (usecs % 1000000) * 1000};

	nanosleep(&ts, NULL);
}

static void
on_signal(int signo)
{
	stop_signal = signo;
	signals_seen++;
}

/* Parse a number of seconds in [0, max] into microseconds. */
static int64_t
parse_seconds(const char *arg, const char *what, double max)
{
	char	   *end;
	double		secs = strtod(arg, &end);

	if (end == arg || *end != '\0' || !(secs >= 0 && secs <= max))
		bad_usage("invalid %s: \"%s\" (want seconds from 0 to %g)", what, arg, max);
	return (int64_t) (secs * 1000000);
}

/* Parse a whole number in [min, max]. */
static long
parse_count(const char *arg, const char *what, long min, long max)
{
	char	   *end;
	long		v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (end == arg || *end != '\0' || errno != 0 || v < min || v > max)
		bad_usage("invalid %s: \"%s\" (want a whole number from %ld to %ld)", what, arg, min, max);
	return v;
}

/*
 * The value of the top-level "payer_id" member of a JSON object, when it is
 * a string without escapes (a uuid always is); NULL otherwise.  A small
 * scanner rather than a search for the text, so that a key-like text inside
 * a string value (reasons can be edited) is never taken for the key.
 */
static const char *
payer_id_of(const char *s, size_t n, size_t *len)
{
	int			depth = 0;
	bool		at_key = false; /* the next string is a top-level key */
	size_t		i = 0;

	while (i < n)
	{
		char		c = s[i];

		if (c == '"')
		{
			size_t		start = ++i;
			bool		escaped = false;
			bool		is_payer;

			while (i < n && s[i] != '"')
			{
				if (s[i] == '\\')
				{
					escaped = true;
					i++;
				}
				i++;
			}
			if (i >= n)
				return NULL;
			is_payer = at_key && !escaped && i - start == 8 &&
				memcmp(s + start, "payer_id", 8) == 0;
			i++;
			if (!at_key)
				continue;
			at_key = false;
			while (i < n && (s[i] == ' ' || s[i] == ':'))
				i++;
			if (is_payer)
			{
				size_t		vstart = i + 1;

				if (i >= n || s[i] != '"')
					return NULL;
				for (i = vstart; i < n && s[i] != '"'; i++)
					if (s[i] == '\\')
						return NULL;
				if (i >= n)
					return NULL;
				*len = i - vstart;
				return s + vstart;
			}
			continue;
		}
		if (c == '{' || c == '[')
		{
			depth++;
			at_key = (c == '{' && depth == 1);
		}
		else if (c == '}' || c == ']')
		{
			depth--;
			at_key = false;
		}
		else if (c == ',' && depth == 1)
			at_key = true;
		i++;
	}
	return NULL;
}

/* ---------------------------------------------------------------------
 * The queue of unacknowledged events, and the confirmed position
 * ---------------------------------------------------------------------
 */

/*
 * The ring holds up to 2 * max_in_flight + 2 entries: at most max_in_flight
 * unacknowledged messages are let in, and reading stops while the ring
 * holds 2 * max_in_flight entries (acknowledged messages wait behind an
 * unacknowledged one; consecutive keepalives share an entry).
 */
static uint64_t
queue_size(const Forwarder *f)
{
	return 2 * f->max_in_flight + 2;
}

static Pending *
queue_entry(Forwarder *f, uint64_t seq)
{
	return &f->queue[seq % queue_size(f)];
}

static uint64_t
queue_length(const Forwarder *f)
{
	return f->tail - f->head;
}

/*
 * Move the confirmed position over the acknowledged head of the queue.
 * The maximum, not the last: a transaction that began earlier and
 * committed later sends changes with lower positions after higher ones,
 * and confirming a higher position of an earlier-sent message is what
 * p2pay-stream does (the later transaction commits after it, so it is
 * resent whole if need be).
 */
static void
advance_confirmed(Forwarder *f)
{
	while (f->head < f->tail && queue_entry(f, f->head)->acked)
	{
		Pending    *e = queue_entry(f, f->head);

		if (e->lsn > f->confirmed)
			f->confirmed = e->lsn;
		f->head++;
	}
}

/*
 * A keepalive's walEnd: every message of every transaction that committed
 * before it has arrived, so it may be confirmed once all of them are
 * delivered, that is, once everything queued before it is.  Consecutive
 * keepalives share one entry, so they can't fill the queue.
 */
static void
queue_keepalive(Forwarder *f, Lsn walend)
{
	Pending    *last;

	if (queue_length(f) == 0)
	{
		if (walend > f->confirmed)
			f->confirmed = walend;
		return;
	}
	last = queue_entry(f, f->tail - 1);
	if (!last->is_message)
	{
		if (walend > last->lsn)
			last->lsn = walend;
		return;
	}
	if (queue_length(f) >= queue_size(f) - 1)
		return;					/* a later keepalive will do */
	last = queue_entry(f, f->tail++);
	*last = (Pending) {.lsn = walend,.is_message = false,.acked = true};
}

/* Fsync what the confirmed position vouches for, then report it. */
static void
send_feedback(Forwarder *f)
{
	if (f->out_dirty)
	{
		if (fflush(f->out) != 0 || (f->out_fsync && fsync(fileno(f->out)) != 0))
			die("could not write or fsync the output: %s", strerror(errno));
		f->out_dirty = false;
	}
	if (f->mock_dump_dirty)
	{
		if (fflush(f->mock_dump) != 0 || fsync(fileno(f->mock_dump)) != 0)
			die("could not write or fsync the mock dump: %s", strerror(errno));
		f->mock_dump_dirty = false;
	}
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

/* The one-line progress summary. */
static void
log_progress(Forwarder *f)
{
	logmsg("progress: %ld events received, %ld delivered, %llu in flight, confirmed "
		   LSN_FORMAT ", lag %llu bytes",
		   f->received, f->delivered,
		   (unsigned long long) f->unacked,
		   LSN_ARGS(f->reported),
		   (unsigned long long) (f->server_end > f->reported ? f->server_end - f->reported : 0));
	f->next_progress = usecs_now(CLOCK_MONOTONIC) + f->progress_usecs;
}

/* ---------------------------------------------------------------------
 * Kafka
 * ---------------------------------------------------------------------
 */

/*
 * Open a file to append lines to.  Each line is flushed on its own, from a
 * buffer larger than any line, so that it reaches the file in one write()
 * and a kill can't leave half of it.  A line cut short anyway (it was never
 * confirmed, so it comes again) is ended first, so that the next line
 * starts on a line of its own.  Returns NULL with errno set on failure.
 */
static FILE *
open_append(const char *path)
{
	FILE	   *file = fopen(path, "a+");

	if (file == NULL)
		return NULL;
	if (setvbuf(file, NULL, _IOFBF, 1 << 20) != 0)
	{
		fclose(file);
		errno = ENOMEM;
		return NULL;
	}
	if (fseek(file, -1, SEEK_END) == 0 && fgetc(file) != '\n')
	{
		if (fseek(file, 0, SEEK_END) != 0 || fputc('\n', file) == EOF || fflush(file) != 0)
		{
			fclose(file);
			return NULL;
		}
	}
	clearerr(file);
	return file;
}

/* Set a librdkafka property, or explain why not and exit 2. */
static void
kafka_set(rd_kafka_conf_t *conf, const char *key, const char *value)
{
	char		err[512];

	if (rd_kafka_conf_set(conf, key, value, err, sizeof(err)) != RD_KAFKA_CONF_OK)
		bad_usage("invalid Kafka setting %s=%s: %s", key, value, err);
}

/*
 * A delivery report.  The opaque is the message's sequence number; a
 * report from before the last rewind (below epoch) changes nothing in the
 * queue.  An acknowledged message is written to the mock dump whatever its
 * epoch: it is on the topic.
 */
static void
on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	Forwarder  *f = opaque;
	uint64_t	seq = (uint64_t) (uintptr_t) msg->_private;
	bool		current = seq >= f->epoch && seq >= f->head && seq < f->tail;

	(void) rk;

	if (msg->err)
	{
		if (current && !f->failed)
		{
			f->failed = true;
			snprintf(f->failure, sizeof(f->failure),
					 "delivery of the event at " LSN_FORMAT " failed: %s",
					 LSN_ARGS(queue_entry(f, seq)->lsn), rd_kafka_err2str(msg->err));
		}
		return;
	}
	f->delivered++;
	if (f->mock_dump != NULL)
	{
		/* a null key as \N, so that it can't pass for the empty key */
		fprintf(f->mock_dump, "%d\t%lld\t%.*s\t%.*s\n",
				(int) msg->partition, (long long) msg->offset,
				msg->key ? (int) msg->key_len : 2, msg->key ? (const char *) msg->key : "\\N",
				(int) msg->len, (const char *) msg->payload);
		if (fflush(f->mock_dump) != 0)
			die("could not write the mock dump: %s", strerror(errno));
		f->mock_dump_dirty = true;
	}
	if (current && !queue_entry(f, seq)->acked)
	{
		queue_entry(f, seq)->acked = true;
		f->unacked--;
	}
}

/* librdkafka's errors and warnings, into our log. */
static void
on_kafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	(void) rk;
	(void) opaque;
	/* connection failures are in the log lines already */
	if (err != RD_KAFKA_RESP_ERR__TRANSPORT && err != RD_KAFKA_RESP_ERR__FATAL)
		logmsg("kafka: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t) err), reason);
}

/*
 * librdkafka's log lines, into our log.  The warning that
 * enable.gapless.guarantee is experimental is left out: it is set on
 * purpose, and said in --help.
 */
static void
on_kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void) rk;
	if (strcmp(fac, "CONFWARN") == 0 && strstr(buf, "enable.gapless.guarantee") != NULL)
		return;
	logmsg("kafka: %s%s: %s", level <= 3 ? "error: " : "", fac, buf);
}

/*
 * Create the producer from the kept configuration.  At start a refusal is
 * a bad setting (exit 2); later, an error.
 */
static void
kafka_create(Forwarder *f, bool at_start)
{
	char		err[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_dup(f->kconf);

	f->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	if (f->rk == NULL && at_start)
		bad_usage("invalid Kafka settings: %s", err);
	if (f->rk == NULL)
		die("could not create the Kafka producer: %s", err);
	if (f->mock_brokers > 0)
	{
		rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(f->rk);

		if (mc == NULL)
			die("test.mock.num.brokers is set but librdkafka made no mock cluster");
		/* six partitions, each on every broker, so that keys spread */
		if (rd_kafka_mock_topic_create(mc, f->topic, 6, f->mock_brokers) != 0)
			die("could not create topic \"%s\" in the mock cluster", f->topic);
	}
}

/*
 * Wait until the brokers answer and know the topic, or exit 1 when
 * --connect-timeout runs out: at start only, so that a wrong address or
 * topic is an error rather than a silent wait.  (Later outages are waited
 * out.)
 */
static void
kafka_check(Forwarder *f)
{
	int64_t		deadline = usecs_now(CLOCK_MONOTONIC) + f->connect_usecs;
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(f->rk, f->topic, NULL);
	rd_kafka_resp_err_t err;
	const char *why = "no answer";

	if (rkt == NULL)
		die("invalid topic \"%s\": %s", f->topic, rd_kafka_err2str(rd_kafka_last_error()));
	for (;;)
	{
		const struct rd_kafka_metadata *md = NULL;
		int64_t		left = deadline - usecs_now(CLOCK_MONOTONIC);

		err = rd_kafka_metadata(f->rk, 0, rkt, &md, (int) (left > 1000000 ? 1000 : left / 1000 + 1));
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			rd_kafka_resp_err_t terr = md->topic_cnt == 1 ? md->topics[0].err
				: RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
			int			partitions = md->topic_cnt == 1 ? md->topics[0].partition_cnt : 0;

			rd_kafka_metadata_destroy(md);
			if (terr == RD_KAFKA_RESP_ERR_NO_ERROR && partitions > 0)
				break;
			/* an auto-created topic may take a moment to get a leader */
			why = rd_kafka_err2str(terr == RD_KAFKA_RESP_ERR_NO_ERROR
								   ? RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE : terr);
		}
		else
			why = rd_kafka_err2str(err);
		if (stop_signal)
			exit(1);
		if (usecs_now(CLOCK_MONOTONIC) >= deadline)
		{
			rd_kafka_topic_destroy(rkt);
			if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
				die("the Kafka brokers at %s do not serve topic \"%s\": %s\n"
					"Create the topic, or enable auto.create.topics.enable on the brokers.",
					f->brokers ? f->brokers : "(mock)", f->topic, why);
			die("could not reach the Kafka brokers at %s within %g s: %s",
				f->brokers ? f->brokers : "(mock)", (double) f->connect_usecs / 1e6, why);
		}
		nap(200000);
	}
	rd_kafka_topic_destroy(rkt);
}

/*
 * Produce one line, keyed by its payer_id.  Waits (serving delivery
 * reports) while librdkafka's own queue is full.  Returns false if it could
 * not, with f->failed set, or on a stop signal.
 */
static bool
kafka_produce(Forwarder *f, const char *data, size_t len, uint64_t seq, Lsn lsn)
{
	size_t		keylen = 0;
	const char *key = payer_id_of(data, len, &keylen);

	if (key == NULL)
		key = "";
	for (;;)
	{
		rd_kafka_resp_err_t err = rd_kafka_producev(
			f->rk,
			RD_KAFKA_V_TOPIC(f->topic),
			RD_KAFKA_V_KEY(key, keylen),
			RD_KAFKA_V_VALUE((void *) data, len),
			RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
			RD_KAFKA_V_OPAQUE((void *) (uintptr_t) seq),
			RD_KAFKA_V_END);

		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
			return true;
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
		{
			f->failed = true;
			snprintf(f->failure, sizeof(f->failure),
					 "could not produce the event at " LSN_FORMAT ": %s",
					 LSN_ARGS(lsn), rd_kafka_err2str(err));
			return false;
		}
		if (stop_signal)
			return false;
		rd_kafka_poll(f->rk, 100);
		if (f->conn != NULL && usecs_now(CLOCK_MONOTONIC) >= f->next_feedback)
		{
			advance_confirmed(f);
			send_feedback(f);
		}
	}
}

/* Test-only: the mock cluster's scheduled outage and failures. */
static void
mock_events(Forwarder *f)
{
	rd_kafka_mock_cluster_t *mc;

	if (f->mock_brokers == 0 || f->rk == NULL)
		return;
	mc = rd_kafka_handle_mock_cluster(f->rk);
	if (f->mock_outage_after > 0 && f->mock_outage_state == 0 &&
		f->delivered >= f->mock_outage_after)
	{
		for (int id = 1; id <= f->mock_brokers; id++)
			rd_kafka_mock_broker_set_down(mc, id);
		f->mock_outage_state = 1;
		logmsg("mock: all %d brokers down after %ld deliveries, until %s exists",
			   f->mock_brokers, f->delivered, f->mock_outage_until);
	}
	if (f->mock_outage_state == 1 && access(f->mock_outage_until, F_OK) == 0)
	{
		for (int id = 1; id <= f->mock_brokers; id++)
			rd_kafka_mock_broker_set_up(mc, id);
		f->mock_outage_state = 2;
		logmsg("mock: brokers up again");
	}
	if (f->mock_fail_after > 0 && !f->mock_fail_done && f->delivered >= f->mock_fail_after)
	{
		rd_kafka_resp_err_t *errs = calloc((size_t) f->mock_fail_count, sizeof(*errs));

		if (errs == NULL)
			die("out of memory");
		for (int i = 0; i < f->mock_fail_count; i++)
			errs[i] = RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED;
		rd_kafka_mock_push_request_errors_array(mc, KAFKA_API_PRODUCE,
												(size_t) f->mock_fail_count, errs);
		free(errs);
		f->mock_fail_done = true;
		logmsg("mock: the next %d produce requests fail (after %ld deliveries)",
			   f->mock_fail_count, f->delivered);
	}
}

/* ---------------------------------------------------------------------
 * PostgreSQL
 * ---------------------------------------------------------------------
 */

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
static bool
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
					 " p2pay.flagged_since() (README: Standbys and failover).",
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
static void
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

/* ---------------------------------------------------------------------
 * The stream
 * ---------------------------------------------------------------------
 */

/* Hand one message of the stream to the sink. */
static void
handle_xlogdata(Forwarder *f, const char *data, size_t len, Lsn lsn)
{
	f->received++;
	if (f->out != NULL)
	{
		/* written before the next read; fsynced before it is confirmed */
		if (fwrite(data, 1, len, f->out) != len || fputc('\n', f->out) == EOF ||
			fflush(f->out) != 0)
			die("could not write the output: %s", strerror(errno));
		f->out_dirty = true;
		f->delivered++;
		if (lsn > f->confirmed)
			f->confirmed = lsn;
		return;
	}
	if (kafka_produce(f, data, len, f->tail, lsn))
	{
		*queue_entry(f, f->tail++) = (Pending) {.lsn = lsn,.is_message = true,.acked = false};
		f->unacked++;
	}
}

/*
 * Handle one CopyData message from the server.  Returns false when the
 * message is not one the protocol has.
 */
static bool
handle_copydata(Forwarder *f, const char *msg, int len)
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
static void
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

/* Sleep about usecs, waking early on a stop signal. */
static void
sleep_unless_stopped(int64_t usecs)
{
	int64_t		until = usecs_now(CLOCK_MONOTONIC) + usecs;

	while (!stop_signal && usecs_now(CLOCK_MONOTONIC) < until)
		nap(100000);
}

/*
 * Start again from the confirmed position, after a failed delivery or a
 * lost connection.  What was acknowledged is confirmed first; everything
 * after it is forgotten here and resent by the server, in order.  Messages
 * still queued in the producer are purged, so that fewer come twice;
 * messages already sent to a broker are left to finish (their reports are
 * stale now), and whatever is produced next goes after them in each
 * partition.  A producer in a fatal state (the gapless guarantee stopped
 * it) is made again.
 */
static void
rewind_stream(Forwarder *f, const char *why, int64_t *backoff)
{
	char		fatal[512];

	advance_confirmed(f);
	if (f->conn != NULL && PQstatus(f->conn) == CONNECTION_OK)
		send_feedback(f);
	logmsg("%s; starting again from the confirmed position " LSN_FORMAT
		   " in %.0f s (%llu events not yet acknowledged will be sent again)",
		   why, LSN_ARGS(f->confirmed), backoff ? (double) *backoff / 1e6 : 0.0,
		   (unsigned long long) f->unacked);
	pg_stop(f);
	f->rewinds++;
	f->epoch = f->head = f->tail;
	f->unacked = 0;
	f->failed = false;
	if (f->rk != NULL)
	{
		if (rd_kafka_fatal_error(f->rk, fatal, sizeof(fatal)) != RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			logmsg("the Kafka producer stopped (%s); creating it again", fatal);
			rd_kafka_purge(f->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
			rd_kafka_poll(f->rk, 0);
			rd_kafka_destroy(f->rk);
			kafka_create(f, false);
		}
		else
		{
			rd_kafka_purge(f->rk, RD_KAFKA_PURGE_F_QUEUE);
			rd_kafka_poll(f->rk, 0);
		}
	}
	if (backoff != NULL)
	{
		sleep_unless_stopped(*backoff);
		*backoff = *backoff * 2 > BACKOFF_MAX_USECS ? BACKOFF_MAX_USECS : *backoff * 2;
	}
}

/*
 * Stop on a signal: read no more, wait up to --drain-timeout for Kafka to
 * acknowledge what is in flight (a second signal cuts it short), confirm,
 * and end the stream.  Returns the exit status: 0 when everything read was
 * delivered and confirmed.
 */
static int
drain_and_stop(Forwarder *f)
{
	int64_t		deadline = usecs_now(CLOCK_MONOTONIC) + f->drain_usecs;
	int			seen = signals_seen;

	logmsg("stopping: draining %llu events in flight", (unsigned long long) f->unacked);
	while (f->rk != NULL && f->unacked > 0 && !f->failed &&
		   signals_seen == seen && usecs_now(CLOCK_MONOTONIC) < deadline)
	{
		rd_kafka_poll(f->rk, 100);
		advance_confirmed(f);
		if (usecs_now(CLOCK_MONOTONIC) >= f->next_feedback)
			send_feedback(f);
	}
	advance_confirmed(f);
	send_feedback(f);
	pg_stop(f);
	if (f->unacked > 0)
	{
		logmsg("stopped with %llu events not acknowledged by Kafka%s%s; they are not"
			   " confirmed and will be sent again on the next start; confirmed "
			   LSN_FORMAT,
			   (unsigned long long) f->unacked, f->failed ? ": " : "",
			   f->failed ? f->failure : "", LSN_ARGS(f->reported));
		return 1;
	}
	logmsg("stopped: %ld events received, %ld delivered, confirmed " LSN_FORMAT,
		   f->received, f->delivered, LSN_ARGS(f->reported));
	return 0;
}

/* The main loop: read, produce, report, until a signal. */
static int
run(Forwarder *f)
{
	int64_t		pg_backoff = BACKOFF_MIN_USECS;	/* between connection attempts */
	int64_t		kafka_backoff = BACKOFF_MIN_USECS;	/* between rewinds after failures */
	long		delivered_before = f->delivered;
	char		err[1024];

	f->next_feedback = usecs_now(CLOCK_MONOTONIC) + FEEDBACK_USECS;
	f->next_progress = usecs_now(CLOCK_MONOTONIC) + f->progress_usecs;
	while (!stop_signal)
	{
		int64_t		now = usecs_now(CLOCK_MONOTONIC);
		char	   *msg;
		int			len;

		if (f->rk != NULL)
		{
			rd_kafka_poll(f->rk, 0);
			mock_events(f);
		}
		advance_confirmed(f);
		if (f->delivered > delivered_before)
		{
			/* deliveries go through again: the next failure waits little */
			kafka_backoff = BACKOFF_MIN_USECS;
			delivered_before = f->delivered;
		}
		if (f->failed)
		{
			rewind_stream(f, f->failure, &kafka_backoff);
			continue;
		}
		if (f->conn == NULL)
		{
			bool		fatal;

			if (!pg_start(f, err, sizeof(err), &fatal))
			{
				if (fatal)
					die("%s", err);
				logmsg("%s; trying again in %.0f s", err, (double) pg_backoff / 1e6);
				sleep_unless_stopped(pg_backoff);
				pg_backoff = pg_backoff * 2 > BACKOFF_MAX_USECS ? BACKOFF_MAX_USECS : pg_backoff * 2;
				continue;
			}
			pg_backoff = BACKOFF_MIN_USECS;
		}
		if (now >= f->next_feedback)
			send_feedback(f);
		if (f->progress_usecs > 0 && now >= f->next_progress)
			log_progress(f);

		/* backpressure: while the queue is full, only serve Kafka */
		if (f->unacked >= f->max_in_flight || queue_length(f) >= 2 * f->max_in_flight)
		{
			rd_kafka_poll(f->rk, 100);
			continue;
		}
		len = PQgetCopyData(f->conn, &msg, 1);
		if (len > 0)
		{
			bool		ok = handle_copydata(f, msg, len);

			if (!ok)
				die("unexpected message \"%c\" of %d bytes in the stream", msg[0], len);
			PQfreemem(msg);
			continue;
		}
		if (len == 0)
		{
			/* short waits while Kafka owes reports, so they are served soon */
			int64_t		wait = queue_length(f) > 0 ? 20000 : 1000000;

			if (f->next_feedback - now < wait)
				wait = f->next_feedback - now;
			wait_for_server(f, wait);
			if (!PQconsumeInput(f->conn))
				len = -2;
			else
				continue;
		}

		/* the server ended the stream or the connection broke: start again */
		if (len == -1)
		{
			PGresult   *res = PQgetResult(f->conn);

			snprintf(err, sizeof(err), "the server ended the stream: %s",
					 PQresultStatus(res) == PGRES_FATAL_ERROR ?
					 pq_message(PQresultErrorMessage(res)) : "no error reported");
			PQclear(res);
		}
		else
			snprintf(err, sizeof(err), "lost the connection to PostgreSQL: %s",
					 pq_message(PQerrorMessage(f->conn)));
		rewind_stream(f, err, NULL);
	}
	return drain_and_stop(f);
}

int
main(int argc, char **argv)
{
	enum
	{
		OPT_TO = 256, OPT_CREATE_SLOT, OPT_FAILOVER, OPT_CONNECT_TIMEOUT, OPT_DRAIN_TIMEOUT,
		OPT_MAX_IN_FLIGHT, OPT_MOCK_DUMP, OPT_MOCK_OUTAGE, OPT_MOCK_FAIL
	};
	static const struct option long_options[] = {
		{"dsn", required_argument, NULL, 'd'},
		{"slot", required_argument, NULL, 'S'},
		{"option", required_argument, NULL, 'o'},
		{"brokers", required_argument, NULL, 'b'},
		{"topic", required_argument, NULL, 't'},
		{"status-interval", required_argument, NULL, 's'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{"to", required_argument, NULL, OPT_TO},
		{"create-slot", no_argument, NULL, OPT_CREATE_SLOT},
		{"failover", no_argument, NULL, OPT_FAILOVER},
		{"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
		{"drain-timeout", required_argument, NULL, OPT_DRAIN_TIMEOUT},
		{"max-in-flight", required_argument, NULL, OPT_MAX_IN_FLIGHT},
		/* test-only, left out of --help */
		{"mock-dump", required_argument, NULL, OPT_MOCK_DUMP},
		{"mock-outage", required_argument, NULL, OPT_MOCK_OUTAGE},
		{"mock-fail", required_argument, NULL, OPT_MOCK_FAIL},
		{0}
	};
	Forwarder	f = {
		.dsn = getenv("P2PAY_DSN"),
		.slot = getenv("P2PAY_SLOT"),
		.brokers = getenv("P2PAY_BROKERS"),
		.topic = getenv("P2PAY_TOPIC"),
		.progress_usecs = 10000000,
		.connect_usecs = 30000000,
		.drain_usecs = 60000000,
		.max_in_flight = 100000,
	};
	char	  **kafka_opts = calloc((size_t) argc + 1, sizeof(char *));
	int			nkafka_opts = 0;
	const char *mock_dump_path = NULL;
	char		err[1024];
	bool		fatal;
	struct sigaction sa;
	int			c;

	f.plugin_opts = calloc((size_t) argc + 1, sizeof(char *));
	if (kafka_opts == NULL || f.plugin_opts == NULL)
		die("out of memory");
	if (f.dsn == NULL)
		f.dsn = "";
	while ((c = getopt_long(argc, argv, "d:S:o:b:t:X:s:vh", long_options, NULL)) != -1)
	{
		switch (c)
		{
			case 'd':
				f.dsn = optarg;
				break;
			case 'S':
				f.slot = optarg;
				break;
			case 'o':
				if (optarg[0] == '\0' || optarg[0] == '=')
					bad_usage("an output plugin option needs a name: -o %s", optarg);
				f.plugin_opts[f.nplugin_opts++] = optarg;
				break;
			case 'b':
				f.brokers = optarg;
				break;
			case 't':
				f.topic = optarg;
				break;
			case 'X':
				if (strchr(optarg, '=') == NULL || optarg[0] == '=')
					bad_usage("a Kafka setting is KEY=VALUE: -X %s", optarg);
				kafka_opts[nkafka_opts++] = optarg;
				break;
			case 's':
				f.progress_usecs = parse_seconds(optarg, "status interval", 86400);
				break;
			case 'v':
				f.verbose = true;
				break;
			case 'h':
				usage();
				free(kafka_opts);
				free(f.plugin_opts);
				return 0;
			case OPT_TO:
				f.to = optarg;
				break;
			case OPT_CREATE_SLOT:
				f.create_slot = true;
				break;
			case OPT_FAILOVER:
				f.failover = true;
				break;
			case OPT_CONNECT_TIMEOUT:
				f.connect_usecs = parse_seconds(optarg, "connect timeout", 86400);
				break;
			case OPT_DRAIN_TIMEOUT:
				f.drain_usecs = parse_seconds(optarg, "drain timeout", 86400);
				break;
			case OPT_MAX_IN_FLIGHT:
				f.max_in_flight = (uint64_t) parse_count(optarg, "in-flight limit", 1, 10000000);
				break;
			case OPT_MOCK_DUMP:
				mock_dump_path = optarg;
				break;
			case OPT_MOCK_OUTAGE:
				{
					char	   *colon = strchr(optarg, ':');

					if (colon == NULL || colon[1] == '\0')
						bad_usage("--mock-outage wants COUNT:FILE, not \"%s\"", optarg);
					*colon = '\0';
					f.mock_outage_after = parse_count(optarg, "--mock-outage count", 0, LONG_MAX);
					f.mock_outage_until = colon + 1;
					break;
				}
			case OPT_MOCK_FAIL:
				{
					char	   *at = strchr(optarg, '@');

					if (at == NULL)
						bad_usage("--mock-fail wants COUNT@AFTER, not \"%s\"", optarg);
					*at = '\0';
					f.mock_fail_count = (int) parse_count(optarg, "--mock-fail count", 1, 1000);
					f.mock_fail_after = parse_count(at + 1, "--mock-fail position", 0, LONG_MAX);
					break;
				}
			default:
				bad_usage("invalid command line");
		}
	}
	if (optind < argc)
		bad_usage("too many arguments, starting with \"%s\"", argv[optind]);
	if (f.slot == NULL || f.slot[0] == '\0')
		bad_usage("no slot given: name the logical replication slot with --slot (or P2PAY_SLOT)");
	if (f.failover && !f.create_slot)
		bad_usage("--failover is how --create-slot makes the slot: give both");

	if (f.to != NULL)
	{
		if (nkafka_opts > 0 || mock_dump_path || f.mock_outage_after || f.mock_fail_after)
			bad_usage("--to writes to a file: Kafka settings (-X, --mock-*) don't apply");
		if (strcmp(f.to, "-") == 0 || strcmp(f.to, "stdout") == 0)
			f.out = stdout;
		else if ((f.out = open_append(f.to)) == NULL)
			die("could not open \"%s\": %s", f.to, strerror(errno));
		else
		{
			struct stat st;

			f.out_fsync = fstat(fileno(f.out), &st) == 0 && S_ISREG(st.st_mode);
		}
	}
	else
	{
		char		value[64];
		size_t		vlen = sizeof(value);

		if (f.topic == NULL || f.topic[0] == '\0')
			bad_usage("no topic given: name it with --topic (or P2PAY_TOPIC), or use --to");
		f.kconf = rd_kafka_conf_new();
		kafka_set(f.kconf, "client.id", "p2pay-forward");
		kafka_set(f.kconf, "enable.idempotence", "true");
		kafka_set(f.kconf, "acks", "all");
		kafka_set(f.kconf, "message.timeout.ms", "0");
		kafka_set(f.kconf, "enable.gapless.guarantee", "true");
		kafka_set(f.kconf, "partitioner", "murmur2_random");
		kafka_set(f.kconf, "linger.ms", "5");
		if (f.brokers != NULL)
			kafka_set(f.kconf, "bootstrap.servers", f.brokers);
		for (int i = 0; i < nkafka_opts; i++)
		{
			char	   *eq = strchr(kafka_opts[i], '=');

			*eq = '\0';
			kafka_set(f.kconf, kafka_opts[i], eq + 1);
		}
		/* the guarantee rests on these: refuse to run without them */
		if (rd_kafka_conf_get(f.kconf, "enable.idempotence", value, &vlen) != RD_KAFKA_CONF_OK ||
			strcmp(value, "true") != 0)
			bad_usage("-X enable.idempotence=false would let Kafka lose or reorder events:"
					  " p2pay-forward needs the idempotent producer");
		vlen = sizeof(value);
		if (rd_kafka_conf_get(f.kconf, "test.mock.num.brokers", value, &vlen) == RD_KAFKA_CONF_OK)
			f.mock_brokers = atoi(value);
		if (f.mock_brokers == 0 && (mock_dump_path || f.mock_outage_after || f.mock_fail_after))
			bad_usage("--mock-dump, --mock-outage and --mock-fail are for tests, with"
					  " -X test.mock.num.brokers=N");
		if (f.mock_brokers == 0 && (f.brokers == NULL || f.brokers[0] == '\0'))
			bad_usage("no brokers given: list them with --brokers (or P2PAY_BROKERS), or use --to");
		rd_kafka_conf_set_dr_msg_cb(f.kconf, on_delivery);
		rd_kafka_conf_set_error_cb(f.kconf, on_kafka_error);
		rd_kafka_conf_set_log_cb(f.kconf, on_kafka_log);
		rd_kafka_conf_set_opaque(f.kconf, &f);
		if ((f.queue = calloc(queue_size(&f), sizeof(Pending))) == NULL)
			die("out of memory");
		if (mock_dump_path != NULL && (f.mock_dump = open_append(mock_dump_path)) == NULL)
			die("could not open \"%s\": %s", mock_dump_path, strerror(errno));
	}

	/* Signals first, so that a stop while waiting for the brokers is quick. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	/* At start, a wrong address, slot or option is an error, not a wait. */
	if (f.kconf != NULL)
	{
		kafka_create(&f, true);
		kafka_check(&f);
	}
	if (!pg_start(&f, err, sizeof(err), &fatal))
		die("%s", err);
	logmsg("forwarding to %s%s%s", f.to ? "" : "topic ", f.to ? f.to : f.topic,
		   f.mock_brokers > 0 ? " (mock cluster)" : "");

	c = run(&f);
	if (f.rk != NULL)
		rd_kafka_destroy(f.rk);
	if (f.kconf != NULL)
		rd_kafka_conf_destroy(f.kconf);
	free(f.queue);
	free(f.plugin_opts);
	free(kafka_opts);
	if (f.out != NULL && f.out != stdout && fclose(f.out) != 0)
		die("could not close \"%s\": %s", f.to, strerror(errno));
	if (f.mock_dump != NULL && fclose(f.mock_dump) != 0)
		die("could not close \"%s\": %s", mock_dump_path, strerror(errno));
	return c;
}
