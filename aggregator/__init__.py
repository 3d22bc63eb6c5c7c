"""The video-analysis server: MQTT ingest, storage (SQLite, PostgreSQL), HTTP API, metrics, dashboard."""
