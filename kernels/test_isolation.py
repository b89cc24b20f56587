"""The kernels package stays free of the web stack."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

FORBIDDEN = {"django", "rest_framework", "channels", "celery", "apps"}
ALLOWED = {"numpy", "sklearn", "jsonschema", "kernels", "pytest", "hypothesis"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_it_imports_only_numpy_sklearn_jsonschema_and_the_stdlib() -> None:
    for path in Path(__file__).parent.glob("*.py"):
        third_party = imported_roots(path) - set(sys.stdlib_module_names) - {"__future__"}
        assert third_party <= ALLOWED, path.name


def test_it_loads_data_and_trains_without_pulling_in_the_web_stack() -> None:
    script = (
        "import sys, kernels\n"
        "k = kernels.get_kernel('softmax'); c = k.resolve_config({'dataset': 'iris'})\n"
        "X, y = kernels.load_shard('iris', 0, 2)\n"
        "k.train(k.init(c), X, y, c)\n"
        "print(','.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, check=True
    )
    assert not FORBIDDEN & set(done.stdout.strip().split(","))
