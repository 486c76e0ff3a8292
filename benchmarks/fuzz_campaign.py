"""A long fuzz campaign of check and compile, with the test suite's generators and property (tests/test_fuzz.py).

First the suite's own two tests, derandomised, at 5,000 cases per generator (the 10,000-case run that
`make test` cuts to a few hundred per generator); then a random campaign of many more cases that collects
every failure instead of stopping at the first. Prints cases, failures and cases per second.

    python benchmarks/fuzz_campaign.py [--ci-cases N] [CASES_PER_GENERATOR]   # defaults 5,000 and 50,000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hypothesis import HealthCheck, given, settings  # noqa: E402

SLOW_SECONDS = 2.0  # the bound on one input's check


def derandomised(test, name: str, cases: int) -> bool:
    """One of tests/test_fuzz.py's tests as written (same settings, same cases each run), at `cases`."""
    start = time.perf_counter()
    try:
        test()
    except Exception as exc:  # shrunk by Hypothesis; the falsifying example is in the exception's notes
        print(f"{name} (derandomised): FAILED after {time.perf_counter() - start:.0f} s:")
        print("".join(traceback.format_exception_only(exc))[:2000])
        return False
    seconds = time.perf_counter() - start
    print(f"{name} (derandomised): {cases} cases in {seconds:.0f} s ({cases / seconds:.0f}/s), 0 failures")
    return True


def campaign(name: str, strategy, holds, cases: int) -> int:
    failures: list[str] = []
    slow: list[tuple[float, str]] = []  # inputs whose check and compile took over SLOW_SECONDS

    @settings(max_examples=cases, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(strategy)
    def run(text: str) -> None:
        began = time.perf_counter()
        try:
            holds(text)
        except Exception as exc:  # collect, keep going: a campaign reports every class it finds
            failures.append(f"{type(exc).__name__}: {str(exc)[:120]} <- {text[:200]!r}")
        took = time.perf_counter() - began
        if took > SLOW_SECONDS:
            slow.append((took, text[:200]))

    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    print(f"{name} (random): {cases} cases in {seconds:.0f} s ({cases / seconds:.0f}/s), {len(failures)} failures, "
          f"{len(slow)} over {SLOW_SECONDS:g} s (check and compile together)")
    for f in failures[:20]:
        print("  ", f)
    for took, text in sorted(slow, reverse=True)[:5]:
        print(f"   {took:.1f} s <- {text!r}")
    return len(failures)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="A long fuzz campaign of check and compile (tests/test_fuzz.py).")
    ap.add_argument("cases", nargs="?", type=int, default=50_000,
                    help="random cases per generator (default 50,000; 0 skips the random campaign)")
    ap.add_argument("--ci-cases", type=int, default=5_000,
                    help="derandomised cases per generator of the suite's tests (default 5,000; 0 skips them)")
    args = ap.parse_args()
    # read by tests/test_fuzz.py at import, so it has to be set first
    os.environ["DFM_FUZZ_CASES"] = str(max(1, args.ci_cases))  # hypothesis wants at least one case
    import test_fuzz as fz

    ok = True
    if args.ci_cases:
        ok &= derandomised(fz.test_mutated_examples_never_crash, "mutated examples", args.ci_cases)
        ok &= derandomised(fz.test_generated_scenes_never_crash, "generated scenes", args.ci_cases)
        ok &= derandomised(fz.test_hostile_shapes_never_crash, "hostile shapes", max(10, args.ci_cases // 3))
    if args.cases:
        ok &= campaign("mutated examples", fz.mutants, fz.holds, args.cases) == 0
        ok &= campaign("generated scenes", fz.scenes, fz.holds, args.cases) == 0
        ok &= campaign("hostile shapes", fz.hostile, fz.holds, max(1, args.cases // 10)) == 0
    sys.exit(0 if ok else 1)
