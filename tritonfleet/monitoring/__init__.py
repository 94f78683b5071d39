"""Monitoring the fleet with Prometheus: the metric catalog, the recording and alerting rules (generated from
the pipeline registry), the Grafana dashboard, and a runner for Debian's ``prometheus``.

``docker/monitoring/`` holds what this package generates for deployments: ``rules.yml``, ``dashboard.json``,
``prometheus.yml`` (a scrape config for a fleet reachable as ``tritonfleet:8002``, as in the compose file)
and ``grafana/`` (Grafana's provisioning of the dashboard over that Prometheus, ``prometheus:9090``).
``python -m tritonfleet.monitoring`` rewrites them; a test checks that the committed files are current.
"""

from __future__ import annotations

from pathlib import Path

from tritonfleet.monitoring import dashboard, prometheus, rules

FOLDER = Path("docker/monitoring")
PRODUCTION_TARGET = "tritonfleet:8002"
PRODUCTION_PROMETHEUS = "http://prometheus:9090"


def generated(repository: Path) -> dict[Path, str]:
    """Each file of ``docker/monitoring/`` (relative to the project's root) and its generated text."""
    return {
        FOLDER / "rules.yml": prometheus.dump(rules.document(repository)),
        FOLDER / "prometheus.yml": prometheus.dump(prometheus.config([PRODUCTION_TARGET], "rules.yml")),
        FOLDER / "dashboard.json": dashboard.text(),
        **{
            FOLDER / "grafana" / f"{kind}.yml": prometheus.dump(document)
            for kind, document in dashboard.provisioning(PRODUCTION_PROMETHEUS).items()
        },
    }
