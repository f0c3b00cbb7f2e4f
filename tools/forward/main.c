/*
 * main.c: p2pay-forward's command line and main loop.
 *
 * p2pay-forward delivers the p2pay stream from a logical replication slot
 * to a Kafka topic (or to a file), at least once; forward.h says which
 * file holds which part, and why a confirmed position never passes an
 * undelivered event.
 *
 * The main loop reads the replication connection (source.c), serves
 * librdkafka's delivery reports, moves the confirmed position over what
 * was acknowledged (queue.c), and sends a status update every second.  It
 * stops reading while --max-in-flight events are unacknowledged.  A
 * delivery that fails, or a lost connection, makes it start again from
 * the confirmed position (a "rewind"), so the failed message and
 * everything after it are produced again, in order, after a backoff.  A
 * message Kafka refuses for good (too large, no permission) therefore
 * halts the stream at that event, with an error in the log each time,
 * until the cause is fixed; it is never dropped.
 *
 * Test builds (make tools/p2pay-forward-test, -DP2PAY_FORWARD_TESTING)
 * also take the options --mock-dump, --mock-outage and --mock-fail, with
 * -X test.mock.num.brokers=N: see mock.c and t/007_forward.pl.  The
 * installed program has neither the options nor their code.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "forward.h"

volatile sig_atomic_t stop_signal = 0;
static volatile sig_atomic_t signals_seen = 0;

/* --help */
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
		   "                            -o min-decision=decline; repeatable; -o key=payee_id\n"
		   "                            keys the messages by payee_id (or transaction_id)\n\n"
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
long
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
 * after it is forgotten here and resent by the server, in order; the
 * producer drops what it has not sent yet (kafka_restart).
 */
static void
rewind_stream(Forwarder *f, const char *why, int64_t *backoff)
{
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
	kafka_restart(f);
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
#ifdef P2PAY_FORWARD_TESTING
		/* test builds only (mock.c), left out of --help */
		{"mock-dump", required_argument, NULL, OPT_MOCK_DUMP},
		{"mock-outage", required_argument, NULL, OPT_MOCK_OUTAGE},
		{"mock-fail", required_argument, NULL, OPT_MOCK_FAIL},
#endif
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
	bool		key_given = false;
	char		err[1024];
	bool		fatal;
	struct sigaction sa;
	int			c;

	progname = "p2pay-forward";
	/* room for the key option, added below unless given */
	f.plugin_opts = calloc((size_t) argc + 2, sizeof(char *));
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
				if (strncmp(optarg, KEY_OPTION, strlen(KEY_OPTION)) == 0 &&
					(optarg[strlen(KEY_OPTION)] == '=' || optarg[strlen(KEY_OPTION)] == '\0'))
					key_given = true;
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
#ifdef P2PAY_FORWARD_TESTING
			case OPT_MOCK_DUMP:
			case OPT_MOCK_OUTAGE:
			case OPT_MOCK_FAIL:
				mock_option(c - OPT_MOCK_DUMP, optarg);
				break;
#endif
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
	/* each line's key, where the sinks find it (source.c) */
	if (!key_given)
		f.plugin_opts[f.nplugin_opts++] = KEY_OPTION "=" KEY_DEFAULT;

	if (f.to != NULL)
	{
		if (nkafka_opts > 0 || mock_options_given())
			bad_usage("--to writes to a file: Kafka settings (-X" TEST_ONLY(", --mock-*")
					  ") don't apply");
		file_open(&f);
	}
	else
	{
		if (f.topic == NULL || f.topic[0] == '\0')
			bad_usage("no topic given: name it with --topic (or P2PAY_TOPIC), or use --to");
		kafka_configure(&f, kafka_opts, nkafka_opts);
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
		   mock_cluster() ? TEST_ONLY(" (mock cluster)") : "");

	c = run(&f);
	if (f.rk != NULL)
		rd_kafka_destroy(f.rk);
	if (f.kconf != NULL)
		rd_kafka_conf_destroy(f.kconf);
	free(f.queue);
	free(f.plugin_opts);
	free(kafka_opts);
	file_close(&f);
	mock_close();
	return c;
}
