"""Shared test support: a real polyhost server in a subprocess, and contract containers."""
