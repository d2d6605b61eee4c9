#!/usr/bin/env python3
"""Print the `use crate::` edges between the modules under src/ and any cycles.

Usage: scripts/module-graph.py [SRC_DIR]     (default: src)
       scripts/module-graph.py --git REV     (read the tree of a commit, e.g. 38bc242)

A module is a top-level module of the crate: src/config/wire.rs and
src/config.rs are both `config`. Edges inside one module are not shown.
Lines inside `#[cfg(test)]` modules are skipped, so test-only imports do not
count. Exit status 1 when there is a cycle.
"""
import os
import re
import subprocess
import sys

USE = re.compile(r"\buse\s+crate::(?:\{([^}]*)\}|(\w+))")


def files_from_dir(src):
    for root, _dirs, names in os.walk(src):
        for name in names:
            if name.endswith(".rs"):
                path = os.path.join(root, name)
                with open(path, encoding="utf-8") as f:
                    yield os.path.relpath(path, src), f.read()


def files_from_git(rev):
    out = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, "src"],
                         check=True, capture_output=True, text=True).stdout
    for path in out.split():
        if path.endswith(".rs"):
            text = subprocess.run(["git", "show", f"{rev}:{path}"], check=True,
                                  capture_output=True, text=True).stdout
            yield os.path.relpath(path, "src"), text


def module_of(rel):
    parts = rel.split(os.sep)
    if parts[0] == "bin":
        return None
    first = parts[0]
    return first[:-3] if first.endswith(".rs") else first


def non_test_text(text):
    """Drop `#[cfg(test)] mod ... { }` blocks by brace counting."""
    out, lines, i = [], text.split("\n"), 0
    while i < len(lines):
        if lines[i].strip() == "#[cfg(test)]":
            j = i + 1
            while j < len(lines) and lines[j].strip().startswith("#["):
                j += 1
            if j < len(lines) and re.match(r"\s*(pub(\(crate\))?\s+)?mod\s+\w+\s*\{", lines[j]):
                depth = 0
                while j < len(lines):
                    depth += lines[j].count("{") - lines[j].count("}")
                    j += 1
                    if depth <= 0:
                        break
                i = j
                continue
        out.append(lines[i])
        i += 1
    return "\n".join(out)


def edges(files):
    graph = {}
    for rel, text in files:
        mod = module_of(rel)
        if mod is None or mod in ("lib", "main"):
            continue
        graph.setdefault(mod, set())
        for m in USE.finditer(non_test_text(text)):
            targets = [m.group(2)] if m.group(2) else [
                t.strip().split("::")[0] for t in m.group(1).split(",") if t.strip()]
            for t in targets:
                if t and t != mod and t != "self":
                    graph[mod].add(t)
    return graph


def cycles(graph):
    found, state, stack = [], {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                found.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    return found


def main(argv):
    if len(argv) >= 2 and argv[0] == "--git":
        graph = edges(files_from_git(argv[1]))
    else:
        graph = edges(files_from_dir(argv[0] if argv else "src"))
    n_edges = 0
    for mod in sorted(graph):
        deps = sorted(graph[mod])
        n_edges += len(deps)
        print(f"{mod} -> {', '.join(deps) if deps else '(none)'}")
    found = cycles(graph)
    print(f"{len(graph)} modules, {n_edges} edges, {len(found)} cycle(s)")
    for c in found:
        print("cycle: " + " -> ".join(c))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
