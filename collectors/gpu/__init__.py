"""gpu-collector: per-GPU, per-MIG and per-pod GPU utilization from NVML, for one node.

Data flow, one tick per interval (``sampler.Sampler.sample_once``)::

    nvml (NvmlReader) ──┐
    podresources ───────┼─> attribution (pure join) ─> window ─> exporter (/metrics)
    procfs + podlookup ─┘                                     └> wire (/snapshot JSON)

Only ``collectors.gpu.nvml`` imports pynvml; ``collectors.gpu.simulate`` implements the same
ports for ``--simulate`` and marks everything it produces as simulated.
"""
