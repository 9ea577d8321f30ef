"""The medium relay and everything it runs: link model, frames, pcap, WPA, the WiFi
layer, the control interface and the wire protocol.

Runs inside the medium container and its attach helpers, so it uses only the standard
library, python3-cryptography and pytest_cirque.core.errors; it is shipped whole.
"""
