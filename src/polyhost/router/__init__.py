"""The data plane: InvokeEndpoint semantics over an in-memory routing table."""
