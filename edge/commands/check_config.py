"""`video-analysis check-config`: validate the configuration and everything `run` needs before it
can start (cameras, the model manifest and the files of the tiers this device would run, every
secret file readable, the state directory writable), then print the effective configuration
with URL credentials masked. Exits with `run`'s code when `run` could not start (2 config or
secret, 3 model), so systemd's ExecStartPre stops a start that cannot succeed.

Secrets are read only to check they can be read; their contents are never printed.
"""

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List

import yaml

from edge.config import Config, load_config, mask_urls, read_secret
from edge.core.errors import ConfigError
from edge.detection.manifest import DEFAULT_MODELS_DIR, load_manifest
from edge.device.hardware import probe
from edge.device.tiers import select_tiers, validate_tiers


def _secret_files(config: Config) -> List[Path]:
    files = [camera.credentials_file for camera in config.cameras if camera.credentials_file is not None]
    if config.mqtt.password_file is not None:
        files.append(config.mqtt.password_file)
    tls = config.mqtt.tls
    if tls is not None:
        files.extend(path for path in (tls.ca_file, tls.cert_file, tls.key_file) if path is not None)
    return files


def _check_secrets(config: Config) -> None:
    if config.mqtt.password_file is not None and not config.mqtt.username:
        raise ConfigError("mqtt.password_file is set but mqtt.username is not")
    for path in _secret_files(config):
        read_secret(path)
    for camera in config.cameras:
        camera.source_url()  # a credentials file must hold user:password


def _check_state_dir(config: Config) -> None:
    """The state directory, or the nearest existing parent `run` would create it in, is writable."""
    path = config.state_dir
    while not path.exists() and path != path.parent:
        path = path.parent
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"state_dir {config.state_dir}: not writable by this user ({path})")


def _check_can_start(config: Config, source: str) -> None:
    """What `run` checks before it starts, in its order: the manifest exists (else exit 3), tier
    sizes fit it, cameras, secrets, state directory, and the model files of the tiers this device
    would run are present and intact (checksums)."""
    manifest = load_manifest(config.models_dir or DEFAULT_MODELS_DIR)
    validate_tiers(config, manifest, source=source)
    if not config.cameras:
        raise ConfigError(f"{source}: cameras: at least one camera is needed to run")
    _check_secrets(config)
    _check_state_dir(config)
    selection = select_tiers(config.policy, probe(), manifest)
    if not selection.runnable:
        raise ConfigError(f"{source}: policy.tiers: no tier of {selection.platform} can run on this device")
    for model in sorted({tier.model for tier in selection.runnable}):
        spec = manifest[model]
        for role in spec.files:
            spec.file(role)


def effective_config(config: Config) -> Dict[str, Any]:
    """The configuration as printed: every key with its value, URL credentials masked."""
    data: Dict[str, Any] = json.loads(config.model_dump_json())
    for camera in data["cameras"]:
        camera["source"] = mask_urls(camera["source"])
    return data


def run_check_config(args: argparse.Namespace) -> int:
    config = load_config(Path(args.config))
    _check_can_start(config, args.config)
    if not getattr(args, "quiet", False):
        print(yaml.safe_dump(effective_config(config), sort_keys=False), end="")
    print(f"# {args.config}: OK", file=sys.stderr)
    return 0
