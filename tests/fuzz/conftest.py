"""Hypothesis profiles of the fuzzers.

``ci`` (default, in ``make test``): a bounded number of examples per fuzzer so
the suite stays within the CI budget; ``fuzz`` (``make fuzz``, i.e.
``HYPOTHESIS_PROFILE=fuzz``): many more, for before a release. Neither has a
hypothesis deadline (timings on a shared 2-core machine are noisy); hangs are
caught by :func:`tests.fuzz.guard.bounded`'s alarm instead.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = dict(deadline=None, derandomize=False, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                      HealthCheck.data_too_large, HealthCheck.filter_too_much])
settings.register_profile("ci", max_examples=100, **_COMMON)
settings.register_profile("fuzz", max_examples=2000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
