"""Generated protobuf and gRPC code for the ``fedmetamal.v1`` protocol (``proto/``).

Do not edit: run ``scripts/gen_proto.sh`` after changing a ``.proto`` file.
"""
