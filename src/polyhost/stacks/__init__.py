"""Built-in serving stacks. Each is a program speaking only the container contract.

Nothing under `polyhost.stacks` may import the server's modules (control, deploy, router, http):
a stack must be shippable as its own image (docs/architecture.md, principle 2).
"""
