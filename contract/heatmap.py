"""The heatmap tile body and its codec (DESIGN.md `heatmap` body).

A tile carries the cells [y0:y0+h, x0:x0+w] (x0 = tx * w, y0 = ty * h) of a (rows, cols) grid as
uint16, little-endian, row-major, zlib-compressed and base64-encoded, with a `scale` such that
value × scale = person-seconds. Edge tiles are padded with zeros to the full tile size.

numpy is optional: cells are encoded from a numpy array (duck-typed, no import) or from any
sequence of ints (the stdlib `array` module), decoded into an `array('H')`, and summed into a
`HeatmapGrid` of `array('d')`; only `HeatmapGrid.to_numpy()` imports numpy.
"""

import base64
import binascii
import sys
import zlib
from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Iterable, Mapping, Optional, Tuple, Union

from contract import fields
from contract.errors import MessageError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

HEATMAP_UNIT = "person_seconds"
HEATMAP_DTYPE = "uint16"
HEATMAP_ENCODING = "zlib+base64"
UINT16_MAX = 65535
ZLIB_LEVEL = 6


@dataclass(frozen=True)
class HeatmapBody:
    """One non-empty tile of one heatmap window."""

    grid: Tuple[int, int]  # cols, rows of the whole grid
    tile: Tuple[int, int]  # tx, ty
    tile_size: Tuple[int, int]  # w, h cells
    scale: float  # value * scale = person-seconds
    data: str  # the encoded cells

    def to_dict(self) -> Dict[str, Any]:
        return {
            "grid": list(self.grid),
            "tile": list(self.tile),
            "tile_size": list(self.tile_size),
            "unit": HEATMAP_UNIT,
            "scale": self.scale,
            "dtype": HEATMAP_DTYPE,
            "encoding": HEATMAP_ENCODING,
            "data": self.data,
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], where: str = "heatmap") -> "HeatmapBody":
        cols, rows = fields.int_pair(obj, "grid", where, minimum=1)
        tx, ty = fields.int_pair(obj, "tile", where, minimum=0)
        width, height = fields.int_pair(obj, "tile_size", where, minimum=1)
        if tx * width >= cols or ty * height >= rows:
            raise MessageError(
                f"{where}.tile: tile [{tx}, {ty}] of size [{width}, {height}] is outside grid [{cols}, {rows}]"
            )
        for key, expected in (("unit", HEATMAP_UNIT), ("dtype", HEATMAP_DTYPE), ("encoding", HEATMAP_ENCODING)):
            if fields.require(obj, key, where) != expected:
                raise MessageError(f"{where}.{key}: expected {expected!r}, got {obj[key]!r}")
        scale = fields.number(obj, "scale", where)
        if not scale:
            raise MessageError(f"{where}.scale: must be > 0")
        body = cls((cols, rows), (tx, ty), (width, height), scale, fields.text(obj, "data", where))
        decode_cells(body, where)
        return body


Cells = Union[Iterable[int], "npt.NDArray[Any]"]


def encode_cells(cells: Cells) -> str:
    """Row-major uint16 cells -> the body's `data`. A numpy array must already be of an unsigned
    integer type that fits uint16 (it is cast with casting="safe"); ints outside 0..65535 raise."""
    if hasattr(cells, "dtype") and hasattr(cells, "astype"):
        raw = cells.astype("<u2", casting="safe").tobytes()
    else:
        values = array("H", cells)
        if sys.byteorder == "big":
            values.byteswap()
        raw = values.tobytes()
    return base64.b64encode(zlib.compress(raw, ZLIB_LEVEL)).decode("ascii")


def tile_body(
    grid: Tuple[int, int], tile: Tuple[int, int], tile_size: Tuple[int, int], scale: float, cells: Cells
) -> HeatmapBody:
    """The body of one tile of a (cols, rows) `grid` whose (h, w) cells are `cells` (row-major)."""
    return HeatmapBody(grid, tile, tile_size, float(scale), encode_cells(cells))


def decode_cells(body: HeatmapBody, where: str = "heatmap") -> "array[int]":
    """The tile's h*w uint16 cells, row-major."""
    try:
        raw = zlib.decompress(base64.b64decode(body.data, validate=True))
    except (binascii.Error, zlib.error, ValueError):
        raise MessageError(f"{where}.data: not zlib+base64") from None
    width, height = body.tile_size
    expected_bytes = width * height * 2
    if len(raw) != expected_bytes:
        raise MessageError(f"{where}.data: {len(raw)} bytes, expected {expected_bytes} ({width}x{height} uint16)")
    cells = array("H")
    cells.frombytes(raw)
    if sys.byteorder == "big":
        cells.byteswap()
    return cells


@dataclass
class HeatmapGrid:
    """A (rows, cols) grid of person-seconds, row-major."""

    cols: int
    rows: int
    values: "array[float]"

    def at(self, row: int, col: int) -> float:
        return self.values[row * self.cols + col]

    def to_numpy(self) -> "np.ndarray[Any, np.dtype[np.float64]]":
        """The grid as a (rows, cols) float64 numpy array (imports numpy)."""
        import numpy

        return numpy.frombuffer(self.values, dtype=numpy.float64).reshape(self.rows, self.cols).copy()


def sum_tiles(bodies: Iterable[Union[HeatmapBody, Mapping[str, Any]]]) -> HeatmapGrid:
    """Sum tiles (one window, or many: grids are additive) into one grid. Wire dicts are parsed
    strictly first. Raises MessageError when there is no tile or the tiles' grids differ."""
    grid: Optional[HeatmapGrid] = None
    for item in bodies:
        body = item if isinstance(item, HeatmapBody) else HeatmapBody.from_dict(item)
        cols, rows = body.grid
        if grid is None:
            grid = HeatmapGrid(cols, rows, array("d", bytes(8 * cols * rows)))
        elif (grid.cols, grid.rows) != (cols, rows):
            raise MessageError(f"heatmap tile: grid {cols}x{rows} differs from {grid.cols}x{grid.rows}")
        _add_tile(grid, body)
    if grid is None:
        raise MessageError("heatmap: no tiles")
    return grid


def _add_tile(grid: HeatmapGrid, body: HeatmapBody) -> None:
    cells = decode_cells(body)
    width, height = body.tile_size
    tx, ty = body.tile
    x0, y0 = tx * width, ty * height
    used_cols = min(width, grid.cols - x0)
    for r in range(min(height, grid.rows - y0)):
        base = (y0 + r) * grid.cols + x0
        row = cells[r * width : r * width + used_cols]
        for i, value in enumerate(row):
            grid.values[base + i] += value * body.scale
