"""The aggregator's configuration file (YAML, pydantic schema, unknown keys refused), validated in
the edge's style: one line naming the file and the field, exit code 2.

Secrets are files: `mqtt.password_file` and `http.token_file` name a file, or a systemd
credential (a bare name looked up in `$CREDENTIALS_DIRECTORY`).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(Exception):
    """A configuration that cannot run; the message is one line naming the file and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsConfig(_Strict):
    ca_file: Path = Field(description="CA certificate that signed the broker's certificate")
    cert_file: Path | None = Field(None, description="client certificate, when the broker requires one")
    key_file: Path | None = Field(None, description="client key for cert_file")


class MqttConfig(_Strict):
    host: str = Field("localhost", min_length=1)
    port: int = Field(1883, ge=1, le=65535)
    prefix: str = Field("va", pattern=r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")
    client_id: str = Field("va-aggregator", min_length=1, max_length=64, description="unique per replica")
    username: str | None = None
    password_file: Path | None = Field(None, description="file holding the password, or a systemd credential name")
    tls: TlsConfig | None = None
    share_group: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_-]{1,64}$", description="replicas with the same group split the devices"
    )
    session_expiry_s: int = Field(3600, ge=0, description="how long the broker keeps this session's queue")
    receive_maximum: int = Field(1000, ge=1, le=65535, description="unacknowledged messages in flight to us")
    max_packet_bytes: int = Field(1024 * 1024, ge=4096, description="larger messages are dropped by the broker")


class DatabaseConfig(_Strict):
    url: str = Field(
        "sqlite:///var/lib/video-analysis-aggregator/aggregator.sqlite",
        description="sqlite:///PATH or postgresql://user@host/db",
    )


class HttpConfig(_Strict):
    enabled: bool = True
    bind: str = Field("127.0.0.1", description="address to listen on; anything but loopback needs token_file")
    port: int = Field(8080, ge=0, le=65535)
    token_file: Path | None = Field(None, description="bearer token required by the API")

    @model_validator(mode="after")
    def _token_off_loopback(self) -> HttpConfig:
        try:
            loopback = ipaddress.ip_address(self.bind).is_loopback
        except ValueError:
            loopback = self.bind == "localhost"
        if self.enabled and not loopback and self.token_file is None:
            raise ValueError(f"binding {self.bind} (not loopback) needs http.token_file")
        return self


class AggregatorConfig(_Strict):
    mqtt: MqttConfig = MqttConfig()
    database: DatabaseConfig = DatabaseConfig()
    http: HttpConfig = HttpConfig()


def resolve_secret_path(path: Path) -> Path:
    """A bare name that is not a file here is a systemd credential."""
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if not path.exists() and credentials and len(path.parts) == 1:
        return Path(credentials) / path
    return path


def read_secret(path: Path, where: str) -> str:
    resolved = resolve_secret_path(path)
    try:
        value = resolved.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {resolved}: {exc.strerror}") from None
    if not value:
        raise ConfigError(f"{where}: {resolved} is empty")
    return value


def parse_config(raw: Any, source: str = "config") -> AggregatorConfig:
    try:
        config = AggregatorConfig.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"]) or "(top level)"
        raise ConfigError(f"{source}: {field}: {error['msg']}") from None
    for where, path in (
        ("mqtt.tls.ca_file", config.mqtt.tls.ca_file if config.mqtt.tls else None),
        ("mqtt.tls.cert_file", config.mqtt.tls.cert_file if config.mqtt.tls else None),
        ("mqtt.tls.key_file", config.mqtt.tls.key_file if config.mqtt.tls else None),
    ):
        if path is not None and not path.is_file():
            raise ConfigError(f"{source}: {where}: {path} does not exist")
    if config.mqtt.password_file is not None:
        read_secret(config.mqtt.password_file, f"{source}: mqtt.password_file")
    if config.http.token_file is not None:
        read_secret(config.http.token_file, f"{source}: http.token_file")
    return config


def load_config(path: Path | None) -> AggregatorConfig:
    if path is None:
        return parse_config({}, "defaults")
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} not valid YAML") from None
    return parse_config(raw, str(path))


def effective(config: AggregatorConfig) -> dict[str, Any]:
    """The configuration with defaults filled in, as check-config prints it (secrets are files,
    so only their paths appear)."""
    return config.model_dump(mode="json")
