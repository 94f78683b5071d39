"""Clients for the fleet's pipelines (imported as ``tritonfleet.clients``)."""

from tritonfleet.clients.call import Call
from tritonfleet.clients.fleet import AsyncFleetClient, FleetClient
from tritonfleet.clients.image_classifier import Classification

__all__ = ["AsyncFleetClient", "Call", "Classification", "FleetClient"]
