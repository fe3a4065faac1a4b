"""The scenarios, numbered as in the benchmark plan; each is `run(ctx) -> Section`."""
