"""The Prometheus Adapter rule behind the HorizontalPodAutoscaler: mean queue time per request, per pod.

Triton's counters are cumulative: ``nv_inference_queue_duration_us`` (microseconds requests waited in the
scheduler queue) and ``nv_inference_request_success`` (requests done), per model. Their rates' ratio over a
window is the mean wait of a request in that window; summed over the models the plan puts on GPUs (the
ones that queue for a GPU), by pod, it is what the HPA keeps under its target. Pods without traffic have no
value (the ``> 0`` guard), which the HPA reads as nothing to scale for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

METRIC = "tritonfleet_queue_us_per_request"
WINDOW = "2m"  # two scrapes of 15 s and more, so rate() always has samples
_TEMPLATE = (
    'sum(rate(nv_inference_queue_duration_us{{<<.LabelMatchers>>,model=~"{models}"}}[{window}])) '
    'by (<<.GroupBy>>) / (sum(rate(nv_inference_request_success{{<<.LabelMatchers>>,model=~"{models}"}}'
    "[{window}])) by (<<.GroupBy>>) > 0)"
)


def rule(models: Sequence[str]) -> dict[str, Any]:
    """One ``rules:`` entry of the adapter's config (``prometheus-adapter --config``)."""
    return {
        "seriesQuery": 'nv_inference_queue_duration_us{namespace!="",pod!=""}',
        "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
        "name": {"matches": "^nv_inference_queue_duration_us$", "as": METRIC},
        "metricsQuery": _TEMPLATE.format(models="|".join(sorted(models)), window=WINDOW),
    }


def render(metrics_query: str, label_matchers: str, group_by: str) -> str:
    """The PromQL the adapter runs for one request: its Go template filled in as the adapter fills it."""
    return metrics_query.replace("<<.LabelMatchers>>", label_matchers).replace("<<.GroupBy>>", group_by)
