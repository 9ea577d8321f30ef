"""Unit tests: pure logic, no Docker."""
