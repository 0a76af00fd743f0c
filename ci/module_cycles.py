#!/usr/bin/env python3
"""Fails if any Rust module imports a module that imports it back.

For each crate's `src/`, the modules compared are the files and directories at one level
(siblings): a sibling `a` depends on sibling `b` when any file under `a` names `b` through
`crate::b`, `super::b` (from a direct child of the parent) or `self::b` in the parent. A
parent re-exporting its children (`pub use child::X`) is not a dependency between
siblings. Prints each cycle found and exits 1; silent and 0 when there are none.
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
CRATE_SRCS = [ROOT / "src", *(p / "src" for p in ROOT.iterdir() if (p / "Cargo.toml").exists() and (p / "src").is_dir())]
PATH = re.compile(r"\b(crate|super)::((?:[a-z_][a-z0-9_]*::)*)([A-Za-z_][A-Za-z0-9_]*|\{[^}]*\})")
STRIP = re.compile(r"//[^\n]*|\"(?:\\.|[^\"\\])*\"")


def module_of(path: pathlib.Path, src: pathlib.Path) -> list[str]:
    """The module path of a source file: src/a/b.rs and src/a/b/mod.rs are ["a", "b"]."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return parts


def referenced(text: str, module: list[str], is_dir_module: bool) -> set[tuple[str, ...]]:
    """Absolute module paths (as far as can be told) that a file refers to."""
    out = set()
    for m in PATH.finditer(STRIP.sub("", text)):
        head, middle, last = m.group(1), m.group(2), m.group(3)
        names = [n for n in middle.split("::") if n]
        tails = [names] if not last.startswith("{") else [names + [x.strip().split("::")[0]] for x in last[1:-1].split(",") if x.strip()]
        if not last.startswith("{"):
            tails = [names + [last]]
        for tail in tails:
            if head == "crate":
                base = []
            else:
                # `super` from a/b.rs or a/b/mod.rs is `a`.
                base = module[:-1]
            out.add(tuple(base + tail))
    return out


def root_reexports(src: pathlib.Path) -> dict[str, str]:
    """Names the crate root re-exports (`pub use catalog::{A, B}`), mapped to their module,
    so `crate::A` counts as a use of `catalog`."""
    out = {}
    for root in ("lib.rs", "main.rs"):
        path = src / root
        if not path.exists():
            continue
        for m in re.finditer(r"pub use ([a-z_][a-z0-9_]*)::([^;]*);", STRIP.sub("", path.read_text())):
            for name in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", m.group(2)):
                out.setdefault(name, m.group(1))
    return out


def cycles_in(src: pathlib.Path) -> list[str]:
    files = {f: module_of(f, src) for f in src.rglob("*.rs")}
    reexports = root_reexports(src)
    edges: dict[tuple[str, ...], set[tuple[str, ...]]] = {}
    for f, module in files.items():
        text = f.read_text()
        for target in referenced(text, module, f.name == "mod.rs"):
            if len(target) == 1 and target[0] in reexports:
                target = (reexports[target[0]],)
            # Compare siblings: the first point where the two paths part.
            common = 0
            while common < min(len(module), len(target)) and module[common] == target[common]:
                common += 1
            if common >= len(module) or common >= len(target):
                continue  # a module and its own ancestor or descendant
            a, b = tuple(module[: common + 1]), tuple(target[: common + 1])
            if a != b:
                edges.setdefault(a, set()).add(b)
    # Any cycle among siblings: Tarjan's strongly connected components.
    index: dict[tuple[str, ...], int] = {}
    low: dict[tuple[str, ...], int] = {}
    stack: list[tuple[str, ...]] = []
    on_stack: set[tuple[str, ...]] = set()
    found: list[str] = []

    def visit(v: tuple[str, ...]) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
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
                names = " -> ".join("::".join(c) for c in sorted(component))
                found.append(f"{src.relative_to(ROOT)}: {names}")

    for v in list(edges):
        if v not in index:
            visit(v)
    return found


def main() -> int:
    found = [c for src in CRATE_SRCS for c in cycles_in(src)]
    for c in found:
        print(f"import cycle: {c}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
