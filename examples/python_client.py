#!/usr/bin/python3
"""Calls primaps-server from Python (Debian's python3-grpcio).

    examples/python_client.py --server 127.0.0.1:50051 --image photo.jpg --out labels.png

The message classes come from `protoc --python_out` (the build writes them to
build/proto/python); the calls use gRPC's generic stubs, so grpc_tools is not
needed. Prints the health, the mask count and the model that answered, and
writes the pseudo labels as an 8-bit PNG (255 = ignore).
"""
import argparse
import importlib.util
import os
import sys

import grpc


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", default="127.0.0.1:50051")
    parser.add_argument("--image", required=True)
    parser.add_argument("--out", help="write the pseudo labels here (PNG)")
    parser.add_argument("--proto_path", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "build", "proto", "python"))
    args = parser.parse_args()
    sys.path.insert(0, args.proto_path)
    from primaps.v1 import service_pb2  # noqa: E402  (generated)
    # grpc/health/v1/health_pb2.py cannot be imported by package name: the
    # installed `grpc` package shadows it. Load it from its file.
    spec = importlib.util.spec_from_file_location(
        "health_pb2", os.path.join(args.proto_path, "grpc", "health", "v1", "health_pb2.py"))
    health_pb2 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(health_pb2)

    channel = grpc.insecure_channel(args.server)
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString)
    status = check(health_pb2.HealthCheckRequest(), timeout=10).status
    print("health:", health_pb2.HealthCheckResponse.ServingStatus.Name(status))

    with open(args.image, "rb") as f:
        request = service_pb2.ImageRequest(request_id=os.path.basename(args.image), png=True)
        request.image.encoded = f.read()
    pseudo_label = channel.unary_unary(
        "/primaps.v1.PriMaPsService/PseudoLabel",
        request_serializer=service_pb2.ImageRequest.SerializeToString,
        response_deserializer=service_pb2.PseudoLabelResponse.FromString)
    try:
        response = pseudo_label(request, timeout=60)
    except grpc.RpcError as e:
        print(f"PseudoLabel failed: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    print(f"{response.request_id}: {response.mask_count} masks, "
          f"{response.labels.width}x{response.labels.height} labels, "
          f"backbone {response.model.backbone}, head version {response.model.head_version}")
    if args.out:
        with open(args.out, "wb") as f:
            f.write(response.labels.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
