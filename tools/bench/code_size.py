#!/usr/bin/env python
"""The largest files and functions (in lines) of the source folders: a quick look at where code piles up.

python tools/bench/code_size.py                 # lvmm/, stages/, datasets/, tools/ of this checkout
python tools/bench/code_size.py ROOT lvmm       # other folders, under another checkout
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

FOLDERS = ("lvmm", "stages", "datasets", "tools")


def measure(root: Path, folders) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(lines, file) of every .py file and (lines, file:function) of every function, largest first."""
    files, functions = [], []
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            text = path.read_text()
            rel = path.relative_to(root)
            files.append((len(text.splitlines()), str(rel)))
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    functions.append((node.end_lineno - node.lineno + 1, f"{rel}:{node.name}"))
    return sorted(files, reverse=True), sorted(functions, reverse=True)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else Path(__file__).resolve().parents[2]
    files, functions = measure(root, args[1:] or FOLDERS)
    print(
        f"{sum(n for n, _ in files)} lines in {len(files)} files; {len(functions)} functions, "
        f"{sum(n > 100 for n, _ in functions)} over 100 lines, {sum(n > 60 for n, _ in functions)} over 60"
    )
    print("largest files:")
    for n, name in files[:10]:
        print(f"  {n:5d}  {name}")
    print("largest functions:")
    for n, name in functions[:12]:
        print(f"  {n:5d}  {name}")


if __name__ == "__main__":
    main()
