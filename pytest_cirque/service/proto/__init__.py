"""Cirque's gRPC interface (package ``cirque.proto``), written from its clients' use of it.

The ``*_pb2*.py`` modules are generated from the .proto files beside them; regenerate
them from the repository root after changing a .proto::

    python -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. --pyi_out=. \
        pytest_cirque/service/proto/capability.proto \
        pytest_cirque/service/proto/device.proto \
        pytest_cirque/service/proto/service.proto

(then delete the empty capability_pb2_grpc.py and device_pb2_grpc.py).
"""
