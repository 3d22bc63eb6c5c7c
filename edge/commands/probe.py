"""`video-analysis probe [--json]`: the hardware profile and the policy tiers it selects."""

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Optional

from edge.config import DEFAULT_CONFIG_PATH, Config, load_config
from edge.core.tier_agreement import OFF, TierAgreement
from edge.device.agreement import check_agreement
from edge.device.hardware import HardwareProfile, probe
from edge.device.tiers import TierSelection, load_manifest_or_empty, select_tiers
from edge.runtime.appliance import without_equivalents

log = logging.getLogger(__name__)


def _format_text(profile: HardwareProfile, selection: TierSelection, floor: float) -> str:
    lines = [
        f"platform:     {profile.platform} ({profile.model})",
        f"cpu:          {profile.cpu_model}, {profile.cpu_cores} cores, {profile.arch}",
        "cpu features: "
        + (
            ", ".join(
                name
                for name, present in (
                    ("avx2", profile.avx2),
                    ("avx512_vnni", profile.avx512_vnni),
                    ("avx_vnni", profile.avx_vnni),
                    ("neon", profile.neon),
                    ("dotprod", profile.dotprod),
                )
                if present
            )
            or "none of avx2/vnni/neon/dotprod"
        ),
        f"memory:       {profile.memory_total_mb} MB total, {profile.memory_available_mb} MB available",
    ]
    if profile.l4t:
        lines.append(f"L4T:          {profile.l4t} (JetPack {profile.jetpack or 'unknown'})")
    for gpu in profile.gpus:
        lines.append(f"gpu:          {gpu.name}, compute {gpu.compute_capability}, {gpu.memory_mb} MB")
    if profile.dla_cores:
        lines.append(f"dla cores:    {profile.dla_cores}")
    lines.append(f"tensorrt:     {profile.tensorrt_version or 'not importable'}; pycuda: {profile.pycuda}")
    providers = ", ".join(profile.onnxruntime_providers)
    lines.append(f"onnxruntime:  {profile.onnxruntime_version or 'not importable'} [{providers}]")
    if profile.temperature_c is not None:
        lines.append(f"temperature:  {profile.temperature_c:.1f} C (hottest zone)")
    lines.append(
        f"tiers for {selection.platform} (best first; agreement = mAP@0.5 with the best tier's detections, "
        f"floor {floor:.2f}):"
    )
    width = max((len(tier.name) for tier in selection.runnable), default=0)
    for tier in selection.runnable:
        lines.append(
            f"  run   [{tier.index}] {tier.name:<{width}}  {_agreement_text(selection.agreement_of(tier.index))}"
        )
    for dropped in selection.dropped:
        lines.append(f"  drop  [{dropped.index}] {dropped.name}: {dropped.reason}")
    return "\n".join(lines)


def _agreement_text(verdict: Optional[TierAgreement]) -> str:
    if verdict is None or verdict.agreement_map50 is None:
        return "agreement not judged" if verdict is None or verdict.basis != OFF else "agreement check off"
    where = f", {verdict.frames} frames of set {verdict.frame_set}" if verdict.frames else ""
    return f"agreement {verdict.agreement_map50:.3f} ({verdict.basis}{where})"


def _stderr_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def probe_command(args: argparse.Namespace) -> int:
    """`video-analysis probe [--json]`: the profile and the tiers the configured policy selects."""
    config_path = Path(getattr(args, "config", DEFAULT_CONFIG_PATH))
    if config_path == DEFAULT_CONFIG_PATH and not config_path.exists():
        config = Config.model_validate({})
    else:
        config = load_config(config_path)
    profile = probe()
    manifest = load_manifest_or_empty(config.models_dir)
    selection = select_tiers(config.policy, profile, manifest)
    for dropped in selection.dropped:
        log.info("tier %s dropped: %s", dropped.name, dropped.reason)
    # The same judgement as the daemon's start: from the cache, else measured once (progress on
    # stderr, so --json output stays clean).
    selection = check_agreement(config, selection, profile.fingerprint(), _stderr_progress)
    if selection.runnable:
        # And, as the daemon does, the tiers a cheaper equivalent input makes pointless on this
        # site (their speeds measured once, cached).
        selection, _ = without_equivalents(config, profile, selection)
    if getattr(args, "json", False):
        report = {
            "profile": profile.to_dict(),
            "tiers": dict(selection.to_dict(), agreement_floor=config.policy.agreement_floor),
        }
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print(_format_text(profile, selection, config.policy.agreement_floor))
    return 0
