"""The local stand-in for the deployed stack: PostgreSQL, Secrets Manager and the HTTP API on 127.0.0.1."""
