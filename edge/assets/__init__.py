"""Runtime assets shipped as package data: the model files with their manifest (`models/`) and the
built-in INT8 calibration set (`calibration/builtin/`), so an installed wheel runs with no checkout
beside it.

They are found with importlib.resources. The engines open them by file name (ONNX Runtime,
TensorRT and OpenCV take paths), so they must be real files: wheels install them unzipped.
"""

import sys
from pathlib import Path

# vermin does not read the version guard, hence `novermin` on the 3.9+ import.
if sys.version_info >= (3, 9):
    from importlib.resources import files  # novermin
else:  # Python 3.8 (JetPack 5): the backport, a dependency there only
    from importlib_resources import files


def asset_dir(name: str) -> Path:
    """The directory of one kind of asset ("models", "calibration") inside the installed package."""
    return Path(str(files(__name__) / name))
