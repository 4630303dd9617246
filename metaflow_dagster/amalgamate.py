"""The runtime as the one source a definitions file embeds: its modules pasted together, as SQLite builds
``sqlite3.c`` from its files.

``metaflow_dagster/runtime/`` is a package of small modules, each linted and tested on its own. A generated
file must need nothing but ``dagster``, ``metaflow`` and the standard library, so the compiler embeds their
*amalgamation*: a short docstring, every module's top-level imports (standard library and Dagster) merged
into one block, then each module in dependency order (MODULES) with its docstring as a comment, without the
imports between runtime modules: in one file every name they import is defined above its use. The C core
moves that import block to the top of the generated file. Needs only the standard library: compiling does
not import Dagster.
"""

import ast
import os

# Dependency order: a module imports only from modules before it.
MODULES = ("contract", "output", "tasks", "zygote", "remote", "executor", "package", "tokens", "commands", "processes",
           "sensors", "flow")
RUNTIME_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runtime")

_HEAD = '''"""Runtime of a generated metaflow-dagster definitions file: the modules of metaflow_dagster/runtime/
amalgamated (%s).
Every name the compiler decided is read from the FLOW literal."""
'''


class AmalgamationError(Exception):
    """The runtime's modules cannot be pasted into one source (a rule of this module is broken)."""


def _split(name, text):
    """(imports, body) of module ``name``: its top-level import statements before the first other statement,
    and its source after them. Raises AmalgamationError for an import further down or a `from X import *`."""
    tree = ast.parse(text, name)
    nodes = list(tree.body)
    if nodes and isinstance(nodes[0], ast.Expr) and isinstance(getattr(nodes[0], "value", None), ast.Constant):
        nodes.pop(0)  # the docstring
    imports = []
    while nodes and isinstance(nodes[0], (ast.Import, ast.ImportFrom)):
        imports.append(nodes.pop(0))
    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            raise AmalgamationError("runtime/%s.py line %d: a top-level import after other statements" % (name, node.lineno))
    lines = text.splitlines(keepends=True)
    start = imports[-1].end_lineno if imports else (tree.body[0].end_lineno if tree.body else 0)
    return imports, "".join(lines[start:]).strip("\n") + "\n"


def _merge(statements):
    """One import block from the import statements of every module, runtime-relative ones dropped."""
    plain, froms = set(), {}
    for node in statements:
        if isinstance(node, ast.Import):
            plain.update(alias.name for alias in node.names)
        elif node.level == 0:
            if any(alias.name == "*" for alias in node.names):
                raise AmalgamationError("`from %s import *` cannot be amalgamated" % node.module)
            froms.setdefault(node.module, set()).update(
                alias.name if alias.asname is None else "%s as %s" % (alias.name, alias.asname) for alias in node.names)
    out = ["import %s\n" % m for m in sorted(plain)]
    std = [m for m in sorted(froms) if m.split(".")[0] != "dagster"]
    out += ["from %s import %s\n" % (m, ", ".join(sorted(froms[m]))) for m in std]
    for module in sorted(m for m in froms if m.split(".")[0] == "dagster"):
        names = sorted(froms[module])
        out.append("\nfrom %s import (\n%s)\n" % (module, "".join("    %s,\n" % n for n in names)))
    return "".join(out)


def runtime_source(root=RUNTIME_DIR):
    """The amalgamated runtime source. Raises AmalgamationError when two modules define one top-level name."""
    statements, sections, defined = [], [], {}
    for name in MODULES:
        with open(os.path.join(root, name + ".py"), encoding="utf-8") as f:
            text = f.read()
        tree = ast.parse(text)
        for node in tree.body:
            targets = [node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else [
                t.id for t in getattr(node, "targets", ()) if isinstance(t, ast.Name)]
            for target in targets:
                if defined.setdefault(target, name) != name:
                    raise AmalgamationError("runtime/%s.py and runtime/%s.py both define %s"
                                            % (defined[target], name, target))
        imports, body = _split(name, text)
        statements += imports
        doc = (ast.get_docstring(tree) or "").strip().splitlines()
        sections.append("# ----- runtime/%s.py%s\n\n%s" % (name, ": " + doc[0] if doc else "", body))
    return _HEAD % ", ".join(MODULES) + "\n" + _merge(statements) + "\n\n" + "\n\n".join(sections)


def main(argv=None):
    """``python -m metaflow_dagster.amalgamate [OUT]``: write the amalgamated runtime to OUT (default: stdout),
    for ``mfdc -r``."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    text = runtime_source()
    if args:
        with open(args[0], "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
