"""Hardware probe: what this device is and what it can run, as a `HardwareProfile`.

Every file is read below an injectable root directory and every command goes through an
injectable runner, and Python packages are looked up through an injectable importer, so the
probe runs in tests against fixture trees holding real devices' files (tests/fixtures/platforms).

The platform class comes from the device tree (`/proc/device-tree/model`, `compatible`) on ARM
boards, `/etc/nv_tegra_release` (L4T → JetPack) on Jetsons, and `nvidia-smi` plus the CPU flags
on x86. The device-tree and cpuinfo parsing is hand-written: psutil and py-cpuinfo cannot read
a foreign root, and jetson-stats is optional (used when importable, for what files do not say).
"""

import hashlib
import importlib
import logging
import re
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

log = logging.getLogger(__name__)

CommandRunner = Callable[[Sequence[str]], Optional[str]]  # stdout, or None when missing/failed
Importer = Callable[[str], Optional[Any]]  # the module, or None when not importable

# L4T release → JetPack (NVIDIA's Jetson archive; the same table jetson-stats keeps).
L4T_TO_JETPACK = {
    "32.4.3": "4.4",
    "32.4.4": "4.4.1",
    "32.5.0": "4.5",
    "32.5.1": "4.5.1",
    "32.5.2": "4.5.1",
    "32.6.1": "4.6",
    "32.7.1": "4.6.1",
    "32.7.2": "4.6.2",
    "32.7.3": "4.6.3",
    "32.7.4": "4.6.4",
    "32.7.5": "4.6.5",
    "32.7.6": "4.6.6",
    "35.1.0": "5.0.2",
    "35.2.1": "5.1",
    "35.3.1": "5.1.1",
    "35.4.1": "5.1.2",
    "35.5.0": "5.1.3",
    "35.6.0": "5.1.4",
    "35.6.1": "5.1.5",
    "36.2.0": "6.0 DP",
    "36.3.0": "6.0",
    "36.4.0": "6.1",
    "36.4.3": "6.2",
    "36.4.4": "6.2.1",
}

# Jetson SoC → CUDA compute capability of its integrated GPU.
TEGRA_COMPUTE_CAPABILITY = {"tegra210": "5.3", "tegra186": "6.2", "tegra194": "7.2", "tegra234": "8.7"}

# DLA cores by Jetson module; Orin NX 8 GB (p3767-0001) has one, the Orin Nano none.
DLA_CORES = {
    "jetson-xavier-nx": 2,
    "jetson-agx-xavier": 2,
    "jetson-orin-nx": 2,
    "jetson-agx-orin": 2,
}

# Thermal zones that do not measure the SoC: Jetson's PMIC-Die reports a fixed 100 °C.
_IGNORED_THERMAL_ZONES = ("pmic",)
_L4T_RE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)\.(\d+)")


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str
    memory_mb: Optional[int]


@dataclass(frozen=True)
class ThermalZone:
    name: str
    temperature_c: float


@dataclass(frozen=True)
class HardwareProfile:
    platform: str  # one of edge.config.PLATFORM_CLASSES
    model: str  # device-tree model, else the CPU model name
    arch: str  # "x86_64", "aarch64" or "unknown"
    cpu_model: str
    cpu_cores: int
    avx2: bool
    avx512_vnni: bool
    avx_vnni: bool
    neon: bool
    dotprod: bool  # ARM asimddp (SDOT/UDOT), what INT8 kernels use on ARM
    memory_total_mb: Optional[int]
    memory_available_mb: Optional[int]
    soc: Optional[str] = None  # e.g. "tegra234"
    l4t: Optional[str] = None
    jetpack: Optional[str] = None
    gpus: Tuple[GpuInfo, ...] = ()
    dla_cores: int = 0
    tensorrt_version: Optional[str] = None
    pycuda: bool = False
    onnxruntime_version: Optional[str] = None
    onnxruntime_providers: Tuple[str, ...] = ()
    jtop: bool = False
    thermal_zones: Tuple[ThermalZone, ...] = field(default_factory=tuple)

    @property
    def vnni(self) -> bool:
        return self.avx512_vnni or self.avx_vnni

    @property
    def is_jetson(self) -> bool:
        return self.platform.startswith("jetson-")

    @property
    def nvidia_gpu(self) -> bool:
        return self.is_jetson or bool(self.gpus)

    @property
    def tensorrt_usable(self) -> bool:
        return self.nvidia_gpu and self.tensorrt_version is not None

    @property
    def temperature_c(self) -> Optional[float]:
        return max((zone.temperature_c for zone in self.thermal_zones), default=None)

    def fingerprint(self) -> str:
        """Identity of what decides a tier's speed, for the per-device measurement cache."""
        parts = [
            self.platform,
            self.model,
            self.cpu_model,
            str(self.cpu_cores),
            ",".join(f"{gpu.name}/{gpu.compute_capability}" for gpu in self.gpus),
            self.tensorrt_version or "-",
            self.onnxruntime_version or "-",
        ]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        data["vnni"] = self.vnni
        data["temperature_c"] = self.temperature_c
        data["fingerprint"] = self.fingerprint()
        return data


def run_command(args: Sequence[str]) -> Optional[str]:
    """The default runner: stdout of a command that exists and succeeds within 10 s, else None."""
    try:
        done = subprocess.run(list(args), capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def import_optional(name: str) -> Optional[Any]:
    """The default importer. Platform packages can fail with more than ImportError (a
    tensorrt wheel without its CUDA libraries raises OSError), so any failure means absent."""
    try:
        return importlib.import_module(name)
    except Exception:  # noqa: BLE001 - absent for whatever reason
        return None


def _read(root: Path, path: str) -> Optional[str]:
    try:
        return (root / path.lstrip("/")).read_text(errors="replace")
    except OSError:
        return None


def _device_tree(root: Path, name: str) -> List[str]:
    """A device-tree string property: NUL-separated strings."""
    text = _read(root, f"/proc/device-tree/{name}") or _read(root, f"/sys/firmware/devicetree/base/{name}")
    if text is None:
        return []
    return [part.strip() for part in text.split("\0") if part.strip()]


@dataclass(frozen=True)
class CpuInfo:
    arch: str
    model: str
    cores: int
    flags: Tuple[str, ...]
    board_model: str  # Raspberry Pi OS adds "Model : Raspberry Pi 5 Model B Rev 1.0"


def parse_cpuinfo(text: str) -> CpuInfo:
    cores = 0
    flags: Tuple[str, ...] = ()
    model = ""
    board_model = ""
    arch = "unknown"
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip()
        value = value.strip()
        if key == "processor":
            cores += 1
        elif key == "flags" and not flags:
            flags, arch = tuple(value.split()), "x86_64"
        elif key == "Features" and not flags:
            flags, arch = tuple(value.split()), "aarch64"
        elif key == "model name" and not model:
            model = value
        elif key == "Model":
            board_model = value
        elif key == "CPU part" and not model:
            model = f"ARM part {value}"
    return CpuInfo(
        arch=arch, model=model or board_model or "unknown", cores=cores, flags=flags, board_model=board_model
    )


def parse_meminfo(text: str) -> Dict[str, int]:
    """/proc/meminfo values in MB."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        parts = value.split()
        if sep and parts and parts[0].isdigit():
            values[key.strip()] = int(parts[0]) // 1024
    return values


def parse_l4t(text: str) -> Optional[str]:
    """`# R32 (release), REVISION: 6.1, ...` → "32.6.1"."""
    match = _L4T_RE.search(text)
    if not match:
        return None
    return f"{match.group(1)}.{match.group(2)}.{match.group(3)}"


def jetpack_for_l4t(l4t: str) -> Optional[str]:
    if l4t in L4T_TO_JETPACK:
        return L4T_TO_JETPACK[l4t]
    major, minor, _patch = l4t.split(".")
    # Unknown patch releases keep their minor line's JetPack (36.4.7 is still JetPack 6.2.x).
    candidates = [jp for version, jp in L4T_TO_JETPACK.items() if version.startswith(f"{major}.{minor}.")]
    return f"{candidates[-1]}.x" if candidates else None


def parse_nvidia_smi(text: str) -> Tuple[GpuInfo, ...]:
    """Rows of `nvidia-smi --query-gpu=name,compute_cap,memory.total --format=csv,noheader`."""
    gpus = []
    for line in text.splitlines():
        fields = [part.strip() for part in line.split(",")]
        if len(fields) < 3 or not fields[0]:
            continue
        memory = re.match(r"(\d+)", fields[2])
        gpus.append(GpuInfo(fields[0], fields[1], int(memory.group(1)) if memory else None))
    return tuple(gpus)


def read_thermal_zones(root: Path = Path("/")) -> Tuple[ThermalZone, ...]:
    zones = []
    base = root / "sys/class/thermal"
    for zone_dir in sorted(base.glob("thermal_zone*")):
        name = (_read(zone_dir, "type") or zone_dir.name).strip()
        raw = (_read(zone_dir, "temp") or "").strip()
        if not raw.lstrip("-").isdigit() or any(word in name.lower() for word in _IGNORED_THERMAL_ZONES):
            continue
        celsius = int(raw) / 1000.0
        if -40.0 < celsius < 150.0:  # offline Jetson zones read -256 °C
            zones.append(ThermalZone(name, celsius))
    return tuple(zones)


def read_temperature_c(root: Path = Path("/")) -> Optional[float]:
    """The hottest SoC thermal zone now, for the controller's throttling check."""
    return max((zone.temperature_c for zone in read_thermal_zones(root)), default=None)


def read_memory_percent() -> float:
    """System memory in use, for the controller's memory-pressure check."""
    import psutil

    return float(psutil.virtual_memory().percent)


def _jetson_class(soc: str, compatible: Sequence[str], model: str) -> str:
    joined = " ".join(compatible).lower() + " " + model.lower()
    if soc == "tegra210":
        return "jetson-nano"
    if soc == "tegra186":
        return "jetson-tx2"
    if soc == "tegra194":
        return "jetson-xavier-nx" if ("p3668" in joined or "xavier nx" in joined) else "jetson-agx-xavier"
    if soc == "tegra234":
        if "p3701" in joined or "agx orin" in joined:
            return "jetson-agx-orin"
        # p3767-0000/0001 are the Orin NX modules, -0003/-0004/-0005 the Orin Nano ones.
        if re.search(r"p3767-000[01]", joined) or "orin nx" in joined:
            return "jetson-orin-nx"
        return "jetson-orin-nano"
    for needle, platform in (
        ("orin nano", "jetson-orin-nano"),
        ("xavier nx", "jetson-xavier-nx"),
        ("tx2", "jetson-tx2"),
    ):
        if needle in joined:
            return platform
    return "jetson-nano"


def _soc(compatible: Sequence[str]) -> Optional[str]:
    for entry in compatible:
        match = re.match(r"nvidia,(tegra\d+)$", entry)
        if match:
            return match.group(1)
    return None


def classify(
    model: str,
    compatible: Sequence[str],
    cpu: CpuInfo,
    jetson: bool,
    soc: Optional[str],
    gpus: Sequence[GpuInfo],
) -> str:
    if jetson:
        return _jetson_class(soc or "", compatible, model)
    text = (model + " " + cpu.board_model).lower()
    if "brcm,bcm2712" in compatible or "raspberry pi 5" in text:
        return "rpi-5"
    if "brcm,bcm2711" in compatible or "raspberry pi 4" in text:
        return "rpi-4"
    if cpu.arch == "x86_64":
        return "x86-nvidia" if gpus else "x86-cpu"
    return "arm-cpu"


def _tensorrt_dla_cores(tensorrt: Any) -> Optional[int]:
    """TensorRT's own count, when a builder can be created (needs the GPU driver)."""
    try:
        builder = tensorrt.Builder(tensorrt.Logger(tensorrt.Logger.ERROR))
        return int(builder.num_DLA_cores)
    except Exception:  # noqa: BLE001 - no driver, or an older API: fall back to the table
        return None


def _jtop_versions(importer: Importer) -> Tuple[Optional[str], Optional[str]]:
    """L4T and JetPack from jetson-stats (its service must run), for images without nv_tegra_release."""
    module = importer("jtop")
    if module is None:
        return None, None
    try:
        with module.jtop() as jetson:
            hardware = jetson.board.get("hardware", {})
            return hardware.get("L4T") or None, hardware.get("Jetpack") or None
    except Exception:  # noqa: BLE001 - service not running
        return None, None


def probe(
    root: Path = Path("/"), run: CommandRunner = run_command, importer: Importer = import_optional
) -> HardwareProfile:
    root = Path(root)
    model_entries = _device_tree(root, "model")
    compatible = _device_tree(root, "compatible")
    cpu = parse_cpuinfo(_read(root, "/proc/cpuinfo") or "")
    memory = parse_meminfo(_read(root, "/proc/meminfo") or "")
    release = _read(root, "/etc/nv_tegra_release")
    soc = _soc(compatible)
    model = model_entries[0] if model_entries else (cpu.board_model or cpu.model)
    jetson = soc in TEGRA_COMPUTE_CAPABILITY or release is not None or "jetson" in model.lower()

    l4t = parse_l4t(release) if release else None
    jetpack = jetpack_for_l4t(l4t) if l4t else None
    has_jtop = importer("jtop") is not None
    if jetson and l4t is None and has_jtop:
        l4t, jetpack = _jtop_versions(importer)

    gpus: Tuple[GpuInfo, ...] = ()
    if not jetson:
        smi = run(["nvidia-smi", "--query-gpu=name,compute_cap,memory.total", "--format=csv,noheader"])
        gpus = parse_nvidia_smi(smi or "")
    platform = classify(model, compatible, cpu, jetson, soc, gpus)
    if jetson and soc in TEGRA_COMPUTE_CAPABILITY:
        gpus = (
            GpuInfo(f"NVIDIA {soc} integrated GPU", TEGRA_COMPUTE_CAPABILITY[soc], memory.get("MemTotal")),
        )

    tensorrt = importer("tensorrt")
    tensorrt_version = str(getattr(tensorrt, "__version__", "unknown")) if tensorrt is not None else None
    dla_cores = DLA_CORES.get(platform, 0)
    if platform == "jetson-orin-nx" and any("p3767-0001" in entry for entry in compatible):
        dla_cores = 1
    if tensorrt is not None and jetson:
        counted = _tensorrt_dla_cores(tensorrt)
        dla_cores = counted if counted is not None else dla_cores

    onnxruntime = importer("onnxruntime")
    providers: Tuple[str, ...] = ()
    if onnxruntime is not None:
        providers = tuple(onnxruntime.get_available_providers())
    flags = set(cpu.flags)
    return HardwareProfile(
        platform=platform,
        model=model,
        arch=cpu.arch,
        cpu_model=cpu.model,
        cpu_cores=cpu.cores,
        avx2="avx2" in flags,
        avx512_vnni="avx512_vnni" in flags,
        avx_vnni="avx_vnni" in flags,
        neon="asimd" in flags or "neon" in flags,
        dotprod="asimddp" in flags,
        memory_total_mb=memory.get("MemTotal"),
        memory_available_mb=memory.get("MemAvailable"),
        soc=soc,
        l4t=l4t,
        jetpack=jetpack,
        gpus=gpus,
        dla_cores=dla_cores,
        tensorrt_version=tensorrt_version,
        pycuda=importer("pycuda") is not None,
        onnxruntime_version=str(getattr(onnxruntime, "__version__", "unknown"))
        if onnxruntime is not None
        else None,
        onnxruntime_providers=providers,
        jtop=has_jtop,
        thermal_zones=read_thermal_zones(root),
    )
