"""The bottom layer: errors, identity and labels, waits, and the Docker backend.

Nothing here imports a higher layer; this package's own __init__ imports nothing, so the
medium relay can carry core/errors.py into its container alone.
"""
