"""The demo's heatmap picture: a person-seconds grid blended over a camera frame, with the
camera's lines and zones drawn on it (OpenCV; the runtime never renders)."""

from typing import Sequence, Tuple

import cv2
import numpy as np

from edge.config import CameraConfig


def render_heatmap_overlay(
    frame_bgr: np.ndarray, grid_person_seconds: np.ndarray, alpha: float = 0.6
) -> np.ndarray:
    """The frame with the heatmap blended over it (cv2's JET colormap, opacity growing with the
    value, empty cells left clear). Returns a new BGR uint8 image of the frame's size."""
    height, width = frame_bgr.shape[:2]
    grid = np.asarray(grid_person_seconds, np.float32)
    peak = float(grid.max()) if grid.size else 0.0
    if peak <= 0:
        return frame_bgr.copy()
    level = cv2.resize(grid / peak, (width, height), interpolation=cv2.INTER_LINEAR)
    level = cv2.GaussianBlur(level, (0, 0), sigmaX=max(1.0, width / grid.shape[1] / 2))
    level = np.clip(level / max(float(level.max()), 1e-9), 0.0, 1.0)
    colours = cv2.applyColorMap((level * 255).astype(np.uint8), cv2.COLORMAP_JET)
    weight = (alpha * np.sqrt(level))[:, :, None]
    return (frame_bgr * (1 - weight) + colours * weight).astype(np.uint8)


def overlay_with_geometry(frame_bgr: np.ndarray, grid_person_seconds: np.ndarray, camera: CameraConfig) -> np.ndarray:
    """The heatmap over the frame, with the camera's lines and zones drawn on it."""
    image = render_heatmap_overlay(frame_bgr, grid_person_seconds)
    height, width = image.shape[:2]

    def pixel(point: Sequence[float]) -> Tuple[int, int]:
        return (int(point[0] * width), int(point[1] * height))

    for zone in camera.zones:
        points = [pixel(p) for p in zone.polygon]
        for a, b in zip(points, points[1:] + points[:1]):
            cv2.line(image, a, b, (255, 255, 0), 2)
        cv2.putText(image, zone.id, points[0], cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1)
    for line in camera.lines:
        cv2.arrowedLine(image, pixel(line.points[0]), pixel(line.points[1]), (0, 0, 255), 2, tipLength=0.03)
        cv2.putText(image, line.id, pixel(line.points[0]), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 255), 1)
    return image
