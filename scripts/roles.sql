-- scripts/roles.sql: the three roles of README.md "Privileges", the same
-- statements; make demo, the docker image and the tests create them from here.
-- Each p2pay.grant_*() function grants its role's privileges by name, and is
-- run again after ALTER EXTENSION p2pay UPDATE to cover what the update adds.

-- The application: registers users and their methods, inserts payments and
-- reads them back.  It can't touch rules, thresholds, lists or decisions.
CREATE ROLE p2pay_app NOLOGIN;
SELECT p2pay.grant_app('p2pay_app');

-- Analysts: read everything, work the review queue, label fraud, backtest.
CREATE ROLE p2pay_analyst NOLOGIN;
SELECT p2pay.grant_analyst('p2pay_analyst');

-- Admins: rules, thresholds and lists, besides what analysts do (as members
-- of p2pay_analyst).
CREATE ROLE p2pay_admin NOLOGIN IN ROLE p2pay_analyst;
SELECT p2pay.grant_admin('p2pay_admin');
