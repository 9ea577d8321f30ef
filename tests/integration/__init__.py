"""Integration tests: real Docker and real peers (marked integration by tests/conftest.py)."""
