"""STYLE.md §3.2: small modules, one concept each; 600 lines is the hard cap."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "gateway"
HARD_CAP = 600


def test_gateway_modules_stay_under_hard_line_cap():
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 10  # the package was found
    too_long = {
        str(path.relative_to(PACKAGE)): n
        for path in modules
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > HARD_CAP
    }
    assert too_long == {}, f"split these modules by concept (cap {HARD_CAP} lines)"
