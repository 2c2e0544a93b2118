"""Tooling around the in-process engine, not part of serving.

:mod:`synthetic` (random-weight checkpoints in both layouts, for tests and benchmarks),
:mod:`st_checkpoint` (random-weight sentence-transformers checkpoints, written by its own ``save()``),
:mod:`baselines` (the naive and ceiling baselines the bench races), :mod:`measure` (memory and
forward tokens/s of one adapter strategy), :mod:`measure_late` (late-chunking cost), :mod:`verify`
(vectors on a device/dtype/attention against the fp32 CPU engine). The engine never imports these.
"""
