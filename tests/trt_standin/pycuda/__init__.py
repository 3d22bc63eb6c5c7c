"""Stand-in for PyCUDA (tests only): host memory plays the device, so the TensorRT stand-in
can run the engine on the CPU. Mirrors the calls edge/engines/tensorrt.py makes."""
