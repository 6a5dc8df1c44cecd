"""Benchmarks of the webhook function (``make bench``) and its cost model (``make cost``).

Each measurement has its own module; ``bench.__main__`` runs them side by side against
the local stack and writes bench/results.json and docs/BENCHMARKS.md.
"""
