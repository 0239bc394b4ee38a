"""Benchmarks (not collected by the default test run): ``make bench`` writes BENCHMARKS.md."""
