"""claude-proxy benchmark suite: `python -m benchmarks.run` (see README, "Benchmarks").

Benchmarks, not tests: nothing here asserts a timing, and pytest never collects this package.
"""
