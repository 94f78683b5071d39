"""``fleet tune MODEL [--target cpu|NAME]``: Model Analyzer's search against the real server, the chosen
settings written as the model's tuning record (``model_repository/<model>/tuning/<target>.json``).

- :mod:`tritonfleet.tune.view`: the repository view Model Analyzer reads (``config.pbtxt`` is the target's).
- :mod:`tritonfleet.tune.analyzer`: Model Analyzer in a venv of its own, its profile config, its results.
- :mod:`tritonfleet.tune.command`: the command: server, search, choice, record, render.
"""
