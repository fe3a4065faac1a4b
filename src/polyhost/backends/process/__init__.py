"""The process backend (the default): each container a child process of the server, in its own
process group, with cgroup limits where the machine allows them."""
