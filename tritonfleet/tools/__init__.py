"""Tools apart from the serving runtime: benchmarks, fuzzers, the stress and soak runs (the ``tools`` extra).

The serving image never imports this package.
"""
