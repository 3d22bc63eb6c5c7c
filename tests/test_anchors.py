"""The SSD anchor generator against the anchors frozen in the real model graph."""

import numpy as np
import onnxruntime as ort
import pytest

from edge.detection.families.ssd_anchors import anchor_count, feature_map_sizes, ssd_anchors
from edge.detection.manifest import get_model

MODEL = "ssdlite-mobilenetv2-pedestrian"


def test_anchors_at_300_equal_the_graphs_anchors():
    shipped = np.load(get_model(MODEL).file("anchors"))
    generated = ssd_anchors(300)
    assert generated.shape == shipped.shape == (1917, 4)
    assert generated.dtype == np.float32
    np.testing.assert_allclose(generated, shipped, rtol=0, atol=1e-6)


def test_feature_maps_follow_same_padding_stride_arithmetic():
    assert feature_map_sizes(300) == [19, 10, 5, 3, 2, 1]
    assert feature_map_sizes(256) == [16, 8, 4, 2, 1, 1]
    assert feature_map_sizes(161) == [11, 6, 3, 2, 1, 1]


@pytest.mark.parametrize("size", [320, 256, 192, 160])
def test_anchor_count_matches_what_the_model_predicts_at_other_sizes(size):
    session = ort.InferenceSession(str(get_model(MODEL).file("fp32")), providers=["CPUExecutionProvider"])
    boxes, logits = session.run(None, {"images": np.zeros((1, size, size, 3), np.uint8)})
    assert boxes.shape[1] == logits.shape[1] == anchor_count(size) == len(ssd_anchors(size))


def test_anchors_are_centred_on_their_grid_cells():
    anchors = ssd_anchors(256)
    first_layer = anchors[: 16 * 16 * 3].reshape(16, 16, 3, 4)
    centres_y = (first_layer[..., 0] + first_layer[..., 2]) / 2
    centres_x = (first_layer[..., 1] + first_layer[..., 3]) / 2
    np.testing.assert_allclose(centres_y[:, 0, 0], (np.arange(16) + 0.5) / 16, atol=1e-6)
    np.testing.assert_allclose(centres_x[0, :, 1], (np.arange(16) + 0.5) / 16, atol=1e-6)


def test_anchors_are_cached_and_read_only():
    assert ssd_anchors(300) is ssd_anchors(300)
    with pytest.raises(ValueError):
        ssd_anchors(300)[0, 0] = 1.0


def test_rejects_non_positive_size():
    with pytest.raises(ValueError):
        ssd_anchors(0)
