"""The fleet's web console, served by the front door at ``/`` beside ``/v1``: chat with the LLM and ``rag``,
a playground for every other pipeline (from the pipelines' declarations), the fleet's status and live charts.

:mod:`~tritonfleet.console.assets` answers the page and its files (in the front door itself);
:class:`~tritonfleet.console.api.Console` is its API, mounted in the ``/v1`` app;
:mod:`~tritonfleet.console.sampler` keeps the charts' last 15 minutes. The page's source is ``web/``
(bundled into ``static/`` at set-up). docs/console.md describes it.
"""
