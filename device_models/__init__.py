"""Device models: the JSON/YAML model format, the QuickJS script engine, the simulator and stock models."""
