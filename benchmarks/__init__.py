"""ivfuse's benchmark scripts; run them from the repository root as modules, e.g.
``python -m benchmarks.bench_deep`` (ivfuse itself installed, e.g. ``pip install -e .``)."""
