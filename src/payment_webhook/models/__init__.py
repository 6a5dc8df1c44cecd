"""Typed values that the handler, logic and data-access layers pass between them."""
