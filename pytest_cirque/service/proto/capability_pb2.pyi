from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WeaveCapability(_message.Message):
    __slots__ = ("weave_certificate_path", "target_path")
    WEAVE_CERTIFICATE_PATH_FIELD_NUMBER: _ClassVar[int]
    TARGET_PATH_FIELD_NUMBER: _ClassVar[int]
    weave_certificate_path: str
    target_path: str
    def __init__(self, weave_certificate_path: _Optional[str] = ..., target_path: _Optional[str] = ...) -> None: ...

class ThreadCapability(_message.Message):
    __slots__ = ("petition_id", "rcp_mode", "daemons")
    PETITION_ID_FIELD_NUMBER: _ClassVar[int]
    RCP_MODE_FIELD_NUMBER: _ClassVar[int]
    DAEMONS_FIELD_NUMBER: _ClassVar[int]
    petition_id: int
    rcp_mode: bool
    daemons: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, petition_id: _Optional[int] = ..., rcp_mode: _Optional[bool] = ..., daemons: _Optional[_Iterable[str]] = ...) -> None: ...

class WiFiCapability(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class XvncCapability(_message.Message):
    __slots__ = ("localhost", "display_id", "docker_display_id")
    LOCALHOST_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_ID_FIELD_NUMBER: _ClassVar[int]
    DOCKER_DISPLAY_ID_FIELD_NUMBER: _ClassVar[int]
    localhost: bool
    display_id: int
    docker_display_id: int
    def __init__(self, localhost: _Optional[bool] = ..., display_id: _Optional[int] = ..., docker_display_id: _Optional[int] = ...) -> None: ...

class InteractiveCapability(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LanAccessCapability(_message.Message):
    __slots__ = ("internal_lan",)
    INTERNAL_LAN_FIELD_NUMBER: _ClassVar[int]
    internal_lan: bool
    def __init__(self, internal_lan: _Optional[bool] = ...) -> None: ...

class MountPair(_message.Message):
    __slots__ = ("host_path", "target_path")
    HOST_PATH_FIELD_NUMBER: _ClassVar[int]
    TARGET_PATH_FIELD_NUMBER: _ClassVar[int]
    host_path: str
    target_path: str
    def __init__(self, host_path: _Optional[str] = ..., target_path: _Optional[str] = ...) -> None: ...

class MountCapability(_message.Message):
    __slots__ = ("mount_pairs",)
    MOUNT_PAIRS_FIELD_NUMBER: _ClassVar[int]
    mount_pairs: _containers.RepeatedCompositeFieldContainer[MountPair]
    def __init__(self, mount_pairs: _Optional[_Iterable[_Union[MountPair, _Mapping]]] = ...) -> None: ...

class TrafficControlCapability(_message.Message):
    __slots__ = ("latency_ms", "loss_rate")
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    LOSS_RATE_FIELD_NUMBER: _ClassVar[int]
    latency_ms: int
    loss_rate: int
    def __init__(self, latency_ms: _Optional[int] = ..., loss_rate: _Optional[int] = ...) -> None: ...
