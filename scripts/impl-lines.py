#!/usr/bin/env python3
"""Lines of `impl TYPE {` blocks across src/ (default: Server), per file and
in total: the figure issue 10 asks to keep under 350 for the server."""
import glob
import re
import sys

name = sys.argv[1] if len(sys.argv) > 1 else "Server"
total = 0
for f in sorted(glob.glob("src/**/*.rs", recursive=True)):
    lines = open(f).read().split("\n")
    i = 0
    while i < len(lines):
        if re.match(rf"^impl {name} \{{", lines[i]):
            j = i
            while lines[j] != "}":
                j += 1
            print(f"{f}: {j - i + 1}")
            total += j - i + 1
            i = j
        i += 1
print(f"total: {total}")
