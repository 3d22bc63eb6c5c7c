"""Fold a quantised model's input normalisation into its first convolution.

The SSD takes uint8 pixels and normalises them in the graph (cast to float, x * 2/255 - 1). Once
quantised, that is a chain of float and quantise/dequantise steps over every input pixel (cast,
multiply, add, three quantisations) whose only result is the first convolution's uint8 input: the
pixel itself, offset by the zero point. Here the first convolution reads the pixels directly: its
input's DequantizeLinear takes the (transposed) uint8 input with the chain's scale and a zero point
of -offset / scale (127.5 for 2/255 and -1, rounded to 128), and the half step that rounding loses
is put back into the convolution's int32 bias (scale x sum of the kernel's int8 weights, exactly,
in bias units). ONNX Runtime then fuses the convolution with its input as before.

On SSDLite at 533x300 (one intra-op thread) the folded steps were 0.8 of 22.4 ms per frame in
ONNX Runtime's profile, and folded runs about 3 % faster (benchmarks/results/input_fold.md; this
VM's rounds move by 15 %). The folded input is exact where the chain rounded each pixel to the
nearest quantisation step (half a step either way, by parity).

A graph whose input does not run through such a chain (a single consumer at each step: Transpose,
Cast, Mul/Add by a scalar constant, QuantizeLinear/DequantizeLinear, ending in the quantised input
of convolutions only) is left as it is.
"""

from typing import Dict, List, Optional

import numpy as np
import onnx
from onnx import numpy_helper


class _Graph:
    def __init__(self, model: onnx.ModelProto) -> None:
        self.graph = model.graph
        self.initializers = {item.name: item for item in self.graph.initializer}
        self.producers = {output: node for node in self.graph.node for output in node.output}
        self.consumers: Dict[str, List[onnx.NodeProto]] = {}
        for node in self.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def constant(self, name: str) -> Optional[np.ndarray]:
        item = self.initializers.get(name)
        return None if item is None else numpy_helper.to_array(item)

    def value(self, name: str) -> Optional[np.ndarray]:
        """A constant operand: an initializer, or the DequantizeLinear of one."""
        direct = self.constant(name)
        if direct is not None:
            return direct.astype(np.float64)
        node = self.producers.get(name)
        if node is None or node.op_type != "DequantizeLinear":
            return None
        quantized, scale = self.constant(node.input[0]), self.constant(node.input[1])
        if quantized is None or scale is None:
            return None
        zero = self.constant(node.input[2]) if len(node.input) > 2 else 0
        return (quantized.astype(np.float64) - np.asarray(zero, np.float64)) * scale

    def add_initializer(self, array: np.ndarray, name: str) -> str:
        self.graph.initializer.append(numpy_helper.from_array(array, name))
        return name

    def prune(self) -> None:
        """Drop the nodes and initializers nothing reaches the outputs through any more."""
        needed = {output.name for output in self.graph.output}
        kept = []
        for node in reversed(list(self.graph.node)):
            if any(output in needed for output in node.output):
                kept.append(node)
                needed.update(node.input)
        del self.graph.node[:]
        self.graph.node.extend(reversed(kept))
        live = [item for item in self.graph.initializer if item.name in needed]
        del self.graph.initializer[:]
        self.graph.initializer.extend(live)


def fold_input_normalisation(model: onnx.ModelProto) -> bool:
    """Rewrite `model` (a QDQ model with a uint8 input) in place as described above; False when
    its input chain is not one this can fold (the model is then unchanged). The chain is run on
    all 256 pixel values, its own roundings included, so only a chain that is one scale and one
    offset is folded."""
    graph = _Graph(model)
    source = model.graph.input[0].name
    tensor, pixels = source, source
    values = np.arange(256, dtype=np.float64)  # what each pixel value has become so far
    while True:
        users = graph.consumers.get(tensor, [])
        if len(users) != 1:
            return False
        node = users[0]
        if node.op_type == "Transpose" and tensor == source:
            pixels = node.output[0]
        elif node.op_type in ("Mul", "Add"):
            others = [name for name in node.input if name != tensor]
            operand = graph.value(others[0]) if len(others) == 1 else None
            if operand is None or operand.size != 1:
                return False
            values = values * float(operand) if node.op_type == "Mul" else values + float(operand)
        elif node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            step, zero = graph.constant(node.input[1]), graph.constant(node.input[2])
            if step is None or zero is None or step.size != 1:
                return False
            after = graph.consumers.get(node.output[0], [])
            convs = graph.consumers.get(after[0].output[0], []) if len(after) == 1 else []
            if node.op_type == "QuantizeLinear" and after and after[0].op_type == "DequantizeLinear" and convs:
                if all(conv.op_type == "Conv" for conv in convs):
                    return _rewire(graph, after[0], convs, pixels, values / float(step))
            if node.op_type == "QuantizeLinear":
                limits = np.iinfo(zero.dtype)
                values = np.clip(np.round(values / float(step)) + int(zero), limits.min, limits.max)
            else:
                values = (values - int(zero)) * float(step)
        elif node.op_type != "Cast":
            return False
        tensor = node.output[0]


def _rewire(
    graph: _Graph, dequantize: onnx.NodeProto, convs: List[onnx.NodeProto], pixels: str, steps: np.ndarray
) -> bool:
    """`steps`: each pixel value's convolution input in quantisation steps, before rounding."""
    exact_zero = np.arange(256) - steps  # the zero point that reads pixel x as exactly that
    if np.ptp(exact_zero) > 1e-3 or not 0.0 <= exact_zero[0] <= 255.0:
        return False  # not one scale and one offset, or an offset no uint8 zero point holds
    zero = int(np.round(exact_zero[0]))
    dequantize.input[0] = pixels
    dequantize.input[2] = graph.add_initializer(np.array(zero, np.uint8), dequantize.input[2] + "_folded")
    shift = float(zero - exact_zero[0])  # the input now reads `shift` steps low
    for conv in convs:
        _correct_bias(graph, conv, shift)
    graph.prune()
    return True


def _correct_bias(graph: _Graph, conv: onnx.NodeProto, shift: float) -> None:
    """Add `shift` input steps times the kernel's weights to the conv's int32 bias: the bias's
    scale is the input's times the weights', so in bias units that is shift x sum(int8 weights)."""
    if len(conv.input) < 3:
        return
    weights_node, bias_node = graph.producers.get(conv.input[1]), graph.producers.get(conv.input[2])
    if weights_node is None or bias_node is None:
        return
    weights, bias = graph.constant(weights_node.input[0]), graph.constant(bias_node.input[0])
    if weights is None or bias is None or bias.dtype != np.int32:
        return
    weight_zero = graph.constant(weights_node.input[2]) if len(weights_node.input) > 2 else None
    if weight_zero is not None and np.any(weight_zero != 0):
        return
    sums = weights.astype(np.int64).reshape(weights.shape[0], -1).sum(axis=1)
    corrected = (bias.astype(np.int64) + np.round(shift * sums).astype(np.int64)).astype(np.int32)
    bias_node.input[0] = graph.add_initializer(corrected, bias_node.input[0] + "_folded")
