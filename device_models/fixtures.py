"""pytest fixtures of the device-model simulator (filled in by the simulator work)."""
