"""Scripts that bench runs in fresh interpreters (``python -I <script>``), one measurement each.

They import nothing from bench, so a probe's import time contains only what it measures.
Each writes its figures as JSON to the path given as its first argument.
"""
