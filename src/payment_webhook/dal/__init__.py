"""Data access: Secrets Manager, PostgreSQL connections, the storing SQL and the migrations."""
