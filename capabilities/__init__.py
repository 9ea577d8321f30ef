"""Capabilities: functions a node asks for (WiFi, TrafficControl, Mount, ...).

Each capability has two halves. ``model/`` holds what can be asked for: its name, its
parameters and their validation, what it adds to the container's creation, and the
registry the spec parser looks names up in; it is pure and imports nothing from Docker.
``runtime/`` holds what a capability does to a running node (start, stop, set up again
after a restart) and what the node got from it; it acts through ``NodeRuntime`` only.
"""
