"""The package's shape: no import circles and no `_private` name imported from another module.

Every import counts, also those inside functions (a lazy import still ties two modules together)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent / "kit"


def module_name(path: Path) -> str:
    parts = path.relative_to(KIT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def kit_imports() -> dict[str, list[tuple[str, str | None]]]:
    """module -> [(imported kit module, imported name or None)] for every import in kit/."""
    modules = {module_name(p): p for p in KIT.rglob("*.py")}
    out: dict[str, list[tuple[str, str | None]]] = {}
    for mod, path in modules.items():
        found = out.setdefault(mod, [])
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found += [(a.name, None) for a in node.names if a.name.startswith("kit")]
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kit"):
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    found.append((sub, None) if sub in modules else (node.module, a.name))
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle's first sighting, by depth-first search."""
    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
    return found


def test_no_import_circles():
    imports = kit_imports()
    # a package's __init__ importing its own modules is how it lists them, not a circle
    graph = {m: {t for t, _ in deps if t != m and t in imports and not m.startswith(t + ".")} for m, deps in imports.items()}
    assert cycles(graph) == []


def test_no_private_names_imported_across_modules():
    bad = [f"{mod} imports {target}.{name}" for mod, deps in kit_imports().items() for target, name in deps
           if name and name.startswith("_") and target != mod]  # fmt: skip
    assert bad == []


def test_the_checks_can_fail():
    """The cycle finder sees a circle, and the import walker sees a private import (this file's own shape)."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


# An --stt spec is parsed once, by kit.config.SttSpec.parse; everywhere else a spec is an SttSpec, and a
# string test of it (stt == "whisper", .startswith("delay:"), a ':' split) is the old bug coming back.
SPEC_STRING_TEST = re.compile(
    r"""stt\w*\)?\s*[!=]=\s*["']|\.startswith\(\s*\(?\s*["'](whisper["']|delay|service|stream)|stt\w*\)?\.(partition|split)\(""")


def spec_string_tests(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if SPEC_STRING_TEST.search(line)]


def test_no_string_test_of_an_stt_spec_outside_its_parser():
    bad = [f"{p.relative_to(KIT.parent)}: {line}" for p in KIT.rglob("*.py") if p.name != "config.py"
           for line in spec_string_tests(p.read_text(encoding="utf-8"))]  # fmt: skip
    assert bad == []


def test_the_spec_check_can_fail():
    assert spec_string_tests('if config.stt == "whisper":\nok = 1\nx = str(rec["stt"]).startswith("delay:")\n'
                             'kind, _, v = config.stt.partition(":")') == [
        'if config.stt == "whisper":', 'x = str(rec["stt"]).startswith("delay:")', 'kind, _, v = config.stt.partition(":")']  # fmt: skip
    assert spec_string_tests('if config.stt.kind == "whisper":') == []


MAX_LINES = 450


def test_no_module_over_450_lines():
    sizes = {str(p.relative_to(KIT.parent)): len(p.read_text(encoding="utf-8").splitlines()) for p in KIT.rglob("*.py")}
    assert {m: n for m, n in sizes.items() if n > MAX_LINES} == {}


def test_every_module_says_what_it_owns():
    """A one-line docstring (or more) at the top of every module, package __init__ included."""
    missing = [str(p.relative_to(KIT.parent)) for p in KIT.rglob("*.py")
               if not ast.get_docstring(ast.parse(p.read_text(encoding="utf-8")))]  # fmt: skip
    assert missing == []
