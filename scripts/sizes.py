#!/usr/bin/env python3
"""Print the largest files and functions under src/ (non-blank lines).

Usage: scripts/sizes.py [--git REV] [N]   (default: the working tree, top 10)

A function runs from its `fn` line to the line where its braces balance; test
modules count like any other code.
"""
import os
import re
import subprocess
import sys

FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(unsafe\s+)?fn\s+(\w+)")


def files(rev):
    if rev:
        names = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, "src"],
                               check=True, capture_output=True, text=True).stdout.split()
        for p in names:
            if p.endswith(".rs"):
                yield p, subprocess.run(["git", "show", f"{rev}:{p}"], check=True,
                                        capture_output=True, text=True).stdout
    else:
        for root, _d, ns in os.walk("src"):
            for n in ns:
                if n.endswith(".rs"):
                    p = os.path.join(root, n)
                    with open(p, encoding="utf-8") as f:
                        yield p, f.read()


def functions(path, text):
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = FN.match(lines[i])
        if m and not lines[i].rstrip().endswith(";"):
            depth, j, opened = 0, i, False
            while j < len(lines):
                depth += lines[j].count("{") - lines[j].count("}")
                opened = opened or "{" in lines[j]
                if opened and depth <= 0:
                    break
                j += 1
            yield j - i + 1, f"{path}:{i + 1} {m.group(5)}"
        i += 1


def main(argv):
    rev = None
    if argv and argv[0] == "--git":
        rev, argv = argv[1], argv[2:]
    top = int(argv[0]) if argv else 10
    sizes, fns = [], []
    for path, text in files(rev):
        sizes.append((sum(1 for line in text.split("\n") if line.strip()), path))
        fns.extend(functions(path, text))
    print("largest files (non-blank lines):")
    for n, p in sorted(sizes, reverse=True)[:top]:
        print(f"  {n:5} {p}")
    print("largest functions (lines):")
    for n, f in sorted(fns, reverse=True)[:top]:
        print(f"  {n:5} {f}")


if __name__ == "__main__":
    main(sys.argv[1:])
