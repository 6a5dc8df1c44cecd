"""Webhook rules with no I/O: body size, signature, event validation, payment ordering, the pipeline."""
