-- scripts/roles.sql: the three roles of README.md "Privileges", the same
-- statements; make demo, the docker image and the tests create them from here.

-- The application: registers users and their methods, inserts payments and
-- reads them back.  It can't touch rules, thresholds, lists or decisions.
CREATE ROLE p2pay_app NOLOGIN;
GRANT USAGE ON SCHEMA p2pay TO p2pay_app;
GRANT SELECT ON p2pay.currencies, p2pay.payment_methods TO p2pay_app;
GRANT SELECT, INSERT ON p2pay.users, p2pay.user_payment_methods, p2pay.payments TO p2pay_app;

-- Analysts: read everything, work the review queue, label fraud, backtest.
CREATE ROLE p2pay_analyst NOLOGIN;
GRANT USAGE ON SCHEMA p2pay TO p2pay_analyst;
GRANT SELECT ON ALL TABLES IN SCHEMA p2pay TO p2pay_analyst;
GRANT SELECT, INSERT, UPDATE ON p2pay.fraud_labels TO p2pay_analyst;
GRANT SELECT, INSERT, UPDATE, DELETE ON p2pay.review_claims TO p2pay_analyst;
GRANT EXECUTE ON FUNCTION p2pay.resolve(uuid, p2pay.decision, text),
                          p2pay.score(uuid, uuid, numeric, char, uuid, timestamptz),
                          p2pay.backtest(timestamptz, timestamptz, jsonb),
                          p2pay.rule_stats_read(),
                          p2pay.decision_stats_read(),
                          p2pay.flagged_since(timestamptz, p2pay.decision, interval) TO p2pay_analyst;

-- Admins: rules, thresholds and lists, besides what analysts do.
CREATE ROLE p2pay_admin NOLOGIN IN ROLE p2pay_analyst;
GRANT UPDATE ON p2pay.rules, p2pay.settings TO p2pay_admin;
GRANT INSERT, UPDATE, DELETE ON p2pay.blocklist, p2pay.allowlist, p2pay.snoozes TO p2pay_admin;
GRANT INSERT ON p2pay.currencies, p2pay.payment_methods TO p2pay_admin;
GRANT EXECUTE ON FUNCTION p2pay.snooze(text, uuid, timestamptz, text),
                          p2pay.rule_stats_reset(),
                          p2pay.decision_stats_reset() TO p2pay_admin;
