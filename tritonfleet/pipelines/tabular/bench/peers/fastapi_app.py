"""The plain FastAPI peer: one row per request, no batching, onnxruntime called inline in the event loop
(a few tens of microseconds: a thread-pool hop would cost more than the model).

    PEER_MODEL=model.onnx uvicorn fastapi_app:app --workers 2 --no-access-log --loop uvloop --http httptools

POST /predict ``{"features": [f1, ..., fn]}`` -> ``{"label": 0, "probabilities": [p0, ...]}``.
"""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel
from tabular_model import TabularModel

app = FastAPI()
model = TabularModel()


class Row(BaseModel):
    features: list[float]


class Prediction(BaseModel):
    label: int
    probabilities: list[float]


@app.post("/predict", response_model=Prediction)
async def predict(row: Row) -> dict:
    return model.predict([row.features])[0]


@app.get("/health")
async def health() -> dict:
    return {"status": "ok"}
