"""Shared pytest fixtures: a real mosquitto and the acking aggregator ingest (tests/mqtt_fixtures.py)."""

pytest_plugins = ["tests.mqtt_fixtures"]
