# docker/init-replication.sh: sourced by the postgres image's entrypoint
# (as 30-p2pay-replication.sh), once, when it initialises an empty data
# directory, after the extension and the README's roles.  Not executable on
# purpose: the entrypoint sources a script that isn't, which gives it the
# entrypoint's docker_process_sql (psql as POSTGRES_USER in POSTGRES_DB).
#
# The forwarder and the HTTP daemon's live feed read the stream as roles of
# their own that can log in and replicate, and nothing else (no superuser,
# no table privileges: a logical replication connection needs neither).
# Their passwords come from the compose file's secrets, read here by psql
# itself (\set with backquotes), never through the environment.
#
# Their slots are made here too, with the data directory: so the slot's
# history is the database's, events from the first payment on are kept for
# the forwarder, and no long-running service ever creates a slot.  A slot
# dropped or invalidated later stops the forwarder with a message (it never
# runs with --create-slot) instead of being replaced at the current
# position, which would skip every event in between.
for secret in /run/secrets/p2pay_forward_password /run/secrets/p2pay_feed_password; do
    if [ ! -s "$secret" ]; then
        echo "30-p2pay-replication.sh: $secret is missing or empty (see docker/README.md: Secrets)" >&2
        exit 1
    fi
done

docker_process_sql <<'EOSQL'
\set forward_password `head -n 1 /run/secrets/p2pay_forward_password`
\set feed_password `head -n 1 /run/secrets/p2pay_feed_password`
CREATE ROLE p2pay_forward LOGIN REPLICATION PASSWORD :'forward_password';
COMMENT ON ROLE p2pay_forward IS 'p2pay-forward: reads slot p2pay_kafka';
CREATE ROLE p2pay_feed LOGIN REPLICATION PASSWORD :'feed_password';
COMMENT ON ROLE p2pay_feed IS 'p2pay-http''s live feed: reads slot p2pay_http';
SELECT slot_name, lsn FROM pg_catalog.pg_create_logical_replication_slot('p2pay_kafka', 'p2pay');
SELECT slot_name, lsn FROM pg_catalog.pg_create_logical_replication_slot('p2pay_http', 'p2pay');
EOSQL
