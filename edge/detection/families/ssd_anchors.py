"""SSD anchor boxes for any input size (square or not) of the SSDLite-MobileNetV2 detector.

A re-implementation of the TensorFlow Object Detection API's `MultipleGridAnchorGenerator` as
configured by `ssd_anchor_generator` for SSDLite-MobileNetV2 (6 layers, scales 0.2..0.95,
aspect ratios 1, 2, 0.5, 3, 1/3 plus one interpolated scale, fewer boxes on the lowest layer).
It is hand-written because the TF API is the only library that has it and the runtime must not
need TensorFlow; at 300x300 it reproduces the anchors frozen in the model's graph (tested).

The frozen graph carries anchors for 300x300 only. The convolutional core takes other sizes,
square or not (its reshapes are size-agnostic, its convolutions pad SAME_UPPER), and then each
feature map's size follows the network's stride arithmetic: every stride-2 convolution uses SAME
padding, so a side of n becomes ceil(n / 2), per axis. Anchor sizes are kept constant in input
pixels (the size they had at the trained 300x300), not as a fraction of the input: the box
regression learnt offsets for objects of so many pixels, so with anchors scaled to the input the
decoded boxes grow with it (measured on PETS09: at 576 they came out 1.9x too tall, IoU 0 with
the people they found). This also keeps square anchors square for a non-square input. Anchors
are (ymin, xmin, ymax, xmax) normalised to the input, not clipped, in the order the box predictor
emits them: layer, row, column, box.

Degenerate layers (the phantom box): the last predictors see the smallest maps. At the trained
300x300 they are 3x3, 2x2 and 1x1 computed from a 2x2 map. Below 288 a map collapses to 1x1 one
layer early, so the next stride-2 convolution sees a single real pixel in the centre of its 3x3
window and zero padding all around, a pattern it never saw in training; its output is a constant
that the box predictor turns into a near-full-frame "person" at score 0.4-0.65 on any image,
blank or noise, in FP32 and INT8. Larger inputs break the same layers the other way: at 768x576
the last map is 2x2 instead of 1x1 and fires high-scoring 200-270 px boxes where nobody stands.
`usable_anchors` marks the anchors of such layers so the post-processor can drop them: a layer
is usable when every map up to it is at least 3 cells on each axis (a 3x3 window then sees the
interior pattern it was trained on), or exactly as large as at the trained size. The layers
dropped are the ones for objects larger than half the input, which a surveillance view rarely
has.
"""

from dataclasses import dataclass
from functools import lru_cache
from typing import List, Tuple, Union

import numpy as np

Size = Union[int, Tuple[int, int]]  # a square side, or (width, height)

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
    trained_input: int = 300  # the square input the model was trained at


SSDLITE_MOBILENETV2 = AnchorConfig()


def _width_height(input_size: Size) -> Tuple[int, int]:
    if isinstance(input_size, int):
        return input_size, input_size
    return int(input_size[0]), int(input_size[1])


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


def _grid_anchors(
    grid_h: int, grid_w: int, specs: List[Tuple[float, float]], base_h: float, base_w: float
) -> np.ndarray:
    """One layer's anchors, computed in float32 like the TF graph; `base_h`/`base_w` are TF's
    base anchor size (1 at the trained input)."""
    scales = np.array([s for s, _ in specs], np.float32)
    ratio_sqrts = np.sqrt(np.array([r for _, r in specs], np.float32))
    heights = scales / ratio_sqrts * np.float32(base_h)
    widths = scales * ratio_sqrts * np.float32(base_w)
    stride_y = np.float32(1.0) / np.float32(grid_h)
    stride_x = np.float32(1.0) / np.float32(grid_w)
    centers_y = np.arange(grid_h, dtype=np.float32) * stride_y + np.float32(0.5) * stride_y
    centers_x = np.arange(grid_w, dtype=np.float32) * stride_x + np.float32(0.5) * stride_x
    shape = (grid_h, grid_w, len(specs))
    cy = np.broadcast_to(centers_y[:, None, None], shape)
    cx = np.broadcast_to(centers_x[None, :, None], shape)
    h = np.broadcast_to(heights[None, None, :], shape)
    w = np.broadcast_to(widths[None, None, :], shape)
    half_h, half_w = np.float32(0.5) * h, np.float32(0.5) * w
    return np.stack([cy - half_h, cx - half_w, cy + half_h, cx + half_w], axis=-1).reshape(-1, 4)


def _layer_grids(width: int, height: int, config: AnchorConfig) -> List[Tuple[int, int]]:
    """(rows, columns) of each predictor's feature map."""
    return list(zip(feature_map_sizes(height, config.num_layers), feature_map_sizes(width, config.num_layers)))


@lru_cache(maxsize=16)
def _cached_anchors(width: int, height: int, config: AnchorConfig) -> np.ndarray:
    if width < 1 or height < 1:
        raise ValueError(f"input size must be positive, got {width}x{height}")
    base_h, base_w = config.trained_input / height, config.trained_input / width
    layers = [
        _grid_anchors(rows, cols, specs, base_h, base_w)
        for (rows, cols), specs in zip(_layer_grids(width, height, config), _layer_box_specs(config))
    ]
    anchors = np.concatenate(layers).astype(np.float32)
    anchors.setflags(write=False)
    return anchors


def ssd_anchors(input_size: Size, config: AnchorConfig = SSDLITE_MOBILENETV2) -> np.ndarray:
    """(N, 4) float32 anchors (ymin, xmin, ymax, xmax, normalised) for an input of `input_size`
    (a square side or (width, height)); read-only and cached, since every frame of a tier uses
    the same ones."""
    width, height = _width_height(input_size)
    return _cached_anchors(width, height, config)


def anchor_count(input_size: Size, config: AnchorConfig = SSDLITE_MOBILENETV2) -> int:
    """How many boxes the model predicts for an input of this size."""
    width, height = _width_height(input_size)
    per_cell = [len(specs) for specs in _layer_box_specs(config)]
    return sum(rows * cols * n for (rows, cols), n in zip(_layer_grids(width, height, config), per_cell))


@lru_cache(maxsize=16)
def _cached_usable(width: int, height: int, config: AnchorConfig) -> np.ndarray:
    trained = _layer_grids(config.trained_input, config.trained_input, config)
    per_cell = [len(specs) for specs in _layer_box_specs(config)]
    usable, masks = True, []
    for (rows, cols), (trained_rows, trained_cols), n in zip(_layer_grids(width, height, config), trained, per_cell):
        usable = usable and (rows >= 3 or rows == trained_rows) and (cols >= 3 or cols == trained_cols)
        masks.append(np.full(rows * cols * n, usable))
    mask = np.concatenate(masks)
    mask.setflags(write=False)
    return mask


def usable_anchors(input_size: Size, config: AnchorConfig = SSDLITE_MOBILENETV2) -> np.ndarray:
    """(N,) bool: False for the anchors of degenerate layers at this input (see the module
    docstring), whose scores are an artefact of zero padding."""
    width, height = _width_height(input_size)
    return _cached_usable(width, height, config)
