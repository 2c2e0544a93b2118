"""``embed-gateway bench``: throughput and latency of this gateway and its peers, in one run.

Modules: :mod:`workloads` (seeded request sets), :mod:`loadgen` (open/closed-loop HTTP drivers),
:mod:`stats` (percentiles), :mod:`servers` (the processes raced), :mod:`runner` (runs everything,
collects memory), :mod:`results` (the typed rows the JSON is written from), :mod:`checks` (targets
read from a file), :mod:`report` (markdown + JSON), :mod:`scrape` (numbers from ``/metrics``) and
:mod:`overhead` (``measure-overhead``: the latency the gateway adds in front of vLLM). See
docs/benchmarks.md.
"""
