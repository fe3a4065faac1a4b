"""The Docker backend: each container an OCI container on the local daemon, plus the build of
the built-in stacks' images (`polyhost images build`)."""
