"""``shared.runtime.absent``: a module that is not installed is marked absent once, so a
library's ``import`` of it per call fails at once; an installed one is left alone."""

from __future__ import annotations

import sys

import pytest

from shared.runtime.absent import remember_absent


def test_a_missing_module_is_marked_absent_and_an_installed_one_left_alone() -> None:
    missing = "no_such_module_for_the_console_bench"
    assert missing not in sys.modules
    sys.modules.pop("colorsys", None)  # installed, not imported
    try:
        assert remember_absent((missing, "colorsys")) == (missing,)
        assert sys.modules[missing] is None
        assert "colorsys" not in sys.modules  # not imported by the check
        with pytest.raises(ModuleNotFoundError):
            __import__(missing)
        __import__("colorsys")  # still imports
        assert remember_absent((missing,)) == ()  # marked once
    finally:
        sys.modules.pop(missing, None)
