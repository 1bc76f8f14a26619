"""Image-quality metrics for generated images, and their registry.

Modules: `registry` (the names and presets users type, torch-free), `evaluate` (`evaluate` ->
`Results` with notes), `swd` (paper Section 5, official sliced_wasserstein.py), `msssim` (paper
Section 5, official ms_ssim.py), `fid` (FID, KID with bundled Inception weights), `pyramid`,
`images` (reading image sets), `progress` (bars on stderr for the command line), `runlog`
(results appended to a run's log.jsonl), `cli` (`progan-metrics`).
"""

from progan_dsl.lazy import lazy_exports

_EXPORTS = {
    "EvalContext": "progan_dsl.metrics.evaluation",
    "METRICS": "progan_dsl.metrics.evaluation",
    "Metric": "progan_dsl.metrics.evaluation",
    "Results": "progan_dsl.metrics.evaluation",
    "evaluate": "progan_dsl.metrics.evaluation",
    "resolve_metric_names": "progan_dsl.metrics.registry",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
