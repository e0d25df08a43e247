#!/usr/bin/env python3
"""Sums test results from meson testlog.json files: doctest cases where a test printed a doctest
summary, otherwise one per meson test. A test that failed without a doctest failure (crash,
timeout, sanitizer abort) counts as one more failure. Prints "passed failed"."""
import json
import re
import sys

SUMMARY = re.compile(r"test cases:\s*(\d+)\s*\|\s*(\d+) passed\s*\|\s*(\d+) failed")
passed = failed = 0
for path in sys.argv[1:]:
    try:
        lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
    except OSError:
        failed += 1
        continue
    for line in lines:
        if not line.strip():
            continue
        t = json.loads(line)
        ok = t.get("result") in ("OK", "EXPECTEDFAIL")
        m = SUMMARY.findall(t.get("stdout", "") or "")
        if m:
            p = sum(int(x[1]) for x in m)
            f = sum(int(x[2]) for x in m)
            passed += p
            failed += f
            if not ok and f == 0:
                failed += 1
        elif ok:
            passed += 1
        else:
            failed += 1
print(passed, failed)
