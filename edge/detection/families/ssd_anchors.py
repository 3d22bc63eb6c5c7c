"""SSD anchor boxes for any square input size of the SSDLite-MobileNetV2 detector.

A re-implementation of the TensorFlow Object Detection API's `MultipleGridAnchorGenerator` as
configured by `ssd_anchor_generator` for SSDLite-MobileNetV2 (6 layers, scales 0.2..0.95,
aspect ratios 1, 2, 0.5, 3, 1/3 plus one interpolated scale, fewer boxes on the lowest layer).
It is hand-written because the TF API is the only library that has it and the runtime must not
need TensorFlow; at 300x300 it reproduces the anchors frozen in the model's graph (tested).

The frozen graph carries anchors for 300x300 only. The convolutional core takes other square
sizes (its reshapes are size-agnostic), and then each feature map's size follows the network's
stride arithmetic: every stride-2 convolution uses SAME padding, so a side of n becomes
ceil(n / 2). Anchors are (ymin, xmin, ymax, xmax) normalised to the input, not clipped, in the
order the box predictor emits them: layer, row, column, box.
"""

from dataclasses import dataclass
from functools import lru_cache
from typing import List, Tuple

import numpy as np

# Stride-2 convolutions before the first box predictor (MobileNetV2 expanded_conv_13's input is
# at output stride 16), and the stride-2 convolutions between consecutive predictors.
_HALVINGS_BEFORE_FIRST_LAYER = 4


@dataclass(frozen=True)
class AnchorConfig:
    """The `ssd_anchor_generator` block of the model's pipeline config."""

    num_layers: int = 6
    min_scale: float = 0.2
    max_scale: float = 0.95
    aspect_ratios: Tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 0.3333)
    interpolated_scale_aspect_ratio: float = 1.0
    reduce_boxes_in_lowest_layer: bool = True


SSDLITE_MOBILENETV2 = AnchorConfig()


def feature_map_sizes(input_size: int, num_layers: int = 6) -> List[int]:
    """Side of each predictor's feature map for a square input of `input_size` pixels."""
    if input_size < 1:
        raise ValueError(f"input size must be positive, got {input_size}")
    side = input_size
    for _ in range(_HALVINGS_BEFORE_FIRST_LAYER):
        side = -(-side // 2)
    sizes = [side]
    for _ in range(num_layers - 1):
        side = -(-side // 2)
        sizes.append(side)
    return sizes


def _layer_box_specs(config: AnchorConfig) -> List[List[Tuple[float, float]]]:
    """(scale, aspect ratio) of every box of every layer, as `create_ssd_anchors` builds them."""
    n = config.num_layers
    scales = [config.min_scale + (config.max_scale - config.min_scale) * i / (n - 1) for i in range(n)] + [
        1.0
    ]
    specs = []
    for layer in range(n):
        scale, scale_next = scales[layer], scales[layer + 1]
        if layer == 0 and config.reduce_boxes_in_lowest_layer:
            specs.append([(0.1, 1.0), (scale, 2.0), (scale, 0.5)])
            continue
        layer_specs = [(scale, ratio) for ratio in config.aspect_ratios]
        if config.interpolated_scale_aspect_ratio > 0.0:
            layer_specs.append((float(np.sqrt(scale * scale_next)), config.interpolated_scale_aspect_ratio))
        specs.append(layer_specs)
    return specs


def _grid_anchors(grid: int, specs: List[Tuple[float, float]]) -> np.ndarray:
    """One layer's anchors, computed in float32 like the TF graph."""
    scales = np.array([s for s, _ in specs], np.float32)
    ratio_sqrts = np.sqrt(np.array([r for _, r in specs], np.float32))
    heights = scales / ratio_sqrts
    widths = scales * ratio_sqrts
    stride = np.float32(1.0) / np.float32(grid)
    centers = np.arange(grid, dtype=np.float32) * stride + np.float32(0.5) * stride
    cy = np.broadcast_to(centers[:, None, None], (grid, grid, len(specs)))
    cx = np.broadcast_to(centers[None, :, None], (grid, grid, len(specs)))
    h = np.broadcast_to(heights[None, None, :], (grid, grid, len(specs)))
    w = np.broadcast_to(widths[None, None, :], (grid, grid, len(specs)))
    half_h, half_w = np.float32(0.5) * h, np.float32(0.5) * w
    return np.stack([cy - half_h, cx - half_w, cy + half_h, cx + half_w], axis=-1).reshape(-1, 4)


@lru_cache(maxsize=16)
def _cached_anchors(input_size: int, config: AnchorConfig) -> np.ndarray:
    sizes = feature_map_sizes(input_size, config.num_layers)
    layers = [_grid_anchors(grid, specs) for grid, specs in zip(sizes, _layer_box_specs(config))]
    anchors = np.concatenate(layers).astype(np.float32)
    anchors.setflags(write=False)
    return anchors


def ssd_anchors(input_size: int, config: AnchorConfig = SSDLITE_MOBILENETV2) -> np.ndarray:
    """(N, 4) float32 anchors (ymin, xmin, ymax, xmax, normalised) for a square input; read-only
    and cached, since every frame of a tier uses the same ones."""
    return _cached_anchors(int(input_size), config)


def anchor_count(input_size: int, config: AnchorConfig = SSDLITE_MOBILENETV2) -> int:
    """How many boxes the model predicts for a square input of this size."""
    per_cell = [len(specs) for specs in _layer_box_specs(config)]
    return sum(grid * grid * n for grid, n in zip(feature_map_sizes(input_size, config.num_layers), per_cell))
