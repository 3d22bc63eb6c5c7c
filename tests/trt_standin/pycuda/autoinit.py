"""Stand-in for `pycuda.autoinit`: initialises the driver and makes a context on device 0."""

from pycuda import driver as _driver

_driver.init()
device = _driver.Device(0)
context = device.make_context()
