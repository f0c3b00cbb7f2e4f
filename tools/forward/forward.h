/*
 * forward.h: the parts of p2pay-forward and what they share.
 *
 * p2pay-forward delivers the p2pay stream from a logical replication slot
 * to a Kafka topic (or to a file), at least once.  Its files, one concern
 * each:
 *   main.c        the command line, the main loop, rewinds and the stop
 *   source.c      the replication connection: the slot, the stream's
 *                 messages, the key of each line, the status updates
 *   queue.c       what has been handed to the sink, in stream order, and
 *                 the position that may be confirmed
 *   sink_kafka.c  the Kafka producer and its delivery reports
 *   sink_file.c   --to FILE and --to stdout
 *   mock.c        test builds only (P2PAY_FORWARD_TESTING): librdkafka's
 *                 mock cluster, its injected outages and failures, and the
 *                 dump of what it acknowledged (t/007_forward.pl)
 *
 * The rule that makes it at least once: the position confirmed to the
 * server (the flush position of the standby status updates, kept as the
 * slot's confirmed_flush_lsn) never passes a message the sink has not
 * acknowledged.  queue.c keeps that rule; source.c only reports what the
 * queue allows, after the sinks have made their output durable.
 *
 * Single-threaded: the main loop reads the replication connection, serves
 * librdkafka's delivery reports (rd_kafka_poll, on this thread), and sends a
 * status update every second.  librdkafka's own threads only log (through
 * logmsg, one write a line).
 */
#ifndef P2PAY_FORWARD_H
#define P2PAY_FORWARD_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "../common.h"
#include "../replication.h"

/* How often the confirmed position is reported to the server. */
#define FEEDBACK_USECS 1000000

/* Backoff between attempts after a failure: from 1 s, doubling, to 30 s. */
#define BACKOFF_MIN_USECS 1000000
#define BACKOFF_MAX_USECS 30000000

/* The plugin option that puts each line's key first, and its default. */
#define KEY_OPTION "key"
#define KEY_DEFAULT "payer_id"

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

	/* the replication connection (source.c) */
	PGconn	   *conn;
	Lsn			confirmed;		/* every event before it is delivered */
	Lsn			reported;		/* last flush position sent to the server */
	Lsn			server_end;		/* the server's walEnd, for the lag */
	int64_t		next_feedback;
	int64_t		next_progress;

	/* the queue (queue.c) */
	Pending    *queue;			/* ring of queue_size() entries */
	uint64_t	head;			/* sequence number of the oldest entry */
	uint64_t	tail;			/* sequence number of the next entry */
	uint64_t	epoch;			/* reports of sequence numbers below it are stale */
	uint64_t	unacked;		/* messages in the queue not yet acknowledged */

	/* the Kafka sink (sink_kafka.c) */
	rd_kafka_conf_t *kconf;		/* kept to create the producer again */
	rd_kafka_t *rk;
	bool		failed;			/* a delivery failed: rewind */
	char		failure[512];

	/* the file sink (sink_file.c) */
	FILE	   *out;
	bool		out_fsync;		/* a regular file: fsync before confirming */
	bool		out_dirty;

	/* counters, for the progress line */
	long		received;		/* messages read from the stream */
	long		delivered;		/* acknowledged (or written) */
	long		rewinds;
} Forwarder;

/* main.c */
extern volatile sig_atomic_t stop_signal;	/* set by SIGINT and SIGTERM */
extern long parse_count(const char *arg, const char *what, long min, long max);

/* source.c */
extern bool pg_start(Forwarder *f, char *err, size_t errlen, bool *fatal);
extern void pg_stop(Forwarder *f);
extern void send_feedback(Forwarder *f);
extern bool handle_copydata(Forwarder *f, char *msg, int len);
extern void wait_for_server(Forwarder *f, int64_t timeout_usecs);
extern bool split_keyed_line(char *data, size_t len, const char **key, size_t *keylen,
							 char **value, size_t *valuelen);

/* queue.c */
extern uint64_t queue_size(const Forwarder *f);
extern Pending *queue_entry(Forwarder *f, uint64_t seq);
extern uint64_t queue_length(const Forwarder *f);
extern void queue_message(Forwarder *f, Lsn lsn);
extern void queue_keepalive(Forwarder *f, Lsn walend);
extern void advance_confirmed(Forwarder *f);

/* sink_kafka.c */
extern void kafka_configure(Forwarder *f, char **settings, int nsettings);
extern void kafka_create(Forwarder *f, bool at_start);
extern void kafka_check(Forwarder *f);
extern bool kafka_produce(Forwarder *f, const char *key, size_t keylen,
						  const char *value, size_t len, uint64_t seq, Lsn lsn);
extern void kafka_restart(Forwarder *f);

/* sink_file.c */
extern FILE *open_append(const char *path);
extern void file_open(Forwarder *f);
extern void file_write(Forwarder *f, const char *value, size_t len, Lsn lsn);
extern void file_sync(Forwarder *f);
extern void file_close(Forwarder *f);

/*
 * mock.c, in test builds only; the shipped program has none of it, and
 * these do nothing there.  TEST_ONLY("text") is text in a test build only,
 * so that the shipped program names no test-only thing either.
 */
#ifdef P2PAY_FORWARD_TESTING
#define TEST_ONLY(text) text
extern void mock_option(int opt, char *arg);
extern bool mock_options_given(void);
extern void mock_configure(Forwarder *f);
extern bool mock_cluster(void);
extern void mock_created(Forwarder *f);
extern void mock_delivered(const rd_kafka_message_t *msg);
extern void mock_sync(void);
extern void mock_events(Forwarder *f);
extern void mock_close(void);
#else
#define TEST_ONLY(text) ""
static inline bool mock_options_given(void) { return false; }
static inline void mock_configure(Forwarder *f) { (void) f; }
static inline bool mock_cluster(void) { return false; }
static inline void mock_created(Forwarder *f) { (void) f; }
static inline void mock_delivered(const rd_kafka_message_t *msg) { (void) msg; }
static inline void mock_sync(void) { }
static inline void mock_events(Forwarder *f) { (void) f; }
static inline void mock_close(void) { }
#endif

#endif							/* P2PAY_FORWARD_H */
