"""``embed-gateway bench``: throughput and latency of this gateway and its peers, in one run.

Modules: :mod:`workloads` (seeded request sets), :mod:`loadgen` (open/closed-loop HTTP drivers),
:mod:`stats` (percentiles), :mod:`report` (markdown + JSON), :mod:`runner` (starts the servers,
runs everything, collects memory). See docs/benchmarks.md.
"""
