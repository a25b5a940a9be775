"""gRPC transport: the Open Inference Protocol service, health and reflection on one grpc.aio
server that shares the event loop (and the data plane) with REST."""
