"""Benchmarks: the served pipeline measured by perf_analyzer, side by side with its in-process floor."""
