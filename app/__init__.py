"""Dendrite: inference serving for PyTorch-trained, ONNX-served models."""

__version__ = "0.1.0"
