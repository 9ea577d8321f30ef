"""What capabilities do to running nodes: one module per capability that acts on one.

Importing the package imports every driver module, so ``base.driver_for`` knows them all.
Capabilities whose whole effect is in the container's creation options have none.
"""

from pytest_cirque.capabilities.runtime import (  # noqa: F401  (each module registers its driver)
    thread,
    traffic_control,
    wifi,
    xvnc,
)
