"""Fixtures of the example tests: the real S3 server (moto) that tests/support provides."""

from tests.support.s3 import s3_server

__all__ = ["s3_server"]
