"""A small stand-in for grpcurl (https://github.com/fullstorydev/grpcurl, a Go binary that Debian does
not package) covering the calls the docs show, built on the project's generated stubs:

    python tools/grpcurl.py -plaintext localhost:8001 list [SERVICE]
    python tools/grpcurl.py -plaintext [-d JSON|@] [-H 'name: value'] [-emit-defaults] [-max-time S] \\
        localhost:8001 SERVICE/METHOD

It prints what grpcurl prints: the reply in the protobuf JSON mapping (JSON field names, fields at their
default left out unless -emit-defaults, int64 as strings, map keys sorted, two-space indent); on an error,
grpcurl's "ERROR:" block on stderr and its exit code, 64 + the status code. ``-d`` takes the .proto or
the JSON names, bytes as base64, ``@`` reads stdin. The services it knows are those whose stubs the
project ships (OIP, dendrite.v1.Predict) and the gRPC health service; ``list`` asks the server by reflection.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

import grpc  # noqa: E402
from google.protobuf import descriptor_pool, json_format, message_factory  # noqa: E402


def load_services() -> descriptor_pool.DescriptorPool:
    """Importing the generated modules registers their services in protobuf's default pool."""
    import grpc_health.v1.health_pb2  # noqa: F401

    import app.transports.grpc.generated.dendrite.v1.predict_pb2  # noqa: F401
    import app.transports.grpc.generated.inference.open_inference_grpc_pb2  # noqa: F401

    return descriptor_pool.Default()


def to_json(message, emit_defaults: bool) -> str:
    data = json_format.MessageToDict(message, always_print_fields_with_no_presence=emit_defaults)
    return json.dumps(sort_maps(data, message.DESCRIPTOR), indent=2, ensure_ascii=False)


def sort_maps(data, descriptor):
    """grpcurl (Go's jsonpb) prints map entries sorted by key; Python keeps their wire order."""
    if not isinstance(data, dict):
        return data
    by_json_name = {f.json_name: f for f in descriptor.fields}
    out = {}
    for key, value in data.items():
        field = by_json_name.get(key)
        if field is None or field.message_type is None:
            out[key] = value
        elif field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            out[key] = {k: sort_maps(value[k], value_field.message_type) if value_field.message_type else value[k]
                        for k in sorted(value)}  # fmt: skip
        elif isinstance(value, list):
            out[key] = [sort_maps(v, field.message_type) for v in value]
        else:
            out[key] = sort_maps(value, field.message_type)
    return out


def fail(code: grpc.StatusCode, details: str) -> int:
    # Go's codes.Code names: NOT_FOUND -> NotFound
    name = "".join(part.capitalize() for part in code.name.split("_"))
    print(f"ERROR:\n  Code: {name}\n  Message: {details}", file=sys.stderr)
    return 64 + code.value[0]


def list_services(channel: grpc.Channel, timeout: float | None) -> list[str]:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    reply = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=timeout)))
    return sorted(s.name for s in reply.list_services_response.service)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="grpcurl", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("-plaintext", action="store_true", help="no TLS (the only mode this stand-in speaks)")
    parser.add_argument("-d", dest="data", help="request as JSON; @ reads it from stdin")
    parser.add_argument("-H", dest="headers", action="append", default=[], help="'name: value' request metadata")
    parser.add_argument("-emit-defaults", action="store_true", help="also print fields at their default")
    parser.add_argument("-max-time", type=float, help="deadline for the call, in seconds")
    parser.add_argument("address", help="host:port")
    parser.add_argument("verb", help="list, or SERVICE/METHOD")
    parser.add_argument("symbol", nargs="?", help="with list: the service whose methods to list")
    args = parser.parse_args(argv)
    if not args.plaintext:
        parser.error("this stand-in speaks plaintext only: pass -plaintext")

    pool = load_services()
    channel = grpc.insecure_channel(args.address)
    try:
        if args.verb == "list":
            if args.symbol:
                service = pool.FindServiceByName(args.symbol)
                print("\n".join(m.full_name for m in service.methods))
            else:
                print("\n".join(list_services(channel, args.max_time)))
            return 0
        service_name, _, method_name = args.verb.replace("/", ".").rpartition(".")
        try:
            method = pool.FindServiceByName(service_name).methods_by_name[method_name]
        except KeyError:
            print(f"Failed to find method {args.verb!r} (known services: those of the project's stubs)",
                  file=sys.stderr)  # fmt: skip
            return 1
        request_cls = message_factory.GetMessageClass(method.input_type)
        reply_cls = message_factory.GetMessageClass(method.output_type)
        data = sys.stdin.read() if args.data == "@" else (args.data or "{}")
        request = json_format.Parse(data, request_cls())
        call = channel.unary_unary(f"/{service_name}/{method_name}", request_serializer=request_cls.SerializeToString,
                                   response_deserializer=reply_cls.FromString)  # fmt: skip
        metadata = [tuple(part.strip() for part in h.split(":", 1)) for h in args.headers]
        reply = call(request, timeout=args.max_time, metadata=[(k.lower(), v) for k, v in metadata])
        print(to_json(reply, args.emit_defaults))
        return 0
    except grpc.RpcError as exc:
        return fail(exc.code(), exc.details() or "")
    except json_format.ParseError as exc:
        print(f"Error invoking method {args.verb!r}: error getting request data: {exc}", file=sys.stderr)
        return 1
    finally:
        channel.close()


if __name__ == "__main__":
    sys.exit(main())
