"""The client side of `polyhost` (deploy, invoke, ls, logs, rm).

Every command talks to a running server over HTTP only — boto3's `sagemaker` and
`sagemaker-runtime` clients pointed at it, plus polyhost's logs route — never through the
server's files, so the same commands work against a server on another machine.
"""
