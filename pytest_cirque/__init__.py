"""pytest-cirque: virtual homes of Docker device nodes for pytest, and a device-model simulator."""

__version__ = "0.1.0"
