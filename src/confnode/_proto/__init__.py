"""Generated protobuf/gRPC modules; each ``.proto`` sits next to its generated code.

Regenerate with ``scripts/gen_protos.py`` (grpcio-tools; ``src`` as include root and output
directory, so imports are package-qualified). Never edit the ``*_pb2*`` files by hand.
"""
