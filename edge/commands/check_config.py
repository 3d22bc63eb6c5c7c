"""`video-analysis check-config`: validate the configuration (and its tiers against the model
manifest) and print the effective configuration."""

import argparse
import json
import sys
from pathlib import Path

import yaml

from edge.config import load_config
from edge.device.tiers import load_manifest_or_empty, validate_tiers


def run_check_config(args: argparse.Namespace) -> int:
    config = load_config(Path(args.config))
    validate_tiers(config, load_manifest_or_empty(config.models_dir), source=args.config)
    print(yaml.safe_dump(json.loads(config.model_dump_json()), sort_keys=False), end="")
    print(f"# {args.config}: OK", file=sys.stderr)
    return 0
