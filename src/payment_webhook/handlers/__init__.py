"""Lambda entry points: thin adapters between the event formats and the logic."""
