/*
 * sink_kafka.c: p2pay-forward's Kafka sink, with librdkafka.
 *
 * Each line is produced keyed by the key the plugin put first in it
 * (source.c), with the partitioner murmur2_random (Java's), so that one
 * payer's events go to one partition in stream order.  An event without a
 * key (a truncate) gets the empty key, which that partitioner always
 * hashes to the same partition.  The message's opaque is its sequence
 * number in the queue (queue.c), which its delivery report marks
 * acknowledged.
 *
 * Kafka is asked for the strongest acknowledgement there is: the
 * idempotent producer (enable.idempotence=true, which implies acks=all and
 * in-order retries), message.timeout.ms=0 (retry forever: while the
 * brokers are down, messages wait and nothing is confirmed) and
 * enable.gapless.guarantee=true (a failure that could leave a gap stops the
 * producer rather than let later messages through).  A delivery that fails
 * even so is never skipped: it sets f->failed, and the main loop rewinds
 * (main.c), calling kafka_restart.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdlib.h>
#include <string.h>

#include "forward.h"

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
 * queue.
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
	mock_delivered(msg);
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
 * The producer's configuration: the guarantees' settings, then the -X
 * KEY=VALUE settings (which may override all but the idempotent producer),
 * kept in f->kconf; and the queue.  A bad setting exits 2.
 */
void
kafka_configure(Forwarder *f, char **settings, int nsettings)
{
	char		value[64];
	size_t		vlen = sizeof(value);

	f->kconf = rd_kafka_conf_new();
	kafka_set(f->kconf, "client.id", "p2pay-forward");
	kafka_set(f->kconf, "enable.idempotence", "true");
	kafka_set(f->kconf, "acks", "all");
	kafka_set(f->kconf, "message.timeout.ms", "0");
	kafka_set(f->kconf, "enable.gapless.guarantee", "true");
	kafka_set(f->kconf, "partitioner", "murmur2_random");
	kafka_set(f->kconf, "linger.ms", "5");
	if (f->brokers != NULL)
		kafka_set(f->kconf, "bootstrap.servers", f->brokers);
	for (int i = 0; i < nsettings; i++)
	{
		char	   *eq = strchr(settings[i], '=');

		*eq = '\0';
		kafka_set(f->kconf, settings[i], eq + 1);
	}
	/* the guarantee rests on these: refuse to run without them */
	if (rd_kafka_conf_get(f->kconf, "enable.idempotence", value, &vlen) != RD_KAFKA_CONF_OK ||
		strcmp(value, "true") != 0)
		bad_usage("-X enable.idempotence=false would let Kafka lose or reorder events:"
				  " p2pay-forward needs the idempotent producer");
	mock_configure(f);
	if (!mock_cluster() && (f->brokers == NULL || f->brokers[0] == '\0'))
		bad_usage("no brokers given: list them with --brokers (or P2PAY_BROKERS), or use --to");
	rd_kafka_conf_set_dr_msg_cb(f->kconf, on_delivery);
	rd_kafka_conf_set_error_cb(f->kconf, on_kafka_error);
	rd_kafka_conf_set_log_cb(f->kconf, on_kafka_log);
	rd_kafka_conf_set_opaque(f->kconf, f);
	if ((f->queue = calloc(queue_size(f), sizeof(Pending))) == NULL)
		die("out of memory");
}

/*
 * Create the producer from the kept configuration.  At start a refusal is
 * a bad setting (exit 2); later, an error.
 */
void
kafka_create(Forwarder *f, bool at_start)
{
	char		err[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_dup(f->kconf);

	f->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	if (f->rk == NULL && at_start)
		bad_usage("invalid Kafka settings: %s", err);
	if (f->rk == NULL)
		die("could not create the Kafka producer: %s", err);
	mock_created(f);
}

/*
 * Wait until the brokers answer and know the topic, or exit 1 when
 * --connect-timeout runs out: at start only, so that a wrong address or
 * topic is an error rather than a silent wait.  (Later outages are waited
 * out.)
 */
void
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
					f->brokers ? f->brokers : TEST_ONLY("(mock)"), f->topic, why);
			die("could not reach the Kafka brokers at %s within %g s: %s",
				f->brokers ? f->brokers : TEST_ONLY("(mock)"), (double) f->connect_usecs / 1e6, why);
		}
		nap(200000);
	}
	rd_kafka_topic_destroy(rkt);
}

/*
 * Produce one line with its key.  Waits (serving delivery reports) while
 * librdkafka's own queue is full.  Returns false if it could not, with
 * f->failed set, or on a stop signal.
 */
bool
kafka_produce(Forwarder *f, const char *key, size_t keylen,
			  const char *value, size_t len, uint64_t seq, Lsn lsn)
{
	for (;;)
	{
		rd_kafka_resp_err_t err = rd_kafka_producev(
			f->rk,
			RD_KAFKA_V_TOPIC(f->topic),
			RD_KAFKA_V_KEY(key, keylen),
			RD_KAFKA_V_VALUE((void *) value, len),
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

/*
 * The producer's part of a rewind.  Messages still queued in the producer
 * are purged, so that fewer come twice; messages already sent to a broker
 * are left to finish (their reports are stale now), and whatever is
 * produced next goes after them in each partition.  A producer in a fatal
 * state (the gapless guarantee stopped it) is made again.
 */
void
kafka_restart(Forwarder *f)
{
	char		fatal[512];

	if (f->rk == NULL)
		return;
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
