"""Benchmarks' shared machinery (perf_analyzer, reports, in-process floors, load generators) and the
benchmarks of the whole system (``fleet bench fleet|frontdoor|openai``, declared in
:mod:`tritonfleet.benches`). Each pipeline's own benchmark is its ``bench`` module. The ``tools`` extra."""
