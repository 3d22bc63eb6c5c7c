"""The contract package on its own: standard library only, typed bodies, the tile codec with and
without numpy."""

import base64
import subprocess
import sys
import zlib
from array import array
from pathlib import Path

import numpy as np
import pytest

from contract import (
    HEATMAP_UNIT,
    CountsBody,
    HeatmapBody,
    MessageError,
    SpoolCounters,
    Telemetry,
    build_data_payload,
    build_telemetry,
    decode_cells,
    encode_cells,
    parse_telemetry,
    sum_tiles,
    tile_body,
)
from tests.mqtt_fixtures import counts_body, heatmap_body


def test_importing_the_contract_loads_no_third_party_package():
    code = (
        "import sys, contract; "
        "extra = [m for m in ('numpy', 'paho', 'pydantic', 'edge', 'aggregator') if m in sys.modules]; "
        "print(extra)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_counts_body_round_trips_typed():
    body = CountsBody.from_dict(counts_body())
    assert body.lines["door"].count_in == 2 and body.zones["queue"].dwell_mean_s == 4.2
    assert body.to_dict() == counts_body()


def test_typed_and_dict_bodies_make_the_same_payload():
    for kind, body, typed in (
        ("counts", counts_body(), CountsBody.from_dict(counts_body())),
        ("heatmap", heatmap_body(), HeatmapBody.from_dict(heatmap_body())),
    ):
        args = (kind, "dev1", "cam1", "b1", 3, (0.0, 10.0))
        assert build_data_payload(*args, typed) == build_data_payload(*args, body)


def test_counts_body_ignores_unknown_keys_and_names_bad_fields():
    assert CountsBody.from_dict({**counts_body(), "future": 1}).to_dict() == counts_body()
    bad = counts_body()
    bad["zones"]["queue"]["entered"] = -1
    with pytest.raises(MessageError, match=r"counts\.zones\.queue\.entered"):
        CountsBody.from_dict(bad)


def test_stdlib_and_numpy_encodings_are_identical_and_decode_back():
    cells = np.arange(12 * 16, dtype=np.uint16).reshape(12, 16) * 300
    from_numpy = encode_cells(cells)
    from_array = encode_cells(array("H", cells.ravel().tolist()))
    from_ints = encode_cells(int(v) for v in cells.ravel())
    assert from_numpy == from_array == from_ints
    body = tile_body((64, 36), (1, 0), (16, 12), 0.01, cells)
    assert list(decode_cells(body)) == cells.ravel().tolist()
    assert HeatmapBody.from_dict(body.to_dict()) == body
    assert body.to_dict()["unit"] == HEATMAP_UNIT


def test_numpy_cells_must_fit_uint16():
    with pytest.raises(TypeError):
        encode_cells(np.ones((2, 2), dtype=np.float64))
    with pytest.raises(OverflowError):
        encode_cells([70000])


def test_sum_tiles_without_numpy_pads_edges_and_adds_windows():
    # A 5x3 grid in 4x2 tiles: the right and bottom tiles are padded, padding is cut off again.
    tiles = [
        tile_body((5, 3), (0, 0), (4, 2), 0.5, [1] * 8),
        tile_body((5, 3), (1, 0), (4, 2), 0.5, [2] * 8),
        tile_body((5, 3), (1, 1), (4, 2), 0.5, [4] * 8),
    ]
    grid = sum_tiles(tiles + [tiles[0].to_dict()])  # a wire dict of the next window adds up
    assert (grid.cols, grid.rows) == (5, 3)
    assert [grid.at(0, c) for c in range(5)] == [1.0, 1.0, 1.0, 1.0, 1.0]
    assert [grid.at(2, c) for c in range(5)] == [0.0, 0.0, 0.0, 0.0, 2.0]
    assert grid.to_numpy().shape == (3, 5)


def test_sum_tiles_refuses_mixed_grids_and_nothing():
    with pytest.raises(MessageError, match="differs"):
        sum_tiles([tile_body((4, 4), (0, 0), (4, 4), 1.0, [1] * 16), tile_body((8, 4), (0, 0), (4, 4), 1.0, [1] * 16)])
    with pytest.raises(MessageError, match="no tiles"):
        sum_tiles([])


def test_heatmap_fixture_decodes_like_numpy():
    body = HeatmapBody.from_dict(heatmap_body())
    expected = np.frombuffer(zlib.decompress(base64.b64decode(body.data)), dtype="<u2")
    assert list(decode_cells(body)) == expected.tolist()


def test_telemetry_envelope_round_trips_with_the_runtimes_values():
    counters = SpoolCounters(
        depth=3, bytes=900, max_bytes=10_000, dropped=1, refused=0, delivered=7, in_flight=2, resent=0
    )
    telemetry = Telemetry("dev1", "b1", 1700000000.0, counters, {"cameras": {"cam1": {"fps": 9.5}}})
    wire = telemetry.to_dict()
    assert list(wire) == ["cameras", "device", "boot", "ts", "spool"]
    assert parse_telemetry(build_telemetry(telemetry)) == telemetry
    with pytest.raises(MessageError, match=r"telemetry\.spool\.depth"):
        parse_telemetry(b'{"device": "d", "boot": "b", "ts": 1, "spool": {"depth": -1}}')


ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_contract_and_the_pure_delivery_core_are_strictly_typed_and_python_3_8():
    strict = [str(BIN / "mypy"), "--strict", "contract", "edge/delivery/outbox.py", "edge/delivery/schedules.py"]
    typed = subprocess.run(strict, cwd=ROOT, capture_output=True, text=True)
    assert typed.returncode == 0, typed.stdout
    vermin = [str(BIN / "vermin"), "--target=3.8-", "--violations", "--no-tips", "contract/"]
    old_python = subprocess.run(vermin, cwd=ROOT, capture_output=True, text=True)
    assert old_python.returncode == 0, old_python.stdout
