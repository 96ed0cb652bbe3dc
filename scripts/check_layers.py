#!/usr/bin/env python3
"""Check that the lower layers of the crate never import the upper ones (standard library only).

The intended order (README, "Code we want to live in"): cli → config → train → models →
nn, data → track, metrics, error; report reads records from track. Enforced here: nothing in
models, nn, data, track, metrics or error names `crate::train`, `crate::config`,
`crate::report` or `crate::cli`, in code or tests. (config and train still import each other;
moving the job types below train is the layout issue's work.) Exit 1 and one line per
violation (file:line: text) when the rule is broken.

    python3 scripts/check_layers.py [src dir]
"""
import os
import re
import sys

LOWER = ["models", "nn", "data", "track", "metrics", "error"]
UPPER = ["train", "config", "report", "cli"]
PATTERN = re.compile(r"\bcrate::(" + "|".join(UPPER) + r")\b")


def files(src, module):
    single = os.path.join(src, module + ".rs")
    if os.path.isfile(single):
        yield single
    folder = os.path.join(src, module)
    for root, _, names in os.walk(folder):
        for name in sorted(names):
            if name.endswith(".rs"):
                yield os.path.join(root, name)


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")
    bad = []
    for module in LOWER:
        for path in files(src, module):
            with open(path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    code = line.split("//", 1)[0]
                    if PATTERN.search(code):
                        bad.append(f"{os.path.relpath(path, src)}:{n}: {line.strip()}")
    for b in bad:
        print(b)
    print(f"layers: {len(bad)} upward imports from {', '.join(LOWER)}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
