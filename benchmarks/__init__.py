"""skal's benchmarks (run them as modules: ``python -m benchmarks.label_efficiency``)."""
