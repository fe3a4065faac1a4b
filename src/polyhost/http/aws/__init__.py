"""AWS wire protocols: AWS JSON 1.1, the query protocol and rpc-v2-cbor, as botocore speaks them."""
