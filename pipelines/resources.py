"""Resources a run used: wall time, CPU core-hours, peak memory of the cluster."""

from __future__ import annotations

import resource
import time


def _worker_cpu_seconds() -> float:
    import psutil

    proc = psutil.Process()
    times = proc.cpu_times()
    return float(times.user + times.system)


class ResourceMeter:
    """Measures a run from construction to :meth:`finish`.

    CPU time is summed over the workers (their process CPU times, asked
    through ``client.run``) and the driver; peak memory is the largest total
    of the workers' process memory that Dask's ``MemorySampler`` saw, plus
    the driver's own peak.
    """

    def __init__(self, client):
        from distributed.diagnostics import MemorySampler

        self._client = client
        self._start = time.perf_counter()
        self._cpu0 = self._cluster_cpu()
        self._driver0 = self._driver_cpu()
        self._sampler = MemorySampler()
        self._sampling = self._sampler.sample("run", client=client, measure="process", interval=0.5)
        self._sampling.__enter__()

    def _cluster_cpu(self) -> dict[str, float]:
        try:
            return self._client.run(_worker_cpu_seconds)
        except (OSError, TimeoutError):  # a worker gone mid-run: its CPU time is lost, not the run
            return {}

    @staticmethod
    def _driver_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def finish(self) -> dict[str, float]:
        """Stop measuring; ``wall_s``, ``cpu_core_hours``, ``peak_memory_mb``."""
        self._sampling.__exit__(None, None, None)
        wall = time.perf_counter() - self._start
        cpu1 = self._cluster_cpu()
        cpu = sum(max(0.0, cpu1[w] - self._cpu0.get(w, 0.0)) for w in cpu1)
        cpu += self._driver_cpu() - self._driver0
        samples = self._sampler.samples.get("run", [])
        peak_cluster = max((value for _, value in samples), default=0.0)
        driver_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return {
            "wall_s": round(wall, 3),
            "cpu_core_hours": round(cpu / 3600.0, 6),
            "peak_memory_mb": round((peak_cluster + driver_peak) / 2**20, 1),
        }
