#!/usr/bin/env python3
"""Summarise an Autobahn fuzzingserver report and decide pass/fail.

Usage: report.py OUTDIR AGENT EXPECTED_CASES [TIMED_OUT...]

OUTDIR is the spec's "outdir" (holding index.json and one JSON file per case).
EXPECTED_CASES may be empty to skip the count check. TIMED_OUT are the run's case
numbers (1-based, in the server's order) whose testee had to be killed. Exits 1 if any
case is FAILED, if any testee timed out, or if the number of cases in the report differs
from EXPECTED_CASES. With $EXPECTED_FILE set to a JSON file {"case id": "verdict"}, also
exits 1 if any case listed there got another verdict (or is missing from the report), or
if the report has a case the file does not list. A list of verdicts allows any of them.
"""
import collections
import json
import os
import sys

BEHAVIORS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]


def case_key(case_id):
    # "9.10.2" sorts after "9.2.1": compare numerically, part by part.
    return [int(p) if p.isdigit() else p for p in case_id.split(".")]


def main(outdir, agent, expected, timed_out):
    index_path = os.path.join(outdir, "index.json")
    try:
        with open(index_path) as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        print(f"autobahn: cannot read {index_path}: {e}")
        return 1
    cases = index.get(agent)
    if not cases:
        print(f"autobahn: no results for agent {agent!r} in {index_path}")
        return 1

    counts = collections.Counter(c["behavior"] for c in cases.values())
    close_counts = collections.Counter(c["behaviorClose"] for c in cases.values())
    print(f"autobahn: {len(cases)} cases for agent {agent!r}")
    for b in BEHAVIORS + sorted(set(counts) - set(BEHAVIORS)):
        print(f"  {b:<14} {counts.get(b, 0)}")
    # The closing handshake is judged separately; it does not decide the verdict but it
    # is worth seeing (e.g. "FAILED BY CLIENT" when the client drops TCP first).
    odd_close = {k: v for k, v in close_counts.items() if k not in ("OK", "INFORMATIONAL")}
    if odd_close:
        print("  close handshake: " + ", ".join(f"{k} {v}" for k, v in sorted(odd_close.items())))

    failed = sorted((cid for cid, c in cases.items() if c["behavior"] == "FAILED"), key=case_key)
    for cid in failed:
        detail = {}
        try:
            with open(os.path.join(outdir, cases[cid]["reportfile"])) as f:
                detail = json.load(f)
        except (OSError, ValueError, KeyError):
            pass
        print(f"\nFAILED {cid}: {detail.get('description', '?')}")
        print(f"  expectation: {detail.get('expectation', '?')}")
        print(f"  result:      {detail.get('result', '?')}")
        print(f"  close:       {cases[cid]['behaviorClose']}: {detail.get('resultClose', '?')}")

    # The server numbers the selected cases in case order; a testee that had to be
    # killed did not finish its case, whatever the server recorded for it.
    order = sorted(cases, key=case_key)
    for number in timed_out:
        n = int(number)
        cid = order[n - 1] if 0 < n <= len(order) else "?"
        print(f"\nTIMED OUT case number {n} ({cid}): the testee was still running and was killed")

    status = 0
    if timed_out:
        print(f"\nautobahn: the testee timed out in {len(timed_out)} case(s)")
        status = 1
    if failed:
        print(f"\nautobahn: {len(failed)} FAILED case(s)")
        status = 1
    expected_file = os.environ.get("EXPECTED_FILE")
    if expected_file:
        with open(expected_file) as f:
            want = json.load(f)
        # A list: the verdicts a timing-dependent case may get.
        slipped = [(cid, v, cases.get(cid, {}).get("behavior", "missing"))
                   for cid, v in sorted(want.items(), key=lambda kv: case_key(kv[0]))
                   if cases.get(cid, {}).get("behavior") not in ([v] if isinstance(v, str) else v)]
        for cid, v, got in slipped:
            print(f"\nUNEXPECTED {cid}: {got}, expected {v} ({expected_file})")
        unlisted = sorted(set(cases) - set(want), key=case_key)
        if unlisted:
            print(f"\nautobahn: {len(unlisted)} case(s) not in {expected_file}: {', '.join(unlisted[:10])}")
            status = 1
        if slipped:
            print(f"\nautobahn: {len(slipped)} case(s) differ from {expected_file}")
            status = 1
    if expected and len(cases) != int(expected):
        print(f"autobahn: expected {expected} cases, the report has {len(cases)}")
        status = 1
    print(f"autobahn: {'PASS' if status == 0 else 'FAIL'} (full report: {outdir}/index.html)")
    return status


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]))
