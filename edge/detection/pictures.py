"""A decoded picture kept in the decoder's I420 layout (YUV 4:2:0) until something needs its pixels.

A 720p camera's frame converted to full-size BGR costs ~0.9 ms, and resizing that BGR image to a
tier's input another ~1 ms (2-core Xeon, one OpenCV thread). A reader that hands the pipeline an
`I420Picture` instead converts nothing: a frame replaced before a lane took it is never converted
at all, and the detector resizes the three planes straight to its input and converts only those
pixels (~1.2 ms for both steps at 533x300). Full-size BGR is made only when something asks for it
(a snapshot, the demo's heatmap overlay) and is then kept.

The conversion is the one OpenCV's `COLOR_YUV2BGR_I420` applies (BT.601, limited range), the same
as the full-size path, so the detector sees the same colours either way (mean difference 0.9 of
255 levels, from resizing the planes before converting instead of after).
"""

import threading
from typing import Optional, Tuple, Union

import cv2
import numpy as np

Size = Tuple[int, int]  # (width, height)


class I420Picture:
    """One frame's planes as a decoder gives them: `planes` is the (height * 3 / 2, width) uint8
    array of I420 (Y, then U and V at half size, as PyAV's `to_ndarray` and OpenCV lay them out).
    Width and height must be even."""

    def __init__(self, planes: np.ndarray) -> None:
        rows, width = planes.shape
        height = rows * 2 // 3
        if planes.dtype != np.uint8 or rows != height * 3 // 2 or width % 2 or height % 2:
            raise ValueError(f"not an I420 picture with even sides: {planes.dtype} {planes.shape}")
        self.planes = planes
        self.width = width
        self.height = height
        self._bgr: Optional[np.ndarray] = None
        self._lock = threading.Lock()  # a snapshot and a lane may ask for BGR at once

    @property
    def shape(self) -> Tuple[int, int, int]:
        """The shape of the picture as a BGR image, for code that reads a frame's size."""
        return self.height, self.width, 3

    def bgr(self) -> np.ndarray:
        """The full-size BGR image, converted on first use and kept."""
        with self._lock:
            if self._bgr is None:
                self._bgr = cv2.cvtColor(self.planes, cv2.COLOR_YUV2BGR_I420)
            return self._bgr

    def rgb_resized(self, size: Size, out: Optional[np.ndarray] = None) -> np.ndarray:
        """The picture resized to `size` (width, height) as RGB: each plane resized on its own,
        then converted at the small size. An odd side is resized once more from the next even
        size (I420 needs even sides)."""
        width, height = size
        even_width, even_height = width + width % 2, height + height % 2
        small = np.empty((even_height * 3 // 2, even_width), np.uint8)
        luma = self.planes[: self.height]
        cv2.resize(luma, (even_width, even_height), dst=small[:even_height], interpolation=cv2.INTER_LINEAR)
        # U then V follow Y, each a quarter of its size; a side of 2 mod 4 splits a row, so the
        # planes are addressed in the flat buffer.
        source, target = self.planes.reshape(-1), small.reshape(-1)
        chroma_size = (self.width // 2) * (self.height // 2)
        small_chroma = (even_width // 2) * (even_height // 2)
        for plane in range(2):
            start = self.width * self.height + plane * chroma_size
            chroma = source[start : start + chroma_size].reshape(self.height // 2, self.width // 2)
            resized = cv2.resize(chroma, (even_width // 2, even_height // 2), interpolation=cv2.INTER_LINEAR)
            at = even_width * even_height + plane * small_chroma
            target[at : at + small_chroma] = resized.reshape(-1)
        if (even_width, even_height) == (width, height):
            return cv2.cvtColor(small, cv2.COLOR_YUV2RGB_I420, dst=out)
        rgb = cv2.cvtColor(small, cv2.COLOR_YUV2RGB_I420)
        return cv2.resize(rgb, (width, height), dst=out, interpolation=cv2.INTER_LINEAR)


Image = Union[np.ndarray, I420Picture]  # a BGR image, or a picture that becomes one when asked


def as_bgr(image: Image) -> np.ndarray:
    return image.bgr() if isinstance(image, I420Picture) else image


def resized_rgb(image: Image, size: Size, out: Optional[np.ndarray] = None) -> np.ndarray:
    """`image` plainly resized to `size` (width, height), as RGB, into `out` when given."""
    if isinstance(image, I420Picture):
        return image.rgb_resized(size, out)
    resized = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    return cv2.cvtColor(resized, cv2.COLOR_BGR2RGB, dst=out)
