"""The network runtime: the gRPC server and participant, their security and transport."""
