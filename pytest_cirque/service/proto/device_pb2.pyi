from pytest_cirque.service.proto import capability_pb2 as _capability_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeviceSpecification(_message.Message):
    __slots__ = ("device_type", "base_image", "weave_capability", "thread_capability", "wifi_capability", "xvnc_capability", "interactive_capability", "lan_access_capability", "mount_capability", "trafficcontrol_capability")
    DEVICE_TYPE_FIELD_NUMBER: _ClassVar[int]
    BASE_IMAGE_FIELD_NUMBER: _ClassVar[int]
    WEAVE_CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    THREAD_CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    WIFI_CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    XVNC_CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    INTERACTIVE_CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    LAN_ACCESS_CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    MOUNT_CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    TRAFFICCONTROL_CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    device_type: str
    base_image: str
    weave_capability: _capability_pb2.WeaveCapability
    thread_capability: _capability_pb2.ThreadCapability
    wifi_capability: _capability_pb2.WiFiCapability
    xvnc_capability: _capability_pb2.XvncCapability
    interactive_capability: _capability_pb2.InteractiveCapability
    lan_access_capability: _capability_pb2.LanAccessCapability
    mount_capability: _capability_pb2.MountCapability
    trafficcontrol_capability: _capability_pb2.TrafficControlCapability
    def __init__(self, device_type: _Optional[str] = ..., base_image: _Optional[str] = ..., weave_capability: _Optional[_Union[_capability_pb2.WeaveCapability, _Mapping]] = ..., thread_capability: _Optional[_Union[_capability_pb2.ThreadCapability, _Mapping]] = ..., wifi_capability: _Optional[_Union[_capability_pb2.WiFiCapability, _Mapping]] = ..., xvnc_capability: _Optional[_Union[_capability_pb2.XvncCapability, _Mapping]] = ..., interactive_capability: _Optional[_Union[_capability_pb2.InteractiveCapability, _Mapping]] = ..., lan_access_capability: _Optional[_Union[_capability_pb2.LanAccessCapability, _Mapping]] = ..., mount_capability: _Optional[_Union[_capability_pb2.MountCapability, _Mapping]] = ..., trafficcontrol_capability: _Optional[_Union[_capability_pb2.TrafficControlCapability, _Mapping]] = ...) -> None: ...

class DeviceDescription(_message.Message):
    __slots__ = ("ipv4_addr", "ssid", "psk")
    IPV4_ADDR_FIELD_NUMBER: _ClassVar[int]
    SSID_FIELD_NUMBER: _ClassVar[int]
    PSK_FIELD_NUMBER: _ClassVar[int]
    ipv4_addr: str
    ssid: str
    psk: str
    def __init__(self, ipv4_addr: _Optional[str] = ..., ssid: _Optional[str] = ..., psk: _Optional[str] = ...) -> None: ...

class CirqueDevice(_message.Message):
    __slots__ = ("device_specification", "device_id", "device_name", "device_description")
    DEVICE_SPECIFICATION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    DEVICE_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    device_specification: DeviceSpecification
    device_id: str
    device_name: str
    device_description: DeviceDescription
    def __init__(self, device_specification: _Optional[_Union[DeviceSpecification, _Mapping]] = ..., device_id: _Optional[str] = ..., device_name: _Optional[str] = ..., device_description: _Optional[_Union[DeviceDescription, _Mapping]] = ...) -> None: ...
