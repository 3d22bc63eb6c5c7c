"""The configuration schema (config.yaml), its loading and its secrets.

Every section is a pydantic model that forbids unknown keys and describes every field, so a
typo is an error naming the file and the key path, and `check-config` can print the effective
configuration. Secrets (MQTT password, RTSP credentials, TLS key) are never values here: only
paths to files or systemd credentials, read when they are needed; `mask_urls` hides the
credentials of any URL that is printed or logged.
"""

import os
import re
from pathlib import Path
from typing import Dict, List, Literal, Optional, Tuple, Union
from urllib.parse import quote

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge.core.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/video-analysis/config.yaml")
Point = Tuple[float, float]
NETWORK_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")

# scheme://userinfo@ — greedy up to the last '@' of the token, so a password holding '@' or '/'
# is masked whole (over-masking an odd URL is harmless; leaking half a password is not).
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s'\"]*)@")
_SECRET_QUERY = re.compile(r"(?P<key>[?&](?:password|passwd|pwd|pass|token|secret|key)=)[^&\s'\"]*", re.IGNORECASE)


def _mask_userinfo(match: "re.Match[str]") -> str:
    user, sep, _password = match.group("userinfo").partition(":")
    return f"{match.group('scheme')}{user}:***@" if sep else f"{match.group('scheme')}***@"


def mask_urls(text: str) -> str:
    """`text` with the password of every URL in it replaced by `***` (user names are kept,
    a lone token before '@' is masked), and password/token query parameters masked too."""
    return _SECRET_QUERY.sub(r"\g<key>***", _USERINFO.sub(_mask_userinfo, text))


# Ids end up in MQTT topics, JSON keys and Home Assistant ids (DESIGN.md "Wire contract").
_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")
ID_RULE = "1-64 characters of letters, digits, '_', '.' and '-', not starting with '.'"
# MQTT wildcards and the level separator break a one-level topic name; '$' starts broker topics.
_TOPIC_LEVEL = re.compile(r"[^+#/$\x00][^+#/\x00]{0,63}")
MAX_DISCOVERY_PREFIX = 128


def check_id(value: str) -> str:
    if not _ID.fullmatch(value):
        raise ValueError(f"{value!r}: expected {ID_RULE}")
    return value


def check_topic_level(value: str) -> str:
    """One MQTT topic level (the topic prefix): the data topics and the aggregator's
    subscriptions (`{prefix}/+/+/counts`) count the levels, so it cannot hold '/'."""
    if not _TOPIC_LEVEL.fullmatch(value):
        raise ValueError(
            f"{value!r}: expected one topic level of 1-64 characters without '+', '#', '/' or a leading '$'"
        )
    return value


def check_topic_prefix(value: str) -> str:
    """A topic prefix of one or more levels (Home Assistant's discovery prefix)."""
    levels = value.split("/")
    if len(value) > MAX_DISCOVERY_PREFIX or not all(levels) or any(c in value for c in "+#\x00") or value[0] == "$":
        raise ValueError(
            f"{value!r}: expected a topic prefix of at most {MAX_DISCOVERY_PREFIX} characters, without '+', '#', "
            "empty levels or a leading '$'"
        )
    return value


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_normalised(points: List[Point]) -> List[Point]:
    for x, y in points:
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise ValueError(f"point ({x}, {y}) outside 0..1 (geometry is in normalised image coordinates)")
    return points


class LineConfig(Section):
    id: str = Field(description=f"Name of the counting line, used in the counts message; {ID_RULE}.")
    points: List[Point] = Field(
        description="Two points, normalised 0..1. 'in' is a crossing from the left side to the right side "
        "looking from the first point to the second."
    )

    _id = field_validator("id")(check_id)

    @field_validator("points")
    @classmethod
    def _two_points(cls, value: List[Point]) -> List[Point]:
        if len(value) != 2:
            raise ValueError("expected 2 points")
        return _check_normalised(value)


class ZoneConfig(Section):
    id: str = Field(description=f"Name of the zone, used in the counts message; {ID_RULE}.")
    polygon: List[Point] = Field(description="At least 3 points, normalised 0..1.")

    _id = field_validator("id")(check_id)

    @field_validator("polygon")
    @classmethod
    def _three_points(cls, value: List[Point]) -> List[Point]:
        if len(value) < 3:
            raise ValueError("expected at least 3 points")
        return _check_normalised(value)


class CameraConfig(Section):
    id: str = Field(description=f"Camera id, used in MQTT topics; {ID_RULE}.")
    source: str = Field(
        description="A video file path, rtsp:// URL, /dev/videoN (V4L2), csi://N (Jetson CSI camera through "
        "GStreamer) or a GStreamer pipeline ending in appsink (prefix 'gst:')."
    )
    target_fps: float = Field(10.0, gt=0, le=120, description="Frames per second to analyse.")
    credentials_file: Optional[Path] = Field(
        None,
        description="For rtsp:// and http(s):// sources: a file, or a systemd credential name, holding "
        "'user:password' on one line; inserted into the URL when the source is opened, so this file "
        "holds no password.",
    )
    realtime: bool = Field(
        True,
        description="For file sources: play at the file's native rate (true) or as fast as possible (false).",
    )
    loop: bool = Field(False, description="For file sources: start again at the end.")
    detect_source: Optional[str] = Field(
        None,
        description="A low-resolution stream of the same camera (an NVR's sub-stream, e.g. 640x360) to "
        "analyse instead of `source`: decoding it costs a fraction of the main stream. Same forms as "
        "`source`; `credentials_file` applies to it too. Lines and zones are normalised, so they hold for "
        "both streams as long as both show the same field of view.",
    )
    lines: List[LineConfig] = Field(default_factory=list, description="Counting lines.")
    zones: List[ZoneConfig] = Field(default_factory=list, description="Occupancy zones.")
    privacy_masks: List[List[Point]] = Field(
        default_factory=list,
        description="Polygons (at least 3 points, normalised 0..1) filled in black in snapshots before they leave "
        "the device.",
    )

    _id = field_validator("id")(check_id)

    @field_validator("privacy_masks")
    @classmethod
    def _mask_polygons(cls, value: List[List[Point]]) -> List[List[Point]]:
        for polygon in value:
            if len(polygon) < 3:
                raise ValueError("expected at least 3 points per mask")
            _check_normalised(polygon)
        return value

    @model_validator(mode="after")
    def _unique_ids(self) -> "CameraConfig":
        for kind, ids in (("line", [line.id for line in self.lines]), ("zone", [zone.id for zone in self.zones])):
            duplicates = sorted({i for i in ids if ids.count(i) > 1})
            if duplicates:
                raise ValueError(f"duplicate {kind} id {duplicates[0]!r}")
        return self

    @model_validator(mode="after")
    def _credentials_for_network_source(self) -> "CameraConfig":
        if self.credentials_file is None:
            return self
        for key, url in (("source", self.source), ("detect_source", self.detect_source)):
            if url is None:
                continue
            if not url.startswith(NETWORK_SCHEMES):
                raise ValueError(f"credentials_file needs an rtsp://, rtsps://, http:// or https:// {key}")
            if _USERINFO.match(url):
                raise ValueError(f"credentials_file is set but the {key} URL holds credentials too")
        return self

    def source_url(self) -> str:
        """The source to open: with the credentials of `credentials_file` inserted, if any."""
        return self._with_credentials(self.source)

    def analysed_url(self) -> str:
        """The stream the daemon analyses: `detect_source` when set, else `source` (credentials in)."""
        return self._with_credentials(self.detect_source or self.source)

    def _with_credentials(self, url: str) -> str:
        if self.credentials_file is None:
            return url
        user, sep, password = read_secret(self.credentials_file).partition(":")
        if not sep or not user:
            raise ConfigError(f"{self.credentials_file}: expected 'user:password' on one line")
        scheme, rest = url.split("://", 1)
        return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{rest}"


class DecodeConfig(Section):
    threads: int = Field(
        1,
        ge=0,
        le=16,
        description="FFmpeg decoder threads per camera (files and network streams); 0 lets FFmpeg use one "
        "per core. 1 measured cheapest on a 2-core CPU with several cameras: frame threading costs more CPU, "
        "a frame of latency and a set of frame buffers per thread.",
    )
    nice: int = Field(
        19,
        ge=0,
        le=19,
        description="How much lower than the inference worker the camera readers' threads are scheduled "
        "(Linux niceness added per thread). Past what the device can analyse, decoding every camera at the "
        "worker's priority took the CPU from inference and total analysed FPS fell; lower-priority readers "
        "decode with what inference leaves. 0 keeps them equal.",
    )
    skip_deblocking: bool = Field(
        False,
        description="Leave out the H.264/HEVC decoder's in-loop deblocking filter (files and network streams): "
        "about a fifth less decoding CPU per frame, with block edges left in the picture. Detection on PETS09 "
        "re-encoded at 1 Mbit/s: benchmarks/results/deblocking.md.",
    )


class DetectorConfig(Section):
    score_threshold: float = Field(0.3, ge=0, le=1, description="Minimum detection score kept after NMS.")
    nms_iou: float = Field(0.45, gt=0, le=1, description="IoU above which NMS suppresses the weaker box.")
    max_batch: int = Field(4, ge=1, le=32, description="Most frames (across cameras) per inference call.")
    cpu_batch_pixels: int = Field(
        200_000,
        ge=0,
        description="On a CPU (ONNX Runtime's CPU provider), most input pixels per inference call; 0: only "
        "max_batch limits it. A call runs on its lane's share of the cores (cpu_lanes), where a second frame in "
        "the same call adds nothing but its activations: input 300 (533x300 at 16:9) on 2 lanes ran 94 frames/s "
        "at one frame a call and 91 at two, which held 10 MB more. So 300 and 576 run one frame a call and 224 "
        "(398x224) two.",
    )
    cpu_lanes: int = Field(
        0,
        ge=0,
        le=16,
        description="On a CPU, frames the daemon infers at once, each call on its own share of the cores (0: one "
        "lane per physical core, each call on one thread). Two one-thread calls on 2 cores analyse more frames "
        "than one two-thread call, because the threads of one call wait for each other at every layer (input 300: "
        "83-88 against 46-62 frames/s); 1 runs one call at a time on every core, which analyses fewer frames but "
        "each a little sooner (one camera at 15 FPS: 20 against 25 ms p50 per inference).",
    )
    keep_aspect: bool = Field(
        True,
        description="SSD models: keep the frame's aspect ratio (the tier's input is the shorter side, a 4:3 frame at "
        "300 runs at 400x300) instead of squashing the frame into a square.",
    )
    coarse_input: int = Field(
        300,
        ge=0,
        le=1280,
        description="SSD models: when the tier's input is larger, a second pass at this input finds people too "
        "large for it (close to the camera); 0 turns it off.",
    )
    classes: List[str] = Field(["person"], description="Classes to track and count; others are ignored.")


class TrackerConfig(Section):
    high_threshold: float = Field(0.5, ge=0, le=1, description="Score of detections matched in the first stage.")
    low_threshold: float = Field(0.1, ge=0, le=1, description="Lowest score used in the second stage.")
    new_track_threshold: float = Field(
        0.6, ge=0, le=1, description="Score an unmatched detection needs to start a track."
    )
    match_iou: float = Field(
        0.8, gt=0, le=1, description="Largest IoU distance (1 - IoU) accepted for a match in the first stage."
    )
    buffer_s: float = Field(
        2.0,
        gt=0,
        description="Seconds a lost track is kept for re-association: long enough for a person to walk out from "
        "behind another (PETS09 S2.L1, three decodings, skips 1-3: 2 s against 1 s gave 1-5 more of 58 crossings "
        "and fewer ids; benchmarks/results/tracker_buffer.md).",
    )
    min_hits: int = Field(2, ge=1, description="Matched frames before a track is confirmed (counted).")
    coast_s: float = Field(
        0.2,
        ge=0,
        description="Seconds a confirmed track that missed its detection is still reported (on its predicted box), "
        "so a single missed detection does not drop it from occupancy and the heatmap.",
    )


class CountsConfig(Section):
    window_s: float = Field(10.0, gt=0, description="Counting window; aligned to wall-clock boundaries.")
    line_min_distance: float = Field(
        0.02,
        ge=0,
        description="Normalised distance a foot point must move past a line before a crossing counts.",
    )


class HeatmapConfig(Section):
    enabled: bool = Field(True, description="Accumulate and publish the person-seconds heatmap.")
    window_s: float = Field(60.0, gt=0, description="Heatmap window; aligned to wall-clock boundaries.")
    grid: Tuple[int, int] = Field((64, 36), description="Heatmap cells [columns, rows] over the whole image.")
    tile: Tuple[int, int] = Field((16, 12), description="Cells per published tile [columns, rows].")


class TlsConfig(Section):
    ca_file: Path = Field(description="CA certificate (PEM) that signed the broker's certificate.")
    cert_file: Optional[Path] = Field(None, description="Client certificate (PEM), when the broker requires one.")
    key_file: Optional[Path] = Field(
        None, description="Client private key (PEM); keep it readable by the service only."
    )


class HomeAssistantConfig(Section):
    enabled: bool = Field(True, description="Publish Home Assistant MQTT discovery for the count sensors.")
    prefix: str = Field("homeassistant", description="Home Assistant discovery prefix.")

    _prefix = field_validator("prefix")(check_topic_prefix)


class SnapshotConfig(Section):
    enabled: bool = Field(
        False, description="Publish a retained JPEG reference frame per camera (raw scene images: off by default)."
    )
    interval_min: float = Field(60.0, gt=0, description="Minutes between snapshots.")
    blur_people: bool = Field(
        True, description="Pixelate every detected person in a snapshot before it leaves the device."
    )


class MqttConfig(Section):
    host: str = Field("localhost", description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 is usual with TLS).")
    prefix: str = Field("va", description="Topic prefix: one topic level (no '/', '+', '#').")
    client_id: Optional[str] = Field(None, description="MQTT client id; defaults to the device id.")
    username: Optional[str] = Field(None, description="Username, when the broker requires one.")
    password_file: Optional[Path] = Field(
        None,
        description="Password file, or a systemd credential name (read from $CREDENTIALS_DIRECTORY).",
    )
    tls: Optional[TlsConfig] = Field(None, description="TLS settings; plain TCP when absent.")
    keepalive_s: int = Field(30, ge=5, description="MQTT keepalive.")
    acks: Union[bool, Literal["auto"]] = Field(
        "auto",
        description=(
            "true: keep each message until the aggregator acknowledges it; false: until the broker's PUBACK; "
            "auto: PUBACK until an aggregator has acknowledged this device once, end-to-end from then on."
        ),
    )
    max_inflight: int = Field(20, ge=1, le=1000, description="Most unacknowledged publishes at once (paced replay).")
    ack_timeout_s: float = Field(
        30.0, gt=0, description="Seconds without an acknowledgement before sending unacknowledged messages again."
    )
    telemetry_interval_s: float = Field(10.0, gt=0, description="Seconds between telemetry messages.")
    stall_timeout_s: float = Field(
        300.0,
        gt=0,
        description=(
            "Seconds without delivery progress, connected with messages waiting, before the status says "
            "degraded and the systemd watchdog is no longer fed (so systemd restarts the daemon)."
        ),
    )
    snapshot: SnapshotConfig = Field(default_factory=SnapshotConfig, description="Retained reference frames.")
    homeassistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig, description="HA discovery.")

    _prefix = field_validator("prefix")(check_topic_level)


class SpoolConfig(Section):
    path: Optional[Path] = Field(None, description="SQLite outbox file; defaults to <state_dir>/spool.sqlite.")
    max_mb: float = Field(64.0, gt=0, description="Most megabytes of undelivered messages kept.")
    full_policy: str = Field(
        "drop_oldest",
        pattern="^(drop_oldest|reject_new)$",
        description="What to do when full: drop_oldest or reject_new.",
    )


class TierConfig(Section):
    model: str = Field(description="Model name from the model manifest (manifest.json in models_dir).")
    precision: str = Field("int8", pattern="^(fp32|fp16|int8)$", description="fp32, fp16 or int8.")
    engine: str = Field(
        "onnxruntime",
        min_length=1,
        description="A registered engine plug-in (built in: onnxruntime, tensorrt); checked against the "
        "engine registry by check-config and at start.",
    )
    input: int = Field(300, ge=32, le=1280, description="Square input size in pixels.")
    frame_skip: int = Field(1, ge=1, le=30, description="Analyse one frame in this many.")
    dla: bool = Field(False, description="TensorRT on a DLA core (Xavier/Orin), with GPU fallback.")


PLATFORM_CLASSES = (
    "jetson-nano",
    "jetson-tx2",
    "jetson-xavier-nx",
    "jetson-agx-xavier",
    "jetson-orin-nano",
    "jetson-orin-nx",
    "jetson-agx-orin",
    "rpi-4",
    "rpi-5",
    "x86-nvidia",
    "x86-cpu",
    "arm-cpu",
)


def _default_tiers() -> Dict[str, List[TierConfig]]:
    """Per platform class, best quality first. GPU classes start with YOLO on TensorRT (dropped,
    with a logged reason, when the model was not exported or TensorRT is missing) and end with
    the SSD model on ONNX Runtime, so every device has something it can run."""
    ssd = "ssdlite-mobilenetv2-pedestrian"

    def trt(model: str, size: int, skip: int = 1, precision: str = "int8") -> TierConfig:
        return TierConfig(model=model, precision=precision, engine="tensorrt", input=size, frame_skip=skip, dla=False)

    def ort(size: int, skip: int) -> TierConfig:
        return TierConfig(model=ssd, precision="int8", engine="onnxruntime", input=size, frame_skip=skip, dla=False)

    # The SSD sees people of 25-45 px at their own size only at the frame's native scale: on
    # PETS09 S2.L1 (768x576) input 576 (aspect kept) counts 55 of 58 crossings, 300 counts 53, 416
    # counts 40 (benchmarks/results/real_scene.md). Input 576 is the default; under load the CPU
    # tiers step down by frame-skip, then to 300, whose cost per frame at 720p is a fifth of
    # 576's (with its coarse pass): the multi-camera tiers. Every tier here keeps >= 80 % of the
    # best tier's crossings on PETS09; 300 at skip 3 keeps 72 % and is left out. Where the device's
    # own frames show 300 missing people that 576 sees, the agreement check drops the 300 tiers.
    # 224 (aspect kept: 398x224 at 16:9) costs 0.6 of 300 and is there for sites whose people are
    # large in the frame (a 360p sub-stream of a shop camera agrees with 576 at 1.00); on PETS09
    # it agrees at 0.50 and the check drops it. Per site the cheapest equivalent input becomes the
    # default (edge.core.tier_agreement.dominated).
    cpu = [ort(576, 1), ort(576, 2), ort(576, 3), ort(576, 4), ort(300, 1), ort(300, 2), ort(224, 1), ort(224, 2)]
    cpu_fallback = cpu[1:]
    # Maxwell (Nano) and Pascal (TX2) GPUs have no fast INT8 path: FP16 there.
    maxwell_pascal = [
        trt("yolov8n", 416, 1, "fp16"),
        trt("yolov8n", 320, 2, "fp16"),
        trt(ssd, 300, 1, "fp16"),
        trt(ssd, 300, 2, "fp16"),
        *cpu_fallback,
    ]
    xavier = [
        trt("yolov8s", 640),
        trt("yolov8n", 640),
        trt("yolov8n", 416),
        trt("yolov8n", 416, 2),
        *cpu_fallback,
    ]
    orin = [
        trt("yolov8s", 640),
        trt("yolov8s", 416),
        trt("yolov8n", 416),
        trt("yolov8n", 416, 2),
        *cpu_fallback,
    ]
    return {
        "jetson-nano": maxwell_pascal,
        "jetson-tx2": maxwell_pascal,
        "jetson-xavier-nx": xavier,
        "jetson-agx-xavier": xavier,
        "jetson-orin-nano": [trt("yolov8n", 640), *orin[2:]],
        "jetson-orin-nx": orin,
        "jetson-agx-orin": orin,
        "rpi-4": cpu[1:],
        "rpi-5": cpu,
        "x86-nvidia": [trt("yolov8s", 640), trt("yolov8n", 640), trt("yolov8n", 416), *cpu],
        "x86-cpu": cpu,
        "arm-cpu": cpu,
    }


class PolicyConfig(Section):
    margin: float = Field(0.1, ge=0, lt=1, description="Step down when FPS stays under target x (1 - margin).")
    headroom: float = Field(
        1.2, ge=1, description="Step up when the better tier is predicted to hold target x headroom."
    )
    window_s: float = Field(3.0, gt=0, description="Window over which FPS is measured.")
    down_after_s: float = Field(2.0, ge=0, description="Seconds under target before stepping down.")
    up_after_s: float = Field(20.0, ge=0, description="Seconds of predicted headroom before stepping up.")
    up_grace_s: float = Field(
        30.0,
        ge=0,
        description="A step down this soon after a step up marks the step up as failed (back-off).",
    )
    backoff_max_s: float = Field(600.0, gt=0, description="Longest back-off after failed step-ups.")
    temperature_c: float = Field(85.0, gt=0, description="SoC temperature that forces a step down.")
    memory_percent: float = Field(90.0, gt=0, le=100, description="Memory use that forces a step down.")
    agreement_floor: float = Field(
        0.88,
        ge=0,
        le=1,
        description="Least agreement (mAP@0.5) of a tier's detections with the best runnable tier's, on the "
        "device's calibration frames, for the tier to be runnable (measured once per device, cached; 0 turns "
        "the check off). 0.88 splits PETS09 S2.L1 (frames 1-400, 40-80 frame samples): input 480 agrees with "
        "576 at 0.91-0.95 and keeps 85 % of its line crossings; 416 and 300 agree at 0.77-0.84 and keep 80 % "
        "or less.",
    )
    equivalence_floor: float = Field(
        0.97,
        ge=0,
        le=1,
        description="A cheaper detector whose detections agree with the best tier's at least this well (mAP@0.5) "
        "on the site's own frames (a calibration set captured from its cameras, never the built-in scenes) sees "
        "the same people there: the costlier detectors' tiers ahead of it are dropped and it becomes the default "
        "(0 turns this off). On PETS09 S2.L1 input 300 agrees with 576 at 0.77-0.84 (576 stays); on the "
        "synthetic 720p plaza at 1.00 (300, a fifth of the cost, becomes the default).",
    )
    tiers: Dict[str, List[TierConfig]] = Field(
        default_factory=_default_tiers, description="Per platform class, the tiers best quality first."
    )

    @field_validator("tiers")
    @classmethod
    def _known_classes(cls, value: Dict[str, List[TierConfig]]) -> Dict[str, List[TierConfig]]:
        for name, tiers in value.items():
            if name not in PLATFORM_CLASSES:
                raise ValueError(f"unknown platform class {name!r} (known: {', '.join(PLATFORM_CLASSES)})")
            if not tiers:
                raise ValueError(f"{name}: expected at least one tier")
            for tier in tiers:
                if tier.dla and tier.engine != "tensorrt":
                    raise ValueError(f"{name}: dla needs engine tensorrt")
        return value


class CalibrationConfig(Section):
    dir: Optional[Path] = Field(
        None,
        description="Where calibration sets live (<dir>/<name>/); defaults to <state_dir>/calibration.",
    )
    set_name: Optional[str] = Field(
        None, description="Calibration set for INT8; defaults to the newest set, else the built-in scenes."
    )
    frames: int = Field(200, ge=8, le=5000, description="Frames `calibrate` collects.")
    collect_s: float = Field(120.0, gt=0, description="Most seconds `calibrate` samples live cameras.")
    holdout_fraction: float = Field(
        0.2, gt=0, lt=1, description="Part of the set kept out of calibration to check INT8 against FP32."
    )
    agreement_floor: float = Field(
        0.95, ge=0, le=1, description="Least mAP@0.5 of INT8 against FP32 detections before INT8 is used."
    )
    max_recall_drop: float = Field(
        0.05, ge=0, le=1, description="Most recall INT8 may lose against FP32 on labelled frames."
    )


class Config(Section):
    device_id: str = Field("edge-01", description=f"Device id, used in MQTT topics; {ID_RULE}.")
    state_dir: Path = Field(
        Path("/var/lib/video-analysis"), description="Spool, seq counter, engine cache and tier measurements."
    )
    models_dir: Optional[Path] = Field(
        None, description="Model files and manifest; defaults to the models shipped in the package."
    )
    log_level: str = Field(
        "info", pattern="^(debug|info|warning|error)$", description="Log level of the daemon (--debug overrides)."
    )
    log_format: str = Field(
        "text",
        pattern="^(text|json)$",
        description="text, or json (one object per line); under systemd lines carry <N> priority prefixes "
        "and no timestamp of their own.",
    )
    cameras: List[CameraConfig] = Field(default_factory=list, description="The cameras to analyse.")
    decode: DecodeConfig = Field(default_factory=DecodeConfig, description="Video decoding.")
    detector: DetectorConfig = Field(default_factory=DetectorConfig, description="Detection settings.")
    tracker: TrackerConfig = Field(default_factory=TrackerConfig, description="ByteTrack settings.")
    counts: CountsConfig = Field(default_factory=CountsConfig, description="Counting windows and lines.")
    heatmap: HeatmapConfig = Field(default_factory=HeatmapConfig, description="Heatmap windows and grid.")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="Broker connection and publishing.")
    spool: SpoolConfig = Field(default_factory=SpoolConfig, description="Durable outbox.")
    policy: PolicyConfig = Field(default_factory=PolicyConfig, description="Adaptive tier policy.")
    calibration: CalibrationConfig = Field(
        default_factory=CalibrationConfig, description="INT8 calibration and its accuracy guard."
    )

    _device_id = field_validator("device_id")(check_id)

    @model_validator(mode="after")
    def _unique_camera_ids(self) -> "Config":
        seen = set()
        for camera in self.cameras:
            if camera.id in seen:
                raise ValueError(f"duplicate camera id {camera.id!r}")
            seen.add(camera.id)
        return self

    @property
    def spool_path(self) -> Path:
        return self.spool.path or self.state_dir / "spool.sqlite"


def _format_location(loc: Tuple[Union[int, str], ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text or "(top level)"


def parse_config(raw: object, source: str = "config") -> Config:
    """Validate a parsed YAML document; errors become one ConfigError line naming the key path."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        # Drop pydantic's union/function-branch tags from the path, keep the user's keys.
        loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and "[" in p))
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = "unknown key"
        message = message.replace("Value error, ", "")
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{source}: {_format_location(loc)}: {message}{more}") from None


def load_config(path: Path) -> Config:
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: invalid YAML{where}") from None
    return parse_config(raw, str(path))


def read_secret(path_or_credential: Path) -> str:
    """Read a secret from a file, or from a systemd credential of that name
    ($CREDENTIALS_DIRECTORY/<name>, LoadCredential=) when the name has no directory part."""
    path = Path(path_or_credential)
    credentials_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials_dir and path.parent == Path(".") and (Path(credentials_dir) / path).is_file():
        path = Path(credentials_dir) / path
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read secret ({exc.strerror})") from None
