"""The hardware probe against fixture trees of real devices' files, and on this machine."""

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Dict, Optional, Sequence

import pytest

from edge.commands.cli import main
from edge.device.hardware import jetpack_for_l4t, parse_l4t, probe

FIXTURES = Path(__file__).parent / "fixtures" / "platforms"
STANDIN = Path(__file__).parent / "trt_standin"


def fixture_runner(root: Path):
    """Commands answer with their recorded output (commands/<name>.out), else as if absent."""

    def run(args: Sequence[str]) -> Optional[str]:
        recorded = root / "commands" / f"{Path(args[0]).name}.out"
        return recorded.read_text() if recorded.exists() else None

    return run


def nothing_importable(name: str) -> Optional[ModuleType]:
    return None


def probe_fixture(name: str, modules: Optional[Dict[str, ModuleType]] = None):
    root = FIXTURES / name
    available = modules or {}
    return probe(root, fixture_runner(root), lambda module: available.get(module))


def load_standin(name: str) -> ModuleType:
    """The TensorRT / pycuda stand-ins (the real ones cannot be installed without a GPU)."""
    spec = importlib.util.spec_from_file_location(
        f"standin_{name}", STANDIN / name / "__init__.py", submodule_search_locations=[str(STANDIN / name)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "name, platform, cores, memory_mb, l4t, jetpack, compute",
    [
        ("jetson-nano", "jetson-nano", 4, 3964, "32.6.1", "4.6", "5.3"),
        ("jetson-xavier-nx", "jetson-xavier-nx", 6, None, "32.4.3", "4.4", "7.2"),
        ("jetson-agx-orin", "jetson-agx-orin", 12, 30697, "36.4.3", "6.2", "8.7"),
    ],
)
def test_jetsons(name, platform, cores, memory_mb, l4t, jetpack, compute):
    profile = probe_fixture(name)
    assert profile.platform == platform
    assert profile.is_jetson and profile.nvidia_gpu
    assert profile.arch == "aarch64"
    assert profile.cpu_cores == cores
    assert profile.memory_total_mb == memory_mb
    assert (profile.l4t, profile.jetpack) == (l4t, jetpack)
    assert [gpu.compute_capability for gpu in profile.gpus] == [compute]
    assert profile.neon and not profile.avx2 and not profile.vnni
    # No tensorrt importable in the fixture world: TensorRT tiers are not usable.
    assert profile.tensorrt_version is None and not profile.tensorrt_usable


def test_jetson_details():
    nano = probe_fixture("jetson-nano")
    assert nano.soc == "tegra210" and nano.dla_cores == 0 and not nano.dotprod
    # PMIC-Die reads a constant 100 C on Jetsons: not a SoC temperature.
    assert nano.temperature_c == 39.5
    assert "PMIC-Die" not in {zone.name for zone in nano.thermal_zones}
    orin = probe_fixture("jetson-agx-orin")
    assert orin.soc == "tegra234" and orin.dla_cores == 2 and orin.dotprod
    assert orin.model == "NVIDIA Jetson AGX Orin Developer Kit"
    assert probe_fixture("jetson-xavier-nx").dla_cores == 2


def test_jetson_with_tensorrt_counts_dla_from_the_builder():
    tensorrt = load_standin("tensorrt")
    tensorrt.configure(version="8.5.2", dla_cores=1)
    profile = probe_fixture("jetson-agx-orin", {"tensorrt": tensorrt, "pycuda": ModuleType("pycuda")})
    assert profile.tensorrt_version == "8.5.2" and profile.pycuda and profile.tensorrt_usable
    assert profile.dla_cores == 1  # TensorRT's count wins over the table


@pytest.mark.parametrize(
    "name, platform, memory_mb, dotprod", [("rpi-4", "rpi-4", None, False), ("rpi-5", "rpi-5", 8058, True)]
)
def test_raspberry_pis(name, platform, memory_mb, dotprod):
    profile = probe_fixture(name)
    assert profile.platform == platform
    assert profile.cpu_cores == 4
    assert profile.memory_total_mb == memory_mb
    assert profile.neon and profile.dotprod == dotprod
    assert not profile.nvidia_gpu and profile.l4t is None and profile.dla_cores == 0
    assert profile.model.startswith("Raspberry Pi")


def test_rpi5_thermal_zone():
    assert probe_fixture("rpi-5").temperature_c == 58.4


def test_x86_desktop_with_rtx():
    profile = probe_fixture("x86-rtx")
    assert profile.platform == "x86-nvidia"
    assert profile.cpu_cores == 20
    assert profile.cpu_model == "12th Gen Intel(R) Core(TM) i7-12700K"
    assert profile.avx2 and profile.avx_vnni and not profile.avx512_vnni and profile.vnni
    [gpu] = profile.gpus
    assert (gpu.name, gpu.compute_capability, gpu.memory_mb) == ("NVIDIA GeForce RTX 4090", "8.9", 24564)


def test_same_desktop_without_nvidia_smi_is_x86_cpu(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "cpuinfo").write_text((FIXTURES / "x86-rtx" / "proc" / "cpuinfo").read_text())
    profile = probe(tmp_path, fixture_runner(tmp_path), nothing_importable)
    assert profile.platform == "x86-cpu" and profile.gpus == ()


def test_this_machine_fixture():
    profile = probe_fixture("this-machine")
    assert profile.platform == "x86-cpu"
    assert profile.cpu_cores == 2
    assert profile.avx512_vnni and profile.memory_total_mb is not None


def test_l4t_parsing():
    assert parse_l4t("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref") == "35.4.1"
    assert parse_l4t("not a release line") is None
    assert jetpack_for_l4t("36.4.3") == "6.2"
    assert jetpack_for_l4t("36.4.7") == "6.2.1.x"  # unknown patch: its minor line's JetPack
    assert jetpack_for_l4t("99.1.0") is None


def test_fingerprint_separates_devices():
    names = ("jetson-nano", "jetson-agx-orin", "rpi-5", "x86-rtx")
    prints = {probe_fixture(name).fingerprint() for name in names}
    assert len(prints) == 4
    assert probe_fixture("rpi-5").fingerprint() == probe_fixture("rpi-5").fingerprint()


def _real_cpuinfo_flags() -> set:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="needs Linux /proc")
def test_real_probe_on_this_machine():
    profile = probe()
    flags = _real_cpuinfo_flags()
    assert profile.cpu_cores == os.cpu_count()
    assert profile.avx512_vnni == ("avx512_vnni" in flags)
    assert profile.avx_vnni == ("avx_vnni" in flags)
    if flags:
        assert profile.arch == "x86_64"
        assert profile.platform == ("x86-nvidia" if profile.gpus else "x86-cpu")
    assert profile.onnxruntime_version is not None and "CPUExecutionProvider" in profile.onnxruntime_providers


def test_probe_command_json(capsys, tmp_path):
    missing_default = "/etc/video-analysis/config.yaml"
    if Path(missing_default).exists():
        pytest.skip("a real config is installed here")
    assert main(["probe", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["profile"]["platform"] in ("x86-cpu", "x86-nvidia")
    assert report["profile"]["cpu_cores"] == os.cpu_count()
    assert report["profile"]["vnni"] == bool(_real_cpuinfo_flags() & {"avx512_vnni", "avx_vnni"})
    assert report["tiers"]["runnable"], "the SSD model on ONNX Runtime runs everywhere"


def test_probe_command_text_with_config(capsys, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(
        "policy:\n  tiers:\n    x86-cpu:\n      - {model: yolov8s, engine: tensorrt, input: 640}\n"
    )
    assert main(["probe", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "drop  [0] yolov8s@640 tensorrt/int8 skip1: model 'yolov8s' is not in the model manifest" in out


def test_importer_failure_is_absence():
    from edge.device.hardware import import_optional

    assert import_optional("no_such_module_anywhere") is None
    assert import_optional("json") is sys.modules["json"]
