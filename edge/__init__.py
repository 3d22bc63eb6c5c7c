"""video-analysis edge daemon: detection, tracking, analytics and durable MQTT publishing."""

__version__ = "0.1.0"
