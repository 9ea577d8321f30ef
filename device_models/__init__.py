"""Device models: the JSON/YAML model format, the QuickJS script engine, the simulator.

The stock models live in stock/ as data.
"""
