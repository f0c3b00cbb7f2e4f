-- test/browser/roles.sql: the roles the browser tests sign in as, made by
-- run.sh as a superuser.  The three group roles of README "Privileges" are
-- cluster-wide and may exist already: they are made here when missing, and
-- run.sh then runs the grants of scripts/roles.sql (less its CREATE ROLE
-- statements) in the tests' database.
-- psql variables: app_password, analyst_password, feed_password.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'p2pay_app') THEN
    CREATE ROLE p2pay_app NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'p2pay_analyst') THEN
    CREATE ROLE p2pay_analyst NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'p2pay_admin') THEN
    CREATE ROLE p2pay_admin NOLOGIN IN ROLE p2pay_analyst;
  END IF;
END $$;

-- Signed in over HTTP Basic: an application and two analysts.
CREATE ROLE p2pay_browser_app LOGIN PASSWORD :'app_password' IN ROLE p2pay_app;
CREATE ROLE p2pay_browser_analyst LOGIN PASSWORD :'analyst_password' IN ROLE p2pay_analyst;
CREATE ROLE p2pay_browser_analyst2 LOGIN PASSWORD :'analyst_password' IN ROLE p2pay_analyst;
-- The daemon's live feed reads a slot over a replication connection.
CREATE ROLE p2pay_browser_feed LOGIN REPLICATION PASSWORD :'feed_password';
