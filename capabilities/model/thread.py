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

RCP mode (``rcp_mode: true`` or ``radio: rcp``) gives the node what a Thread chip on a
USB port gives a device: /dev/ttyUSB0, a serial line speaking spinel over HDLC to the
node's own simulated RCP on the home's medium. Who drives that line is ``thread_host``:

- ``cirque``: our ot-daemon runs on it (``spinel+hdlc+uart:///dev/ttyUSB0``), commissioned
  as above, so ``ot-ctl`` works as without RCP mode;
- ``image``: nothing more is started; the image's own Thread host (otbr-agent, wpantund,
  its own ot-daemon) opens /dev/ttyUSB0, as a smart-home SDK image does on a device. The
  line appears once the node runs, after the node's command has started: the host must
  wait for it, as a device's init waits for its USB device. Commissioning is then that
  host's business (the home's dataset is ``home.medium("thread").as_thread().dataset()``):
  ``commissioned: true`` is refused there.

Without ``thread_host`` it is ``cirque`` on the project's node image (``base``, which
Cirque's ``generic_node_image`` names) and ``image`` on any other image. Without RCP mode
our ot-daemon always runs, over a pseudo-terminal of its own, and ``ot-ctl`` works at once.

A border router (``border_router: true``) routes between the Thread network and the
node's IPv6 LAN (``docker_network: ipv6``): it is infrastructure, so the home starts its
Thread at once (``ifconfig up``, ``thread start``), and once it leads or routes it
publishes an off-mesh-routable prefix (``omr_prefix``: a sibling /64 of its LAN's, in the
same unique-local /48) with ``prefix add PREFIX paros``, an external route to its LAN's
/64 with ``route add LAN s``, and ``netdata register``. Every Thread node then takes an
address in that prefix and a kernel route to the LAN over wpan0; the home gives each other
node on the border router's LAN network a route to the prefix through the border router
(from a helper holding NET_ADMIN alone, in that node's network namespace: the LAN nodes
need no privilege). Nodes reach each other only on the ``lan-access`` segment (LanAccess),
so give the border router and its LAN peers LanAccess. A border router needs the home's
dataset, a router-eligible ``mode`` and our Thread host.

Parameters: ``position`` (metres), ``commissioned``, ``mode`` (``rdn``: a router-eligible
full device, ``-``: a sleepy end device, or other letters of ``rdn``), ``channel``
(11..26), ``panid`` (16-bit), ``network_key`` (16 bytes of hex), ``extended_panid``
(8 bytes of hex), ``network_name``, ``rcp_mode``/``radio: rcp`` (default false),
``thread_host`` (``cirque`` or ``image``, RCP mode only), ``border_router`` (default
false).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar

from pytest_cirque.capabilities.model.base import (
    Capability,
    ContainerConfig,
    Params,
    register,
    subject,
)
from pytest_cirque.capabilities.model.wifi import _position
from pytest_cirque.core.errors import SpecError
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

#: What Debian-like images have on their PATH, after which OpenThread's binaries come.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Dataset fields a node may set for itself, and their sizes in bytes where hex.
HEX_FIELDS = {"network_key": 16, "extended_panid": 8}
#: Who drives an RCP-mode node's serial line: our ot-daemon, or the image's own host.
CIRQUE_HOST = "cirque"
IMAGE_HOST = "image"
THREAD_HOSTS = (CIRQUE_HOST, IMAGE_HOST)
#: Project node images that start no Thread host of their own: in RCP mode ours runs.
CIRQUE_HOST_IMAGES = frozenset({"base"})
#: The serial line of a node in RCP mode, where a Thread chip on USB would be.
RCP_TTY = "/dev/ttyUSB0"
#: The ``docker_network`` of a node with an IPv6 LAN (spec.NETWORK_IPV6: the spec sits
#: above this layer).
IPV6_NETWORK = "ipv6"


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
        commissioned: bool | None,
        mode: str,
        dataset: dict[str, Any],
        rcp_mode: bool,
        thread_host: str | None = None,
        border_router: bool = False,
    ) -> None:
        super().__init__(
            position=position,
            commissioned=commissioned,
            mode=mode,
            rcp_mode=rcp_mode,
            thread_host=thread_host,
            border_router=border_router,
            **dataset,
        )
        self.position = position
        #: Whether our host gives the node the home's dataset (None: not said, which is
        #: yes where our host runs).
        self.commissioned = commissioned is not False
        self.commissioned_said = commissioned
        self.mode = mode
        #: Dataset fields this node sets itself (over the home's).
        self.dataset = dataset
        self.rcp_mode = rcp_mode
        #: "cirque", "image", or None: chosen by the node's image (see ``host``).
        self.thread_host = thread_host
        self.border_router = border_router

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None, where: str) -> Thread:
        read = Params(params, where, cls.name)
        position = _position(read)
        said = read.has("commissioned")
        commissioned = read.boolean("commissioned", default=True) if said else None
        mode = read.text("mode", default="rdn")
        if not check_mode(mode):
            raise read.error(
                "mode",
                f"must be 'rdn' (router-eligible), '-' (sleepy end device) or "
                f"other letters of rdn (got {mode!r})",
            )
        _, said_rcp = read.raw("rcp_mode")
        rcp_mode = read.boolean("rcp_mode", default=False)
        _, radio = read.raw("radio")
        if radio is not None and radio != "rcp":
            raise read.error("radio", f"must be 'rcp', the only radio there is (got {radio!r})")
        if radio == "rcp":
            if said_rcp is False:
                raise read.error("radio", "'rcp' asks for RCP mode and rcp_mode is false; keep one")
            rcp_mode = True
        thread_host = read.text("thread_host")
        if thread_host is not None and thread_host not in THREAD_HOSTS:
            raise read.error(
                "thread_host",
                f"must be 'cirque' (our ot-daemon drives {RCP_TTY}) or 'image' (the image's "
                f"own Thread host does) (got {thread_host!r})",
            )
        if thread_host == IMAGE_HOST and not rcp_mode:
            raise read.error(
                "thread_host",
                f"'image' needs rcp_mode: true: the image's own host drives {RCP_TTY}, "
                "which only RCP mode gives the node",
            )
        border_router = read.boolean("border_router", default=False)
        if border_router and commissioned is False:
            raise read.error(
                "border_router",
                "a border router is infrastructure the home starts on its own network: it "
                "needs the home's dataset; drop commissioned: false",
            )
        if border_router and "r" not in mode:
            raise read.error(
                "border_router",
                f"a border router must be able to route: give it mode 'rdn' (got {mode!r})",
            )
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
        return cls(position, commissioned, mode, dataset, rcp_mode, thread_host, border_router)

    def host(self, image: str) -> str:
        """Who drives the node's radio on a node of ``image`` (the spec's image name):
        ``cirque`` (our ot-daemon) or ``image`` (the image's own host, RCP mode only)."""
        if not self.rcp_mode:
            return CIRQUE_HOST
        if self.thread_host is not None:
            return self.thread_host
        return CIRQUE_HOST if image in CIRQUE_HOST_IMAGES else IMAGE_HOST

    def check_node(self, where: str, image: str, docker_network: str) -> None:
        if self.host(image) == IMAGE_HOST:
            if self.commissioned_said:
                raise SpecError(
                    f"{subject(where, self.name)} field 'commissioned': image {image!r} drives "
                    f"{RCP_TTY} with its own Thread host, which commissions itself; drop "
                    "commissioned, or give thread_host: cirque to run ours"
                )
            if self.border_router:
                raise SpecError(
                    f"{subject(where, self.name)} field 'border_router': image {image!r} "
                    f"drives {RCP_TTY} with its own Thread host, and the home publishes a "
                    "border router's prefix through ours; give thread_host: cirque"
                )
        if self.border_router and docker_network != IPV6_NETWORK:
            raise SpecError(
                f"{subject(where, self.name)} field 'border_router': routes between Thread "
                f"and an IPv6 LAN, and the node's LAN ({docker_network!r}) has no IPv6; give "
                f"the node docker_network: {IPV6_NETWORK}"
            )

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
        # OpenThread's binaries first, in front of what another capability put first (the
        # WiFi tools), not instead of it.
        path = config.environment.get("PATH", DEFAULT_PATH)
        config.environment["PATH"] = f"{THREAD_BIN_DIR}:{path}"
        if self.border_router:
            # The border router's kernel forwards between wpan0 and its LAN (eth0).
            config.sysctls["net.ipv6.conf.all.forwarding"] = "1"


def omr_prefix(lan: str) -> str:
    """The off-mesh-routable /64 a border router on the IPv6 LAN ``lan`` (its /64, or an
    address in it) publishes: the LAN's sibling in the same unique-local /48 (the last bit
    of the subnet ID flipped), as a home router hands a subnet of its prefix to a network
    behind it. Every border router of one LAN network publishes the same prefix, and no
    other network of the home has it (their /48s are random)."""
    first = int(ipaddress.IPv6Network(lan, strict=False).network_address) >> 64 << 64
    return str(ipaddress.IPv6Network((first ^ (1 << 64), 64)))


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
