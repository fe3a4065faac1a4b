"""The Ray backend: each instance placed on a node of a Ray cluster, where an agent actor runs
its containers with the process backend."""
