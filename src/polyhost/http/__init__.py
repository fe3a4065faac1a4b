"""The ASGI app and the thin wire adapters that translate HTTP to the core and back."""
