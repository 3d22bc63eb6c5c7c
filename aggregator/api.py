"""The HTTP API (FastAPI; OpenAPI at /openapi.json, docs at /docs) and the dashboard page.

Everything under /api and /metrics needs `Authorization: Bearer TOKEN` when a token is
configured; /healthz and the dashboard page itself (static, it reads the token from the URL
fragment and sends it with each request) do not.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import asdict
from importlib.resources import files
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Response
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from aggregator.ingest import Ingest
from aggregator.metrics import is_online
from aggregator.query import bucket_counts, merge_heatmap, totals
from aggregator.render import heatmap_png
from aggregator.store import Store

DEFAULT_RANGE_S = 86400.0


def _range(start: float | None, end: float | None) -> tuple[float, float]:
    now = time.time()
    end = end if end is not None else now + 3600
    return (start if start is not None else end - 3600 - DEFAULT_RANGE_S), end


def _telemetry_view(telemetry: dict[str, Any] | None) -> dict[str, Any]:
    if not telemetry:
        return {}
    value = telemetry.get("spool")
    spool: dict[str, Any] = value if isinstance(value, dict) else {}
    return {
        "tier": telemetry.get("tier"),
        "fps": telemetry.get("effective_fps"),
        "target_fps": telemetry.get("target_fps"),
        "spool_depth": spool.get("depth"),
        "spool_dropped": spool.get("dropped"),
    }


def create_app(store: Store, ingest: Ingest, token: str | None) -> FastAPI:
    app = FastAPI(title="video-analysis aggregator", version="1")

    def authorised(authorization: Annotated[str | None, Header()] = None) -> None:
        if token is None:
            return
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "bearer token required", headers={"WWW-Authenticate": "Bearer"})

    guarded = [Depends(authorised)]

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard() -> str:
        return (files("aggregator") / "dashboard.html").read_text()

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        health = ingest.health()
        body = {"status": "ok" if health.ok else "degraded", **asdict(health)}
        return JSONResponse(body, status_code=200 if health.ok else 503)

    @app.get("/metrics", dependencies=guarded)
    def metrics() -> Response:
        return Response(generate_latest(ingest.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/devices", dependencies=guarded)
    def devices() -> list[dict[str, Any]]:
        now = time.time()
        return [
            {
                "device": d.device,
                "online": is_online(d, now),
                "state": d.state,
                "boot": d.boot,
                "version": d.version,
                "last_seen": d.last_seen,
                "lag_s": None if d.last_window_end is None else max(0.0, now - d.last_window_end),
                "cameras": d.cameras,
                **_telemetry_view(d.telemetry),
            }
            for d in store.devices()
        ]

    @app.get("/api/cameras/{device}/{camera}/counts", dependencies=guarded)
    def counts(
        device: str,
        camera: str,
        start: float | None = None,
        end: float | None = None,
        bucket: Literal["window", "hour", "day"] = "window",
    ) -> list[dict[str, Any]]:
        lo, hi = _range(start, end)
        return [asdict(b) for b in bucket_counts(store.messages(device, "counts", camera, lo, hi), bucket)]

    @app.get("/api/cameras/{device}/{camera}/totals", dependencies=guarded)
    def camera_totals(device: str, camera: str, start: float | None = None, end: float | None = None) -> dict[str, Any]:
        lo, hi = _range(start, end)
        return asdict(totals(store.messages(device, "counts", camera, lo, hi)))

    @app.get("/api/cameras/{device}/{camera}/heatmap.json", dependencies=guarded)
    def heatmap_json(device: str, camera: str, start: float | None = None, end: float | None = None) -> dict[str, Any]:
        lo, hi = _range(start, end)
        grid = merge_heatmap(store.messages(device, "heatmap", camera, lo, hi))
        if grid is None:
            return {"grid": None, "tiles": 0, "total_person_seconds": 0.0, "values": []}
        return {
            "grid": [grid.cols, grid.rows],
            "tiles": grid.tiles,
            "unit": "person_seconds",
            "total_person_seconds": grid.total,
            "values": grid.values.round(3).tolist(),
        }

    @app.get("/api/cameras/{device}/{camera}/heatmap.png", dependencies=guarded)
    def heatmap_image(device: str, camera: str, start: float | None = None, end: float | None = None) -> Response:
        lo, hi = _range(start, end)
        grid = merge_heatmap(store.messages(device, "heatmap", camera, lo, hi))
        png = heatmap_png(grid, store.snapshot(device, camera), f"{device} / {camera}")
        return Response(png, media_type="image/png")

    @app.get("/api/quarantine", dependencies=guarded)
    def quarantine(
        device: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> list[dict[str, Any]]:
        return [asdict(q) for q in store.quarantined(device, limit)]

    return app
