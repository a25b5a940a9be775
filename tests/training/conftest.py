"""Training tests need the ``train`` extra (torch); without it they are skipped, not failed."""

import pytest

import app.training  # noqa: F401  (sets OpenMP to passive waiting before torch loads)

pytest.importorskip("torch", reason="the train extra (torch) is not installed")
