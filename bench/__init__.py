"""polyhost's benchmarks: `python -m bench [SCENARIO ...]` (or `make bench` for all of them).

Each scenario starts what it measures (polyhost, the peers it is compared with, the containers),
drives it with the same load tools in the same run, prints its table and writes its section of
`bench/RESULTS.md`, with plots beside it. Targets are stated with every table and a missed one is
printed as MISSED, never left out.
"""
