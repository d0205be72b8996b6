//! SCRAM-SHA-256 verifiers in the exact format PostgreSQL stores in pg_authid and PgBouncer reads from its userlist.
