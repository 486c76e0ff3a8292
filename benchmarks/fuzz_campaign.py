"""A long fuzz campaign of check and compile: the test suite's generators (tests/test_fuzz.py), random
rather than derandomised, for many more cases. Prints cases, failures and cases per second.

    python benchmarks/fuzz_campaign.py [CASES_PER_GENERATOR]   # default 50,000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hypothesis import HealthCheck, given, settings  # noqa: E402
from test_fuzz import holds, mutants, scenes  # noqa: E402


def campaign(name: str, strategy, cases: int) -> None:
    failures: list[str] = []

    @settings(max_examples=cases, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(strategy)
    def run(text: str) -> None:
        try:
            holds(text)
        except Exception as exc:  # collect, keep going: a campaign reports every class it finds
            failures.append(f"{type(exc).__name__}: {str(exc)[:120]} <- {text[:200]!r}")

    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    print(f"{name}: {cases} cases in {seconds:.0f} s ({cases / seconds:.0f}/s), {len(failures)} failures")
    for f in failures[:20]:
        print("  ", f)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="A long random fuzz campaign of check and compile (tests/test_fuzz.py).")
    ap.add_argument("cases", nargs="?", type=int, default=50_000, help="cases per generator (default 50,000)")
    n = ap.parse_args().cases
    campaign("mutated examples", mutants, n)
    campaign("generated scenes", scenes, n)
