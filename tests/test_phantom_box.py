"""The phantom box: at inputs <= 256 the SSD's last predictor used to report a near-full-frame
"person" (score 0.42-0.65) on every frame, blank or not, and at 576 a 2x2 last map fired
200-270 px boxes. `edge.detection.families.ssd_anchors.usable_anchors` drops those degenerate layers; every
supported input, square or aspect-preserving, FP32 and INT8, must now see nobody in an empty
frame."""

import numpy as np
import pytest

from edge.config import Config
from edge.detection.engines import EngineOptions, detect
from edge.detection.factory import create_detector
from edge.detection.families.ssd_anchors import feature_map_sizes, usable_anchors
from edge.detection.manifest import get_model

MODEL = get_model("ssdlite-mobilenetv2-pedestrian")
DEFAULTS = Config.model_validate({})
FRAME = (576, 768, 3)


def empty_frames():
    rng = np.random.default_rng(7)
    return {
        "black": np.zeros(FRAME, np.uint8),
        "white": np.full(FRAME, 255, np.uint8),
        "noise": rng.integers(0, 256, FRAME, dtype=np.uint8),
        "grey": np.full(FRAME, 128, np.uint8),
    }


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("keep_aspect", [True, False])
def test_no_box_on_empty_frames_at_any_supported_input(precision, keep_aspect):
    frames = empty_frames()
    for size in MODEL.supported_inputs:
        # The floor every engine is loaded with (the tracker's second stage sees these too).
        options = EngineOptions(
            precision=precision, input_size=(size, size), keep_aspect=keep_aspect, score_threshold=0.1
        )
        detector = create_detector("onnxruntime", MODEL, options)
        for name, frame in frames.items():
            found = detect(detector, [frame])[0]
            where = f"{precision} {size} keep_aspect={keep_aspect} {name}"
            # Nothing that could start a track, whatever the frame.
            assert found.scores.max(initial=0.0) < DEFAULTS.tracker.new_track_threshold, where
            if name == "grey":
                # A flat mid-grey frame is all zeros after the model's input scaling, the same
                # value as its padding: the network sees no feature at all and some sizes still
                # score a corner box up to 0.5, below what starts a track.
                continue
            reported = found.scores > DEFAULTS.detector.score_threshold
            # No near-full-frame box at the detector's threshold (the phantom was 0.8-0.95 of
            # the frame at 0.42-0.65).
            heights = found.boxes[:, 3] - found.boxes[:, 1]
            assert not np.any((heights > 0.5 * FRAME[0]) & reported), where
            if keep_aspect and name != "noise":
                # Black and white frames with the default (aspect-preserving) input: no box at
                # all at the detector's threshold. Random noise can still raise a small box a
                # little above it at some sizes, never one that starts a track.
                assert not reported.any(), where
        detector.close()


def test_degenerate_layers_are_the_ones_that_collapse():
    assert feature_map_sizes(256) == [16, 8, 4, 2, 1, 1]
    usable = usable_anchors(256)
    # Layers 0-2 (16x16x3, 8x8x6, 4x4x6) are kept; 2x2, 1x1, 1x1 are not (trained: 3x3, 2x2, 1x1).
    kept = 16 * 16 * 3 + 8 * 8 * 6 + 4 * 4 * 6
    assert usable[:kept].all() and not usable[kept:].any()
    assert usable_anchors(300).all()
    # 768x576: the last map is 2x2 (trained 1x1) and is dropped; the 3x3 one before it is kept.
    wide = usable_anchors((768, 576))
    assert wide[: -2 * 2 * 6].all() and not wide[-2 * 2 * 6 :].any()
