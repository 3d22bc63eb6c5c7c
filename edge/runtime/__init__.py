"""The running appliance: sources, pipeline, per-camera analysis, service glue."""
