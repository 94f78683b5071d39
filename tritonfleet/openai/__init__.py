"""OpenAI's ``/v1`` API over the fleet's Triton pipelines: chat, completions, embeddings and models.

``create_app`` makes the ASGI app (:mod:`tritonfleet.openai.app`); :class:`OpenAIServer` runs it with
uvicorn beside tritonserver (``fleet serve --openai-port``). Design notes: docs/openai.md.
"""

from tritonfleet.openai.app import create_app
from tritonfleet.openai.server import OpenAIServer

__all__ = ["OpenAIServer", "create_app"]
