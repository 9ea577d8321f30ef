"""Userspace radio media: WiFi, Thread and wired LAN.

Each medium relays frames between TAP endpoints in the nodes' network namespaces.
"""
