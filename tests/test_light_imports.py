"""The import rule (docs/architecture.md, "Imports"): the CLI parser and the pure-maths modules stay light.

Each check runs in a fresh interpreter, so that nothing another test imported counts.
"""

import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "trl", "datasets")


def _loaded_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()


def test_cli_parser_imports_no_heavy_package():
    code = ("import contextlib, io\nfrom varylm_hf.cli import main, make_parser\nmake_parser()\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n    main(['--help'])")
    assert _loaded_after(code) == []


@pytest.mark.parametrize("module", ["varylm_hf", "varylm_hf.metrics", "varylm_hf.data.normalize", "varylm_hf.data.splits",
                                    "varylm_hf.data.labels", "varylm_hf.data.words"])
def test_pure_modules_import_no_heavy_package(module):
    assert _loaded_after(f"import {module}") == []
