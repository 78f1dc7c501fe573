#!/usr/bin/env python3
"""Compares the PASS/FAIL verdicts of two bench results (e.g. two days' runs of the same parts).

Usage: python3 bench/verdicts.py FIRST.md SECOND.md

Reads every table of both files: a row's `target` and `result` columns, or its `targets` column
(`what: PASS; what: FAIL`), keyed by the row's scenario (and its subscriber count in the fan-out
table). Prints each target's two verdicts and whether they agree; exits 1 when a verdict differs
or a target is in one file only, 0 when all agree.
"""
import sys
from pathlib import Path


def cells(line):
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def verdicts(path):
    """{(scenario, target): "PASS" | "FAIL"} of one results file."""
    found = {}
    header = None
    for line in Path(path).read_text().splitlines():
        if not line.startswith("|"):
            header = None
            continue
        row = cells(line)
        if header is None:
            header = row
            continue
        if set("".join(row)) <= set("-: "):
            continue
        scenario = row[0]
        if len(row) > 1 and header[1] == "subscribers":
            scenario = f"{scenario} ({row[1]} subscribers)"
        named = dict(zip(header, row))
        if named.get("result") in ("PASS", "FAIL"):
            found[(scenario, named.get("target", ""))] = named["result"]
        for part in named.get("targets", "").split(";"):
            target, _, verdict = part.rpartition(":")
            if verdict.strip() in ("PASS", "FAIL"):
                found[(scenario, target.strip())] = verdict.strip()
    return found


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    first, second = verdicts(sys.argv[1]), verdicts(sys.argv[2])
    keys = sorted(set(first) | set(second))
    if not keys:
        sys.exit("no PASS/FAIL verdicts in either file")
    disagree = 0
    print("| scenario | target | first | second | agree |")
    print("|---|---|---|---|---|")
    for key in keys:
        a, b = first.get(key, "absent"), second.get(key, "absent")
        same = a == b
        disagree += not same
        print(f"| {key[0]} | {key[1]} | {a} | {b} | {'yes' if same else '**no**'} |")
    print(f"\n{len(keys) - disagree} of {len(keys)} verdicts agree")
    sys.exit(1 if disagree else 0)


if __name__ == "__main__":
    main()
