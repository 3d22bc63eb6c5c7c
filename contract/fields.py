"""Strict JSON field readers shared by the envelope and the bodies.

Each reader takes the decoded object, the key and `where` (the path so far, e.g.
`va/dev1/cam1/counts counts.objects.person`) and raises `MessageError` naming `where.key`.
"""

import json
import math
from typing import Any, Dict, Mapping, Optional, Tuple

from contract.errors import MessageError


def dumps(value: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON; NaN and infinity are refused (the contract says numbers are finite)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode("utf-8")


def loads(payload: bytes, what: str) -> Dict[str, Any]:
    try:
        value = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise MessageError(f"{what}: not UTF-8 JSON ({exc.__class__.__name__})") from None
    if not isinstance(value, dict):
        raise MessageError(f"{what}: expected a JSON object")
    return value


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def require(obj: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in obj:
        raise MessageError(f"{where}: missing {key!r}")
    return obj[key]


def integer(obj: Mapping[str, Any], key: str, where: str, minimum: int = 0) -> int:
    value = require(obj, key, where)
    if not is_int(value) or value < minimum:
        raise MessageError(f"{where}.{key}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def number(obj: Mapping[str, Any], key: str, where: str) -> float:
    value = require(obj, key, where)
    if not is_number(value) or value < 0:
        raise MessageError(f"{where}.{key}: expected a number >= 0, got {value!r}")
    return float(value)


def optional_number(obj: Mapping[str, Any], key: str, where: str) -> Optional[float]:
    """A number >= 0 or an explicit null (the key itself is required)."""
    if require(obj, key, where) is None:
        return None
    return number(obj, key, where)


def text(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = require(obj, key, where)
    if not isinstance(value, str) or not value:
        raise MessageError(f"{where}.{key}: expected a non-empty string, got {value!r}")
    return value


def mapping(obj: Mapping[str, Any], key: str, where: str) -> Dict[str, Any]:
    value = require(obj, key, where)
    if not isinstance(value, dict):
        raise MessageError(f"{where}.{key}: expected an object")
    return value


def as_object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise MessageError(f"{where}: expected an object")
    return value


def int_pair(obj: Mapping[str, Any], key: str, where: str, minimum: int) -> Tuple[int, int]:
    value = require(obj, key, where)
    if not (isinstance(value, list) and len(value) == 2 and all(is_int(v) and v >= minimum for v in value)):
        raise MessageError(f"{where}.{key}: expected [a, b], two integers >= {minimum}, got {value!r}")
    return int(value[0]), int(value[1])


def number_pair(obj: Mapping[str, Any], key: str, where: str, minimum: float) -> Tuple[float, float]:
    value = require(obj, key, where)
    if not (isinstance(value, list) and len(value) == 2 and all(is_number(v) and v >= minimum for v in value)):
        raise MessageError(f"{where}.{key}: expected [a, b], two numbers >= {minimum}, got {value!r}")
    return float(value[0]), float(value[1])
