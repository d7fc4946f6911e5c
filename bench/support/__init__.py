"""Helpers of the benchmarks that are not benchmarks themselves: `make bench` runs every
bench/*.py but common.py, so a helper a benchmark imports, or runs as a process of its own,
lives here."""
