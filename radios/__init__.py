"""Userspace radio media: WiFi, Thread and wired LAN relays between TAP endpoints in node namespaces."""
