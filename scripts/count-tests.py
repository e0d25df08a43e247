#!/usr/bin/env python3
"""Sums test results from meson testlog.json files: doctest cases where a test printed a doctest
summary, otherwise one per meson test. A test that failed without a doctest failure (crash,
timeout, sanitizer abort) counts as one more failure. Prints "passed failed".

With --failures it prints instead, for every failed meson test, its name and result and the
lines of its output that say what failed (doctest's file:line, ERROR and TEST CASE lines,
sanitizer reports), at most a screenful each: CI shows only the end of its log."""
import json
import re
import sys

SUMMARY = re.compile(r"test cases:\s*(\d+)\s*\|\s*(\d+) passed\s*\|\s*(\d+) failed")
TELLING = re.compile(r"(ERROR|FATAL|TEST CASE|values:|ERROR: AddressSanitizer|runtime error|"
                     r"SUMMARY:|\.cc:\d+|Timeout|terminate called|what\(\))")
MAX_LINES = 40


def tests(paths):
    for path in paths:
        try:
            lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
        except OSError:
            yield path, None
            continue
        for line in lines:
            if line.strip():
                yield path, json.loads(line)


def counts(paths):
    passed = failed = 0
    for _, t in tests(paths):
        if t is None:
            failed += 1
            continue
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


def failures(paths):
    for path, t in tests(paths):
        if t is None:
            print(f"FAILED: {path} is missing (the test run did not finish)")
            continue
        if t.get("result") in ("OK", "EXPECTEDFAIL", "SKIP"):
            continue
        print(f"FAILED: {t.get('name')} ({t.get('result')}, {t.get('duration', 0):.1f}s) in {path}")
        out = (t.get("stdout", "") or "").splitlines()
        telling = [l for l in out if TELLING.search(l)] or out[-MAX_LINES:]
        for l in telling[:MAX_LINES]:
            print("    " + l[:300])
        if len(telling) > MAX_LINES:
            print(f"    ... {len(telling) - MAX_LINES} more lines in {path}")


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "--failures":
        failures(args[1:])
    else:
        counts(args)
