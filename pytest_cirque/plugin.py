"""pytest plugin: fixtures, markers and options of pytest-cirque (filled in by the plugin work)."""
