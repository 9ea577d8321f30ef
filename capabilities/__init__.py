"""Node capabilities, one module each; see base.py for the contract."""
