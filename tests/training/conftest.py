"""Training tests need the ``train`` extra (torch); without it they are skipped, not failed."""

import pytest

pytest.importorskip("torch", reason="the train extra (torch) is not installed")
