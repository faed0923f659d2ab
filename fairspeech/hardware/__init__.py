"""What a model costs on the device it ships to: accelerator profiles, a measurement harness, and a
learned latency/memory estimator (in the manner of nn-Meter).

    from fairspeech.hardware import estimate, load_profile
    report = estimate(model, (features, lengths), load_profile("cpu_host"), audio_seconds=3.0)
    report.latency_s, report.flops_per_frame, report.params_bytes, report.peak_activation_bytes

    from fairspeech.hardware.costs import cost_table, join_wer_and_cost
    costs = cost_table(model, (features, lengths), audio_seconds=3.0)   # one row per shipped profile

Modules, in the order the data flows:

* ``profile``: :class:`AcceleratorProfile` and the TOML files in ``profiles/`` (``cpu_host`` is measured
  by ``host``; ``neural_engine_like`` has 32 lanes that penalize misaligned channel counts);
* ``operators``, ``graph``: decomposition of a forward pass into ATen operator calls with FLOPs,
  bytes, features, and peak activation memory by storage liveness;
* ``timing``, ``measure``, ``sweep``, ``zoo``, ``calibrate``: in-context operator timing, the
  operator sweep, the architecture families, and the run that writes ``measurements/``;
* ``estimator``, ``roofline``: per-kind regressions composed into model latency, or the roofline
  for profiles without measurements; :class:`CostReport`;
* ``channels``: rounding widths to a profile's parallelism; ``costs``: tables across profiles;
  ``cli``: ``fairspeech profile MODEL --target PROFILE``.

Attributes are imported lazily so that ``fairspeech.accelerator`` stays cheap to import.
"""

from __future__ import annotations

_LAZY = {
    "AcceleratorProfile": "fairspeech.accelerator",
    "load_profile": "fairspeech.accelerator",
    "estimate": "fairspeech.hardware.estimator",
    "CostReport": "fairspeech.hardware.estimator",
    "cost_table": "fairspeech.hardware.costs",
    "join_wer_and_cost": "fairspeech.hardware.costs",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fairspeech.hardware' has no attribute {name!r}")
