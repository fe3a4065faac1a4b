"""Docker images of the built-in serving stacks: `polyhost images build` (see images/README.md)."""
