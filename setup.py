"""The build of polyhost's one C extension; everything else is declared in pyproject.toml.

`polyhost.auth._sigv4_fast` is the compiled accepting path of SigV4 verification (see
src/polyhost/auth/sigv4.py for why). It is optional: without a C compiler or OpenSSL's headers
(Debian: gcc and libssl-dev) the build skips it, and every signature is verified in Python,
with the same answers at a higher cost per request.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "polyhost.auth._sigv4_fast",
            sources=["src/polyhost/auth/_sigv4_fast.c"],
            libraries=["crypto"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
