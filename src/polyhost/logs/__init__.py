"""Container logs: the rotating files and their time index (written and read here), the pump
that copies a container's output into them, and CloudWatch Logs' read API over them.

Below the backends in the layers: every backend writes a container's log with these files, and
every reader (the logs route, FailureReasons, the Logs API) reads them with the same code.
"""
