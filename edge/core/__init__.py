"""Pure records and logic: detections, tracks, tiers, geometry, tracking, counting, windows, policy.

No I/O library is imported here (cv2, onnxruntime, paho, sqlite3, threading, pydantic).
"""
