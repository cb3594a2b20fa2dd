-- The stack's databases, created once by the postgres image on an empty data volume
-- (/docker-entrypoint-initdb.d, as the POSTGRES_USER of deploy/.env, who owns them).
CREATE DATABASE olist;      -- the source database (schema olist): MEDALLION_SOURCE_URL
CREATE DATABASE medallion;  -- the audit store (schema audit): MEDALLION_AUDIT_URL
CREATE DATABASE airflow;    -- Airflow's metadata database
