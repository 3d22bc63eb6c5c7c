"""Running a deserialised TensorRT engine with pycuda: page-locked host buffers and device
buffers sized for max_batch, one CUDA stream, async copies; TensorRT 8.5+/10's named-tensor API
(set_input_shape, set_tensor_address, execute_async_v3) when present, else TensorRT 8's binding
API (set_binding_shape, execute_async_v2). Feature detection, not version parsing, decides."""

from dataclasses import dataclass
from typing import Any, List, Tuple

import numpy as np

from edge.core.errors import ModelError
from edge.detection.engines.tensorrt.build import TensorRTModules


@dataclass
class TensorBinding:
    name: str
    is_input: bool
    dtype: Any
    max_shape: Tuple[int, ...]
    host: np.ndarray
    device: Any


def engine_tensors(trt: Any, engine: Any) -> List[Tuple[str, bool, Any]]:
    """(name, is_input, numpy dtype) for every I/O tensor, in binding order."""
    if hasattr(engine, "num_io_tensors"):
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        return [
            (n, engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT, trt.nptype(engine.get_tensor_dtype(n)))
            for n in names
        ]
    return [
        (engine.get_binding_name(i), engine.binding_is_input(i), trt.nptype(engine.get_binding_dtype(i)))
        for i in range(engine.num_bindings)
    ]


class TensorRTRunner:
    """Runs one engine on batches of 1..max_batch: buffers sized once, one stream."""

    def __init__(self, modules: TensorRTModules, engine: Any, max_input_shape: Tuple[int, ...]) -> None:
        self.modules = modules
        self.engine = engine
        self.context = engine.create_execution_context()
        self.stream = modules.cuda.Stream()
        self.tensor_api = hasattr(self.context, "execute_async_v3") and hasattr(engine, "num_io_tensors")
        tensors = engine_tensors(modules.trt, engine)
        inputs = [t for t in tensors if t[1]]
        if len(inputs) != 1:
            raise ModelError(f"TensorRT engine: expected one input, found {len(inputs)}")
        self.input_name = inputs[0][0]
        # Output sizes for the largest batch come from the context once the input shape is set.
        self._set_input_shape(max_input_shape)
        self.bindings: List[TensorBinding] = []
        for name, is_input, dtype in tensors:
            shape = tuple(max_input_shape) if is_input else self._output_shape(name)
            host = modules.cuda.pagelocked_empty(int(np.prod(shape)), dtype)
            device = modules.cuda.mem_alloc(host.nbytes)
            self.bindings.append(TensorBinding(name, is_input, dtype, shape, host, device))
            if self.tensor_api:
                self.context.set_tensor_address(name, int(device))

    def _index(self, name: str) -> int:
        return [n for n, _, _ in engine_tensors(self.modules.trt, self.engine)].index(name)

    def _set_input_shape(self, shape: Tuple[int, ...]) -> None:
        if self.tensor_api:
            accepted = self.context.set_input_shape(self.input_name, tuple(shape))
        else:
            accepted = self.context.set_binding_shape(self._index(self.input_name), tuple(shape))
        if accepted is False:
            raise ModelError(f"TensorRT engine rejected input shape {tuple(shape)} (outside its profile)")

    def _output_shape(self, name: str) -> Tuple[int, ...]:
        if self.tensor_api:
            return tuple(self.context.get_tensor_shape(name))
        return tuple(self.context.get_binding_shape(self._index(name)))

    def run(self, tensor: np.ndarray) -> List[np.ndarray]:
        cuda = self.modules.cuda
        source = self.bindings[[b.is_input for b in self.bindings].index(True)]
        if tensor.shape[0] > source.max_shape[0] or tensor.shape[1:] != source.max_shape[1:]:
            raise ModelError(f"TensorRT engine: batch {tensor.shape} does not fit {source.max_shape}")
        self._set_input_shape(tuple(tensor.shape))
        staged = source.host[: tensor.size]
        staged[:] = tensor.astype(source.dtype, copy=False).reshape(-1)
        cuda.memcpy_htod_async(source.device, staged, self.stream)
        if self.tensor_api:
            ok = self.context.execute_async_v3(self.stream.handle)
        else:
            ok = self.context.execute_async_v2([int(b.device) for b in self.bindings], self.stream.handle)
        if not ok:
            raise ModelError("TensorRT engine: execution failed")
        results = []
        for binding in self.bindings:
            if binding.is_input:
                continue
            shape = self._output_shape(binding.name)
            view = binding.host[: int(np.prod(shape))]
            cuda.memcpy_dtoh_async(view, binding.device, self.stream)
            results.append((view, shape))
        self.stream.synchronize()
        return [view.reshape(shape).copy() for view, shape in results]

    @property
    def output_names(self) -> List[str]:
        return [b.name for b in self.bindings if not b.is_input]

    def close(self) -> None:
        for binding in self.bindings:
            binding.device.free()
        self.bindings = []



def input_declared_shape(trt: Any, engine: Any) -> Tuple[int, ...]:
    """The engine's input shape as declared (-1 for dynamic axes)."""
    for name, is_input, _ in engine_tensors(trt, engine):
        if is_input:
            if hasattr(engine, "num_io_tensors"):
                return tuple(engine.get_tensor_shape(name))
            return tuple(engine.get_binding_shape(engine.get_binding_index(name)))
    raise ModelError("TensorRT engine has no input")
