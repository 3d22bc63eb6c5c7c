"""Detectors: model manifest, model families, engines, INT8 calibration and its guard."""
