"""Run a command as a child and report its exit status, peak memory and time as JSON.

    python -m tests.faults.measure OUT.json -- COMMAND...

The peak is the largest resident set of any process of the child's tree that was waited
for (`RUSAGE_CHILDREN`: the pipeline and its worker processes), in MiB. Standing between
the test and the pipeline, this process's own memory is not counted.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    out, separator, *command = argv
    assert separator == "--", "usage: measure OUT.json -- COMMAND..."
    started = time.monotonic()
    child = subprocess.run(command, check=False)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = {
        "rc": child.returncode,
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "seconds": round(time.monotonic() - started, 2),
    }
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(report, handle)
    return child.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
