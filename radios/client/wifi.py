"""The WiFi ops of a medium, typed: access points, stations and their control interface.

A Thread client would sit beside this one the same way: a ``MediumClient`` subclass
whose methods build the requests of ``radios.relay.protocol`` and return their replies.
"""

from __future__ import annotations

from pytest_cirque.radios.client.container import MediumClient
from pytest_cirque.radios.relay.protocol import (
    WIFI_INTERFACE,
    GetWifiStatus,
    StartAccessPoint,
    StartStation,
    StationCtrl,
    StationLog,
    WifiStatus,
)


class WifiClient(MediumClient):
    """What tests and capabilities ask of a WiFi medium (one started with wifi=True)."""

    LAYER = "wifi"

    def status(self) -> WifiStatus:
        """Every access point and station, with its state."""
        return self.request(GetWifiStatus())

    def log(self, station: str) -> list[str]:
        """The station's control-interface history: commands, replies and events."""
        return self.request(StationLog(name=station)).lines

    def ctrl(self, station: str, command: str) -> str:
        """One control-interface command (as wpa_cli sends it); the reply text."""
        return self.request(StationCtrl(name=station, command=command)).reply

    def add_station(self, name: str, *, mac: str, token: str, ifname: str = WIFI_INTERFACE) -> None:
        """Make the attached endpoint ``name`` a station. Its control socket is served by
        the relay its node runs, which must present ``token`` (a secret of that node)."""
        self.request(StartStation(name=name, mac=mac, token=token, ifname=ifname))

    def add_access_point(
        self,
        name: str,
        *,
        mac: str,
        ssid: str,
        psk: str | None = None,
        channel: int = 6,
        hidden: bool = False,
    ) -> str:
        """Make the attached endpoint ``name`` an access point (WPA2-PSK with ``psk``,
        open without); its BSSID."""
        request = StartAccessPoint(
            name=name, mac=mac, ssid=ssid, psk=psk, channel=channel, hidden=hidden
        )
        return self.request(request).bssid
