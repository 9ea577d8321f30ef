from google.protobuf import empty_pb2 as _empty_pb2
from pytest_cirque.service.proto import device_pb2 as _device_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateCirqueHomeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreateCirqueHomeResponse(_message.Message):
    __slots__ = ("home_id",)
    HOME_ID_FIELD_NUMBER: _ClassVar[int]
    home_id: str
    def __init__(self, home_id: _Optional[str] = ...) -> None: ...

class CreateCirqueDeviceRequest(_message.Message):
    __slots__ = ("home_id", "specification")
    HOME_ID_FIELD_NUMBER: _ClassVar[int]
    SPECIFICATION_FIELD_NUMBER: _ClassVar[int]
    home_id: str
    specification: _device_pb2.DeviceSpecification
    def __init__(self, home_id: _Optional[str] = ..., specification: _Optional[_Union[_device_pb2.DeviceSpecification, _Mapping]] = ...) -> None: ...

class CreateCirqueDeviceResponse(_message.Message):
    __slots__ = ("device",)
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    device: _device_pb2.CirqueDevice
    def __init__(self, device: _Optional[_Union[_device_pb2.CirqueDevice, _Mapping]] = ...) -> None: ...

class ExecuteDeviceCommandRequest(_message.Message):
    __slots__ = ("home_id", "device_id", "command", "streaming")
    HOME_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    STREAMING_FIELD_NUMBER: _ClassVar[int]
    home_id: str
    device_id: str
    command: str
    streaming: bool
    def __init__(self, home_id: _Optional[str] = ..., device_id: _Optional[str] = ..., command: _Optional[str] = ..., streaming: _Optional[bool] = ...) -> None: ...

class ExecuteDeviceCommandResponse(_message.Message):
    __slots__ = ("output",)
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    output: str
    def __init__(self, output: _Optional[str] = ...) -> None: ...

class ListCirqueHomesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCirqueHomesResponse(_message.Message):
    __slots__ = ("home_id",)
    HOME_ID_FIELD_NUMBER: _ClassVar[int]
    home_id: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, home_id: _Optional[_Iterable[str]] = ...) -> None: ...

class ListCirqueHomeDevicesRequest(_message.Message):
    __slots__ = ("home_id",)
    HOME_ID_FIELD_NUMBER: _ClassVar[int]
    home_id: str
    def __init__(self, home_id: _Optional[str] = ...) -> None: ...

class ListCirqueHomeDevicesResponse(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[_device_pb2.CirqueDevice]
    def __init__(self, devices: _Optional[_Iterable[_Union[_device_pb2.CirqueDevice, _Mapping]]] = ...) -> None: ...

class QueryCirqueDeviceRequest(_message.Message):
    __slots__ = ("home_id", "device_id")
    HOME_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    home_id: str
    device_id: str
    def __init__(self, home_id: _Optional[str] = ..., device_id: _Optional[str] = ...) -> None: ...

class QueryCirqueDeviceResponse(_message.Message):
    __slots__ = ("device",)
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    device: _device_pb2.CirqueDevice
    def __init__(self, device: _Optional[_Union[_device_pb2.CirqueDevice, _Mapping]] = ...) -> None: ...

class StopCirqueDeviceRequest(_message.Message):
    __slots__ = ("home_id", "device_id")
    HOME_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    home_id: str
    device_id: str
    def __init__(self, home_id: _Optional[str] = ..., device_id: _Optional[str] = ...) -> None: ...

class StopCirqueHomeRequest(_message.Message):
    __slots__ = ("home_id",)
    HOME_ID_FIELD_NUMBER: _ClassVar[int]
    home_id: str
    def __init__(self, home_id: _Optional[str] = ...) -> None: ...

class GetCirqueDeviceLogRequest(_message.Message):
    __slots__ = ("home_id", "device_id", "tail")
    HOME_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    home_id: str
    device_id: str
    tail: int
    def __init__(self, home_id: _Optional[str] = ..., device_id: _Optional[str] = ..., tail: _Optional[int] = ...) -> None: ...

class GetCirqueDeviceLogResponse(_message.Message):
    __slots__ = ("log",)
    LOG_FIELD_NUMBER: _ClassVar[int]
    log: str
    def __init__(self, log: _Optional[str] = ...) -> None: ...
