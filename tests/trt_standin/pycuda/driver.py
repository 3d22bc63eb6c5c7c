"""Stand-in for `pycuda.driver`: device allocations are numpy byte buffers addressed by fake
pointers, copies are synchronous (a stream only records that it was used)."""

import itertools
from typing import Dict, Tuple

import numpy as np

# What the simulated GPU reports; tests change these to simulate another device.
DEVICE_NAME = "Orin (stand-in)"
COMPUTE_CAPABILITY: Tuple[int, int] = (8, 7)

_MEMORY: Dict[int, np.ndarray] = {}
_NEXT_ADDRESS = [0x7F0000000000]
_STREAM_HANDLES = itertools.count(0x5000)


def _reserve(nbytes: int) -> int:
    """A fresh address range, 256-byte aligned like cudaMalloc's, never overlapping another."""
    address = _NEXT_ADDRESS[0]
    _NEXT_ADDRESS[0] += (nbytes + 0x1FF) // 0x100 * 0x100
    return address


class Error(Exception):
    pass


class LogicError(Error):
    pass


def init(flags: int = 0) -> None:
    return None


class Device:
    def __init__(self, ordinal: int) -> None:
        if ordinal != 0:
            raise LogicError("cuDeviceGet failed: invalid device ordinal")
        self.ordinal = ordinal

    @staticmethod
    def count() -> int:
        return 1

    def name(self) -> str:
        return DEVICE_NAME

    def compute_capability(self) -> Tuple[int, int]:
        return COMPUTE_CAPABILITY

    def total_memory(self) -> int:
        return 8 << 30

    def make_context(self) -> "Context":
        return Context()


class Context:
    def pop(self) -> None:
        return None

    def push(self) -> None:
        return None

    def synchronize(self) -> None:
        return None


class DeviceAllocation:
    """`int(allocation)` is the device pointer, as in PyCUDA."""

    def __init__(self, nbytes: int) -> None:
        self.address = _reserve(nbytes)
        _MEMORY[self.address] = np.zeros(nbytes, np.uint8)

    def __int__(self) -> int:
        return self.address

    __index__ = __int__

    def free(self) -> None:
        _MEMORY.pop(self.address, None)


def mem_alloc(nbytes: int) -> DeviceAllocation:
    if nbytes <= 0:
        raise LogicError("cuMemAlloc failed: invalid argument")
    return DeviceAllocation(int(nbytes))


def pagelocked_empty(shape, dtype, order: str = "C", mem_flags: int = 0) -> np.ndarray:
    return np.empty(shape, dtype, order=order)


class Stream:
    def __init__(self, flags: int = 0) -> None:
        self.handle = next(_STREAM_HANDLES)
        self.operations = 0

    def synchronize(self) -> None:
        return None

    def is_done(self) -> bool:
        return True


def device_buffer(pointer: int) -> np.ndarray:
    """The bytes behind a device pointer (used by the TensorRT stand-in's engine)."""
    for base, buffer in _MEMORY.items():
        if base <= pointer < base + buffer.nbytes:
            return buffer[pointer - base :]
    raise LogicError(f"invalid device pointer 0x{pointer:x}")


def _as_bytes(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8)


def memcpy_htod(dest, src: np.ndarray) -> None:
    data = _as_bytes(src)
    target = device_buffer(int(dest))
    if data.nbytes > target.nbytes:
        raise LogicError("cuMemcpyHtoD failed: copy larger than the allocation")
    target[: data.nbytes] = data


def memcpy_dtoh(dest: np.ndarray, src) -> None:
    if not dest.flags.c_contiguous:
        raise LogicError("memcpy_dtoh: destination must be contiguous")
    flat = dest.reshape(-1).view(np.uint8)
    flat[:] = device_buffer(int(src))[: flat.nbytes]


def memcpy_htod_async(dest, src: np.ndarray, stream: "Stream" = None) -> None:
    if stream is not None:
        stream.operations += 1
    memcpy_htod(dest, src)


def memcpy_dtoh_async(dest: np.ndarray, src, stream: "Stream" = None) -> None:
    if stream is not None:
        stream.operations += 1
    memcpy_dtoh(dest, src)
