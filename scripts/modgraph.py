#!/usr/bin/env python3
"""The import graph among the modules of src/, at every level, and its cycles.

A module is a file X.rs or a folder X/ (with its mod.rs); lib.rs and main.rs
are the crate root. The modules are checked level by level: the children of
the crate root (the top-level modules), then the children of each folder
(`lock::backend`, `lock::swarm`, ...). An edge A -> B between two children
of one parent is a path from a file anywhere under A that names something
under B: `use crate::lock::swarm::...`, `use super::{swarm, ...}`, inline
`crate::b::f()` alike; `crate::`, `super::` and `self::` are resolved from
the file's own module. A name of an ancestor (a child's `super::Item`) is
no edge: a module's own items sit above its children. Comments, string and
character literals are skipped, so a doc link or a message naming
`crate::Y` is no edge; `$crate::` (a macro) is not followed.

Usage: modgraph.py [--src DIR] (--report | --check | --layers)
  --report  print the graph and any cycle; exit 0
  --check   the same, exit 1 naming a cycle if any level has one
  --layers  print the top-level modules in layers, the bottom last (the
            layering src/lib.rs describes); exit 1 if there is a cycle
Exit 2 on bad usage or an unreadable src directory.
"""

import argparse
import os
import re
import sys

ROOTS = {"lib.rs", "main.rs"}
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def ident_before(text, i):
    """Whether text[i] continues an identifier (`for"` is none; `br"` is a
    byte raw string, so a lone b before it does not count)."""
    j = i - 1 if i and text[i - 1] == "b" else i
    return j > 0 and (text[j - 1].isalnum() or text[j - 1] == "_")


def strip_rust(text):
    """The text with comments and string/char literals blanked (newlines kept,
    so line numbers stay right)."""
    out = []
    i, n = 0, len(text)

    def blank(s):
        out.append("".join(c if c == "\n" else " " for c in s))

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            blank(text[i:j])
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(text[i:j])
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 258]) and not ident_before(text, i):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + len(hashes) + 2)
            j = n if end < 0 else end + 1 + len(hashes)
            blank(text[i:j])
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            blank(text[i:j + 1])
            i = j + 1
        elif c == "'":
            # A char literal ('x', '\n', '\u{1F600}'), or a lifetime ('a).
            if i + 1 < n and text[i + 1] == "\\":
                j = text.find("'", i + 2)
                j = n if j < 0 else j + 1
            elif i + 2 < n and text[i + 2] == "'":
                j = i + 3
            else:
                out.append(c)
                i += 1
                continue
            blank(text[i:j])
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def group_heads(body):
    """The first path segment of each item of a use group `{a, b::c, d::{e}}`."""
    heads, depth, item = [], 0, ""
    for c in body + ",":
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        if c == "," and depth == 0:
            m = IDENT.match(item.strip())
            if m:
                heads.append(m.group(0))
            item = ""
        else:
            item += c
    return heads


def crate_refs(code):
    """(line, first segment) of every crate:: path in stripped Rust code."""
    refs = []
    for m in re.finditer(r"(?<![\w$])crate\s*::\s*", code):
        line = code.count("\n", 0, m.start()) + 1
        rest = m.end()
        if code.startswith("{", rest):
            depth, j = 0, rest
            while j < len(code):
                depth += {"{": 1, "}": -1}.get(code[j], 0)
                if depth == 0:
                    break
                j += 1
            refs.extend((line, h) for h in group_heads(code[rest + 1:j]))
        else:
            ident = IDENT.match(code, rest)
            if ident:
                refs.append((line, ident.group(0)))
    return refs


def top_modules(src):
    mods = {}
    for entry in sorted(os.listdir(src)):
        path = os.path.join(src, entry)
        if os.path.isdir(path):
            mods[entry] = path
        elif entry.endswith(".rs") and entry not in ROOTS:
            mods[entry[:-3]] = path
    return mods


def rust_files(path):
    if os.path.isfile(path):
        yield path
        return
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for f in sorted(filenames):
            if f.endswith(".rs"):
                yield os.path.join(dirpath, f)


def graph(src):
    """{module: {imported module: first (file, line)}} over src's top-level modules."""
    mods = top_modules(src)
    edges = {m: {} for m in mods}
    for mod, path in mods.items():
        for f in rust_files(path):
            with open(f, encoding="utf-8") as fh:
                code = strip_rust(fh.read())
            for line, head in crate_refs(code):
                if head in mods and head != mod and head not in edges[mod]:
                    edges[mod][head] = (os.path.relpath(f, os.path.dirname(src.rstrip("/")) or "."), line)
    return edges


def use_paths(code, start):
    """The paths a path expression starting at code[start] names, as lists
    of segments: `a::b::{c, d::{e, self}}` gives [a, b, c], [a, b, d, e]
    and [a, b, d]; a glob or a name that is not an identifier ends a path."""
    paths = []

    def walk(i, prefix):
        while True:
            while i < len(code) and code[i].isspace():
                i += 1
            if code.startswith("{", i):
                j = i + 1
                while True:
                    j = walk(j, list(prefix))
                    while j < len(code) and code[j].isspace():
                        j += 1
                    if code.startswith(",", j):
                        j += 1
                        continue
                    break
                return j + 1 if code.startswith("}", j) else j
            m = IDENT.match(code, i)
            if not m:
                if prefix:
                    paths.append(prefix)
                return i
            name, i = m.group(0), m.end()
            if name != "self" or not prefix:
                prefix = prefix + [name]
            j = i
            while j < len(code) and code[j].isspace():
                j += 1
            if code.startswith("::", j):
                i = j + 2
                continue
            paths.append(prefix)
            return i

    walk(start, [])
    return paths


def module_of(src, f):
    """The module path (a tuple) of file f under src: src/a/b.rs and
    src/a/b/mod.rs are ("a", "b"); the crate roots are ()."""
    parts = os.path.relpath(f, src).split(os.sep)
    parts[-1] = parts[-1][:-3]
    if parts[-1] == "mod" or (len(parts) == 1 and parts[0] + ".rs" in ROOTS):
        parts.pop()
    return tuple(parts)


def level_graphs(src):
    """{parent module: {child: {child: first (file, line)}}} for every
    module with submodules, the crate root () included: an edge A -> B
    between two children of one parent when a file anywhere under A names
    something under B, by `crate::`, `super::` or `self::`. A reference
    to an ancestor (a child's `super::Item`) is no edge: a module's own
    items are above its children."""
    files = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        files.extend(os.path.join(dirpath, f) for f in sorted(filenames) if f.endswith(".rs"))
    mods = {module_of(src, f) for f in files}
    levels = {}
    for m in mods:
        for k in range(len(m)):
            levels.setdefault(m[:k], {}).setdefault(m[k], {})
    for f in files:
        here = module_of(src, f)
        with open(f, encoding="utf-8") as fh:
            code = strip_rust(fh.read())
        for m in re.finditer(r"(?<![\w$])(crate|super|self)\s*::\s*", code):
            line = code.count("\n", 0, m.start()) + 1
            base = [] if m.group(1) == "crate" else list(here)
            if m.group(1) == "super":
                base = base[:-1]
            for path in use_paths(code, m.end()):
                target = list(base)
                for seg in path:
                    if seg == "super":
                        target = target[:-1]
                    elif seg != "self":
                        target.append(seg)
                while tuple(target) not in mods and target:
                    target.pop()
                target = tuple(target)
                k = 0
                while k < min(len(here), len(target)) and here[k] == target[k]:
                    k += 1
                if k == len(here) or k == len(target):
                    continue  # one is the other's ancestor (or itself)
                edges = levels[here[:k]]
                edges[here[k]].setdefault(target[k], (os.path.relpath(f, os.path.dirname(src.rstrip("/")) or "."), line))
    return levels


def cycles(edges):
    """One cycle (a list of modules, first == last) per strongly connected
    component of more than one module (Tarjan), in a stable order."""
    index, low, stack, on, comps = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
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
                comps.append(set(comp))

    sys.setrecursionlimit(max(1000, 4 * len(edges) + 100))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    found = []
    for comp in comps:
        start = min(comp)
        # Shortest way back to start inside the component (breadth first).
        prev, queue = {start: None}, [start]
        path = None
        while queue and path is None:
            nxt = []
            for v in queue:
                for w in sorted(edges[v]):
                    if w not in comp:
                        continue
                    if w == start:
                        path = [w]
                        while v is not None:
                            path.append(v)
                            v = prev[v]
                        path.reverse()
                        break
                    if w not in prev:
                        prev[w] = v
                        nxt.append(w)
                if path:
                    break
            queue = nxt
        found.append(path)
    return sorted(found)


def layers(edges):
    """The acyclic top-level graph as layers, bottom first: a module sits
    one above the highest module it imports (none: layer 0)."""
    depth = {}

    def visit(v):
        if v not in depth:
            depth[v] = 0
            depth[v] = 1 + max((visit(w) for w in edges[v]), default=-1)
        return depth[v]

    for v in sorted(edges):
        visit(v)
    out = [[] for _ in range(1 + max(depth.values(), default=-1))]
    for v in sorted(edges):
        out[depth[v]].append(v)
    return out


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--report", action="store_true", help="print only; exit 0")
    mode.add_argument("--check", action="store_true", help="exit 1 if the graph has a cycle")
    mode.add_argument("--layers", action="store_true", help="print the top-level modules in layers, bottom first")
    args = ap.parse_args(argv)
    src = os.path.normpath(args.src)
    if not os.path.isdir(src):
        print("modgraph: --src %s is not a directory" % args.src, file=sys.stderr)
        return 2
    try:
        edges = graph(src)
        levels = level_graphs(src)
    except (OSError, UnicodeDecodeError) as e:
        print("modgraph: cannot read %s: %s" % (src, e), file=sys.stderr)
        return 2
    shown = os.path.relpath(src)
    found = []
    for parent in sorted(levels):
        sub = dict(edges) if parent == () else levels[parent]
        if parent == ():
            # The crate root's children: the top-level graph, plus what a
            # `super::` from a top-level file names.
            for m, es in levels[()].items():
                for t, at in es.items():
                    sub.setdefault(m, {}).setdefault(t, at)
        prefix = "".join(p + "::" for p in parent)
        for c in cycles(sub):
            found.append(([prefix + m for m in c], [sub[a][b] for a, b in zip(c, c[1:])]))
    if args.layers:
        if found:
            print("modgraph: the graph has a cycle; no layers (run --report)", file=sys.stderr)
            return 1
        for i, layer in reversed(list(enumerate(layers(edges)))):
            print("%d: %s" % (i, " ".join(layer)))
        return 0
    nested = sum(1 for p in levels if p != ())
    print("module graph of %s (%d top-level modules, %d folders below; X -> what X imports):"
          % (shown, len(edges), nested))
    for m in sorted(edges):
        print("  %s -> %s" % (m, ", ".join(sorted(edges[m])) or "(nothing)"))
    for parent in sorted(p for p in levels if p != ()):
        prefix = "".join(p + "::" for p in parent)
        for m in sorted(levels[parent]):
            if levels[parent][m]:
                print("  %s%s -> %s" % (prefix, m, ", ".join(sorted(levels[parent][m]))))
    for c, at in found:
        where = "; ".join("%s -> %s at %s:%d" % ((a, b) + w) for a, b, w in zip(c, c[1:], at))
        print("cycle: %s (%s)" % (" -> ".join(c), where), file=sys.stderr if args.check else sys.stdout)
    if not found:
        print("no cycle among the modules, at any level")
        return 0
    if args.check:
        print("modgraph: %d import cycle(s) among the modules of %s" % (len(found), shown), file=sys.stderr)
        return 1
    return 0

if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BrokenPipeError:
        # A reader that closed early (`| head`) ends the listing quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
