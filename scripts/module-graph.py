#!/usr/bin/env python3
"""The dependency graph of a crate's top-level modules, and its cycles.

    scripts/module-graph.py [--graph] [CRATE_SRC ...]   (default: the three crates' src)

A node is a top-level module of the crate (`src/X.rs` or `src/X/...`); an
edge X -> Y is a `crate::Y` path (in a `use` or inline, `$crate::Y` in a
macro included) written in X's non-test code. Comments, string literals and
`#[cfg(test)]` items are left out. `crate::Name` that names something the
crate root re-exports (`pub use pool::Database;` in lib.rs) counts as an
edge to the module it comes from. Prints the cycles (strongly connected
components of more than one module, each with one loop through it) and
exits 1 when there is one; with --graph, prints every module's edges too.
"""

import re
import sys
from pathlib import Path

DEFAULT_CRATES = ["crates/pgkit/src", "crates/pgkit-cli/src", "crates/dave/src"]


def strip_code(text):
    """The text with comments and string/char literals blanked out."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif m := re.compile(r'b?r(#*)"').match(text, i):
            if i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_"):
                out.append(c)
                i += 1
                continue
            end = text.find('"' + m.group(1), m.end())
            i = n if end < 0 else end + 1 + len(m.group(1))
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'":
            # A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if i + 1 < n and text[i + 1] == "\\":
                end = text.find("'", i + 3)
                i = n if end < 0 else end + 1
                out.append("' '")
            elif i + 2 < n and text[i + 2] == "'":
                i += 3
                out.append("' '")
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def matching_brace(text, open_at):
    depth = 0
    for j in range(open_at, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(text) - 1


CFG_TEST = re.compile(r"#\[cfg\(test\)\]")
ATTRIBUTE = re.compile(r"\s*#\[[^\]]*\]")


def drop_test_items(code):
    """The code without `#[cfg(test)]` items, and the names of the file
    modules (`#[cfg(test)] mod x;`) it leaves out."""
    test_files = []
    while m := CFG_TEST.search(code):
        start, i = m.start(), m.end()
        while a := ATTRIBUTE.match(code, i):
            i = a.end()
        semi, brace = code.find(";", i), code.find("{", i)
        if brace >= 0 and (semi < 0 or brace < semi):
            end = matching_brace(code, brace)
        else:
            end = semi if semi >= 0 else len(code) - 1
            if f := re.match(r"\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*$", code[i:end]):
                test_files.append(f.group(1))
        code = code[:start] + code[end + 1 :]
    return code, test_files


def use_tree_heads(tree):
    """First path segments of a `use` tree's branches: `{a::b, c}` -> a, c."""
    tree = tree.strip()
    if not tree.startswith("{"):
        return [re.match(r"\w*", tree).group(0)]
    heads, depth, item = [], 0, ""
    for ch in tree[1:-1] + ",":
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            if item.strip():
                heads.append(re.match(r"\w*", item.strip()).group(0))
            item = ""
        else:
            item += ch
    return heads


CRATE_PATH = re.compile(r"\bcrate::(\{[^;]*?\}(?=\s*;)|\w+)")


def crate_heads(code):
    for m in CRATE_PATH.finditer(code):
        target = m.group(1)
        if target.startswith("{"):
            # Balance the group (the lazy match stops at the first `};`).
            end = matching_brace(code, m.start(1))
            target = code[m.start(1) : end + 1]
        yield from use_tree_heads(target)


def root_exports(lib_code, modules):
    """Names the crate root re-exports, mapped to the module they come from."""
    exports = {}
    for m in re.finditer(r"\buse\s+(?:crate::)?(\w+)::([^;]+);", lib_code):
        if m.group(1) not in modules:
            continue
        tail = m.group(2).strip()
        names = re.findall(r"(\w+)\s*(?:as\s+(\w+))?", tail.strip("{}"))
        for name, alias in names:
            if name not in ("self", "as"):
                exports[alias or name] = m.group(1)
    return exports


def module_graph(src):
    src = Path(src)
    modules = {p.stem for p in src.glob("*.rs")} | {p.name for p in src.iterdir() if p.is_dir()}
    modules -= {"lib", "main"}
    lib = src / "lib.rs"
    lib_code = drop_test_items(strip_code(lib.read_text()))[0] if lib.exists() else ""
    exports = root_exports(lib_code, modules)
    macros = {}
    files = {}
    for path in sorted(src.rglob("*.rs")):
        rel = path.relative_to(src)
        top = rel.parts[0].removesuffix(".rs")
        if top in ("lib", "main"):
            continue
        code = strip_code(path.read_text())
        for name in re.findall(r"macro_rules!\s*(\w+)", code):
            macros[name] = top
        files[path] = (top, code)
    excluded = set()
    for path, (top, code) in files.items():
        code, test_files = drop_test_items(code)
        files[path] = (top, code)
        base = path.parent if path.name in ("mod.rs",) or path.parent == src else path.with_suffix("")
        if path.parent == src:
            base = src / top
        for name in test_files:
            excluded |= {base / f"{name}.rs", base / name / "mod.rs"}
            excluded |= set((base / name).rglob("*.rs")) if (base / name).is_dir() else set()
    graph = {m: set() for m in modules}
    unknown = set()
    for path, (top, code) in files.items():
        if path in excluded:
            continue
        for head in crate_heads(code):
            target = head if head in modules else exports.get(head) or macros.get(head)
            if target is None:
                if head not in ("self", ""):
                    unknown.add(f"{path.relative_to(src)}: crate::{head}")
                continue
            if target != top:
                graph[top].add(target)
    return graph, unknown


def cycles(graph):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def a_loop(graph, component):
    """One loop through the component's first module, as a path."""
    members, start = set(component), component[0]
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        for w in sorted(graph[path[-1]] & members):
            if w == start:
                return path + [start]
            if w not in seen:
                seen.add(w)
                paths.append(path + [w])
    return component


def main(argv):
    show = "--graph" in argv
    crates = [a for a in argv if not a.startswith("--")] or DEFAULT_CRATES
    status = 0
    for src in crates:
        graph, unknown = module_graph(src)
        found = cycles(graph)
        print(f"{src}: {len(graph)} modules, {sum(map(len, graph.values()))} edges, "
              + (f"{len(found)} cycle(s)" if found else "acyclic"))
        if show:
            for module in sorted(graph):
                print(f"  {module} -> {', '.join(sorted(graph[module])) or '-'}")
        for name in sorted(unknown):
            print(f"  unresolved: {name}")
        for component in found:
            print(f"  cycle among {', '.join(component)}: {' -> '.join(a_loop(graph, component))}")
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
