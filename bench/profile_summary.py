"""Summarise py-spy raw stacks (``bench/profile``): where the gateway's CPU goes.

    python bench/profile_summary.py STACKS.raw [ROWS]

Prints the share of samples by the innermost frame of our own code (``gateway/``)
in each stack, which counts the library code it called; samples with no gateway
frame below the entry point are hypercorn/trio's own work. Idle worker threads
(trio's thread cache waiting for a job) are left out.
"""

from __future__ import annotations

import collections
import re
import sys

_FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^()]*?):\d+\)$")


def main(path: str, rows: int) -> None:
    owners: collections.Counter[str] = collections.Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            frames = [_FRAME.match(fr) for fr in stack.split(";")]
            files = [m["file"].split("site-packages/")[-1] if m else "" for m in frames]
            if files and files[-1].endswith("_thread_cache.py"):
                continue  # an idle worker thread
            n = int(count)
            total += n
            ours = [
                (m["name"], file)
                for m, file in zip(frames, files, strict=True)
                if m and "gateway/" in file and not file.endswith("__main__.py")
            ]
            if ours:
                name, file = ours[-1]
                owners[f"{file[file.index('gateway/') :]}:{name}"] += n
            elif any("_thread_cache" in f for f in files):
                owners["(log writer thread)"] += n
            else:
                owners["(hypercorn/trio outside our code)"] += n
    print(f"{total} samples")
    for key, n in owners.most_common(rows):
        print(f"{100 * n / total:5.1f}%  {key}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 30)
