"""Cirque's gRPC interface (package ``cirque.proto``) in our own .proto files.

capability.proto and device.proto have Cirque's messages field for field (names, numbers,
types); service.proto has the service, methods and messages its server and clients use,
fields numbered in the order they name them, ``GetCirqueDeviceLogRequest.tail`` a uint32.
tests/unit/test_service_topology.py holds the whole table, so a drift fails there.

The ``*_pb2*.py`` modules are generated from the .proto files beside them; regenerate
them from the repository root after changing a .proto::

    python -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. --pyi_out=. \
        pytest_cirque/service/proto/capability.proto \
        pytest_cirque/service/proto/device.proto \
        pytest_cirque/service/proto/service.proto

(then delete the empty capability_pb2_grpc.py and device_pb2_grpc.py).
"""
