"""The frames of the built-in INT8 calibration set, rendered: the synthetic scenes (with their
ground-truth boxes) plus the two real photographs that ship inside registry packages
(scikit-image's astronaut, matplotlib's grace_hopper.jpg).

Rendered once by calibration/make_builtin_set.py into package data (edge/assets/calibration/);
the runtime reads those files and never imports this module (it needs the demo extra).
"""

from typing import Iterator

import numpy as np

from edge.detection.int8.sets import CandidateFrame
from edge.devkit import synthetic


def sample_images() -> Iterator[CandidateFrame]:
    """The real photographs: scikit-image's astronaut and matplotlib's grace_hopper.jpg."""
    import matplotlib.cbook
    import matplotlib.image
    from skimage import data

    yield CandidateFrame(np.ascontiguousarray(data.astronaut()[:, :, ::-1]), "skimage:astronaut")
    hopper = matplotlib.image.imread(
        str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    )
    yield CandidateFrame(np.ascontiguousarray(hopper[:, :, ::-1]), "matplotlib:grace_hopper")


def synthetic_frames(count: int) -> Iterator[CandidateFrame]:
    """`count` frames spread over the standard synthetic scenes, with their ground-truth boxes."""
    scenes = synthetic.standard_scenes()
    per_scene = max(1, count // len(scenes))
    for scene in scenes:
        truth = synthetic.ground_truth(scene)
        for index in np.linspace(0, scene.frame_count - 1, per_scene).round().astype(int):
            labels = tuple(b.box for b in truth.boxes[index])
            yield CandidateFrame(
                synthetic.render(scene, int(index)), f"synthetic:{scene.name}#{index}", labels
            )


def builtin_candidates(count: int) -> Iterator[CandidateFrame]:
    """The built-in set's frames: the sample photographs, then `count` synthetic scene frames."""
    yield from sample_images()
    yield from synthetic_frames(count)
