"""Batch inference that loses nothing: OpenAI's Batch API on ``/v1`` and batch jobs for every pipeline.

- :mod:`~tritonfleet.batch.store`: files, batches, lines and results in SQLite (WAL) or PostgreSQL: leased
  claims, each result written once, outputs assembled from the results.
- :mod:`~tritonfleet.batch.lines`: input files read into lines (per-line and whole-file errors), output lines.
- :mod:`~tritonfleet.batch.executor`: one line against the fleet at batch priority.
- :mod:`~tritonfleet.batch.worker`: the driver (statuses, expiry, cancel) and the worker (claims, runs).
- :mod:`~tritonfleet.batch.service`: what ``fleet serve`` runs; :mod:`~tritonfleet.batch.api`: the routes.
- :mod:`~tritonfleet.batch.celery_app`: ``fleet worker``, Celery workers woken by Redis or RabbitMQ.
- :mod:`~tritonfleet.batch.jobs`: ``fleet batch run|list|status|cancel|results`` on files people have.
"""
