"""Thread: the node's radio on the home's simulated Thread (IEEE 802.15.4) medium.

A Thread node runs OpenThread's own host daemon (``ot-daemon``) over a simulated radio
co-processor (``ot-rcp``): it gets a real ``wpan0`` and the daemon's socket
/run/openthread-wpan0.sock, so ``ot-ctl`` (first on the node's PATH) and the node's own
software drive it as on real hardware. OpenThread's binaries come from the home's Thread
medium, read-only at /opt/cirque-thread/bin, so any node image works.

Unless ``commissioned: false``, the node is given the home's dataset (one network per
home: random network key, extended PAN ID, mesh-local prefix, channel and PAN ID) but
Thread is not started: ``ot-ctl ifconfig up`` and ``ot-ctl thread start`` on each node
form one network. Fields given here replace that node's fields of the dataset.

Parameters: ``position`` (metres), ``commissioned``, ``mode`` (``rdn``: a router-eligible
full device, ``-``: a sleepy end device, or other letters of ``rdn``), ``channel``
(11..26), ``panid`` (16-bit), ``network_key`` (16 bytes of hex), ``extended_panid``
(8 bytes of hex), ``network_name``, ``rcp_mode``/``radio: rcp`` (what every node is:
accepted), ``border_router`` (not yet).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar

from pytest_cirque.capabilities.model.base import Capability, ContainerConfig, Params, register
from pytest_cirque.capabilities.model.wifi import _position
from pytest_cirque.radios.relay.protocol import (
    THREAD_BIN_DIR,
    THREAD_CONTROL_SOCKET,
    THREAD_INTERFACE,
    THREAD_MEDIUM,
    THREAD_NODE_DIR,
    THREAD_RADIO_INTERFACE,
    THREAD_VOLUME,
    ThreadDataset,
)
from pytest_cirque.radios.relay.thread import CHANNELS, is_hex

#: The node's PATH: OpenThread's binaries first, then what Debian-like images have.
NODE_PATH = f"{THREAD_BIN_DIR}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Dataset fields a node may set for itself, and their sizes in bytes where hex.
HEX_FIELDS = {"network_key": 16, "extended_panid": 8}


def check_mode(value: str) -> bool:
    """Whether ``value`` is an OpenThread link mode: ``-`` or distinct letters of rdn."""
    return value == "-" or (
        bool(value) and set(value) <= set("rdn") and len(set(value)) == len(value)
    )


@register
class Thread(Capability):
    """Node on the home's simulated Thread network."""

    name = "Thread"
    medium = THREAD_MEDIUM
    #: A Thread node brings the medium to its home: Thread nodes need no access point.
    provides_medium = True
    #: The node-side network device ot-daemon makes, and the one that carries its radio.
    interface: ClassVar[str] = THREAD_INTERFACE
    radio_interface: ClassVar[str] = THREAD_RADIO_INTERFACE
    #: The OpenThread daemon's control socket (ot-ctl connects to it).
    control_socket: ClassVar[str] = THREAD_CONTROL_SOCKET

    def __init__(
        self,
        position: list[float],
        commissioned: bool,
        mode: str,
        dataset: dict[str, Any],
        rcp_mode: bool,
    ) -> None:
        super().__init__(
            position=position, commissioned=commissioned, mode=mode, rcp_mode=rcp_mode, **dataset
        )
        self.position = position
        self.commissioned = commissioned
        self.mode = mode
        #: Dataset fields this node sets itself (over the home's).
        self.dataset = dataset
        self.rcp_mode = rcp_mode

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None, where: str) -> Thread:
        read = Params(params, where, cls.name)
        position = _position(read)
        commissioned = read.boolean("commissioned", default=True)
        mode = read.text("mode", default="rdn")
        if not check_mode(mode):
            raise read.error(
                "mode",
                f"must be 'rdn' (router-eligible), '-' (sleepy end device) or "
                f"other letters of rdn (got {mode!r})",
            )
        rcp_mode = read.boolean("rcp_mode", default=True)
        _, radio = read.raw("radio")
        if radio is not None and radio != "rcp":
            raise read.error("radio", f"must be 'rcp', the only radio there is (got {radio!r})")
        if read.boolean("border_router", default=False):
            raise read.error("border_router", "not yet: a Thread border router is not simulated")
        dataset: dict[str, Any] = {}
        channel = read.integer("channel")
        if channel is not None:
            if channel not in CHANNELS:
                raise read.error("channel", f"must be an 802.15.4 channel 11..26 (got {channel})")
            dataset["channel"] = channel
        panid = read.raw("panid", aliases=("pan_id",))[1]
        if panid is not None:
            number = _panid(panid)
            if number is None:
                raise read.error(
                    "panid", f"must be a 16-bit PAN ID such as 0x1234, not 0xffff (got {panid!r})"
                )
            dataset["panid"] = number
        for field_name, size in HEX_FIELDS.items():
            value = read.raw(field_name)[1]
            if value is not None:
                text = value[2:] if isinstance(value, str) and value[:2] in ("0x", "0X") else value
                if not is_hex(text, size):
                    raise read.error(
                        field_name,
                        f"must be {size} bytes of hex, {2 * size} digits (got {value!r})",
                    )
                dataset[field_name] = text.lower()
        network_name = read.text("network_name")
        if network_name is not None:
            if len(network_name.encode()) > 16:
                raise read.error("network_name", f"must be 1..16 bytes (got {network_name!r})")
            dataset["network_name"] = network_name
        read.done()
        return cls(position, commissioned, mode, dataset, rcp_mode)

    def dataset_for(self, home: ThreadDataset) -> ThreadDataset:
        """The dataset this node is commissioned with: the home's, with its own fields."""
        return replace(home, **self.dataset)

    def configure(self, config: ContainerConfig, node_name: str) -> None:
        # ot-daemon creates wpan0 (a TUN device) and sets its addresses and routes.
        config.cap_add.append("NET_ADMIN")
        config.devices.append("/dev/net/tun:/dev/net/tun:rwm")
        # wpan0 is IPv6 only, and the radio sends from ot-radio0's IPv6 link-local
        # address, usable at once (no duplicate detection to wait for: the medium carries
        # radio datagrams only, so no other node could answer one).
        config.sysctls["net.ipv6.conf.all.disable_ipv6"] = "0"
        config.sysctls["net.ipv6.conf.default.disable_ipv6"] = "0"
        config.sysctls["net.ipv6.conf.default.accept_dad"] = "0"
        # Read-only: OpenThread's binaries, which the home's Thread medium copies in.
        config.home_volumes[THREAD_VOLUME] = (THREAD_NODE_DIR, True)
        config.environment["PATH"] = NODE_PATH


def _panid(value: object) -> int | None:
    """A PAN ID given as a number or as hex text (``0x1234``), or None when it is none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = int(value, 16)
        except ValueError:
            return None
    if not isinstance(value, int) or not 0 <= value < 0xFFFF:
        return None
    return value
