#!/usr/bin/env python3
"""Check the crate's layering (standard library only): every import points down, and no two
source files import each other, directly or around a circle.

The layers, top to bottom (README "Layout", docs/architecture.md):

    cli → config → train → models → nn → data → track → metrics → error
    report → track, metrics, error          (report reads run records only)

A module may name (`crate::x`, in code or tests, comments ignored) only the modules below it.
File-level circles are found on a graph whose edges are the paths a file names:
`crate::m::f`, `super::f` and `self::f` (inside `mod.rs`), including grouped `use` lists,
resolved to the files `src/m/f.rs` or `src/m/f/mod.rs`. A file's own submodules (declared
with `mod`) and its `#[cfg(test)]` module (which may use anything of its layer for fixtures)
do not count as edges; the layer rule applies to tests too.

    python3 scripts/check_layers.py [src dir]

Exit 1 with one line per violation (file:line: text, or the files of a circle).
"""
import os
import re
import sys

ORDER = ["cli", "config", "train", "models", "nn", "data", "track", "metrics", "error"]
ALLOWED = {m: set(ORDER[i + 1:]) for i, m in enumerate(ORDER)}
ALLOWED["cli"] |= {"report"}
ALLOWED["report"] = {"track", "metrics", "error"}
TOP = set(ALLOWED)
CRATE = re.compile(r"\bcrate::([a-z_]+)((?:::[a-z_]+)*)")
RELATIVE = re.compile(r"\b(super|self)::([a-z_]+)")
GROUP = re.compile(r"\b(crate(?:::[a-z_]+)*|super|self)::\{([^}]*)\}", re.S)


def rust_files(src):
    for root, _, names in os.walk(src):
        for name in sorted(names):
            if name.endswith(".rs"):
                yield os.path.join(root, name)


def module_path(src, path):
    """`src/data/grid.rs` → ["data", "grid"]; `src/data/mod.rs` → ["data"]."""
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    if rel in (["lib"], ["main"]):
        return []
    return rel


def resolve(src, parts):
    """The file of the longest prefix of module path `parts` that exists."""
    for n in range(len(parts), 0, -1):
        base = os.path.join(src, *parts[:n])
        for cand in (base + ".rs", os.path.join(base, "mod.rs")):
            if os.path.isfile(cand):
                return os.path.normpath(cand)
    return None


def strip_comments(text):
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")
    src = os.path.normpath(src)
    bad = []
    edges = {}
    for path in rust_files(src):
        mod = module_path(src, path)
        top = mod[0] if mod else None
        is_mod_rs = os.path.basename(path) == "mod.rs"
        # The module a `super::` path starts from, and the one `self::` names.
        parent = mod[:-1] if not is_mod_rs else mod[:-1]
        here = mod
        raw = open(path, encoding="utf-8").read()
        code = strip_comments(raw)
        # A file's tests (its `#[cfg(test)]` module, last by convention) may use anything of
        # the layer for fixtures; they are not part of the import graph.
        graph_code = code.split("#[cfg(test)]", 1)[0]
        own_children = set(re.findall(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+([a-z_]+)\s*[;{]", code, re.M))
        targets = set()
        in_graph = len(graph_code.splitlines())
        for n, line in enumerate(code.splitlines(), 1):
            for m in CRATE.finditer(line):
                target = m.group(1)
                if top in ALLOWED and target in TOP and target != top and target not in ALLOWED[top]:
                    bad.append(f"{os.path.relpath(path, src)}:{n}: {top} imports {target}: {raw.splitlines()[n - 1].strip()}")
                rest = [p for p in m.group(2).split("::") if p]
                if n <= in_graph:
                    targets.add(resolve(src, [target] + rest))
            for m in RELATIVE.finditer(line if n <= in_graph else ""):
                base = parent if m.group(1) == "super" else here
                if m.group(1) == "self" and m.group(2) in own_children:
                    continue
                targets.add(resolve(src, base + [m.group(2)]))
        for m in GROUP.finditer(graph_code):
            head = m.group(1)
            if head == "super":
                base = parent
            elif head == "self":
                base = here
            else:
                base = head.split("::")[1:]
            for item in m.group(2).split(","):
                name = item.strip().split("::")[0].split(" ")[0]
                if re.fullmatch(r"[a-z_]+", name or "") and not (head == "self" and name in own_children):
                    targets.add(resolve(src, base + [name]))
        me = os.path.normpath(path)
        edges[me] = {t for t in targets if t and t != me}
    # File-level circles (Tarjan's strongly connected components).
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(os.path.relpath(c, src) for c in comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    for c in comps:
        bad.append("import circle: " + " ↔ ".join(c))
    for b in bad:
        print(b)
    print(f"layers: {len(bad)} violations ({len(edges)} files; order "
          f"{' → '.join(ORDER)}; report → track, metrics, error)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
