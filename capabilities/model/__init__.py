"""What a node can ask for: one module per capability; see base.py for the contract.

Importing the package imports every capability module, so the registry that
``base.lookup`` reads knows them all.
"""

from pytest_cirque.capabilities.model import (  # noqa: F401  (each module registers its capability)
    interactive,
    lan_access,
    mount,
    thread,
    traffic_control,
    weave,
    wifi,
    xvnc,
)
