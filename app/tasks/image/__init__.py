"""Image classification: bytes -> normalised tensor and logits -> labelled top-k (``processing``)."""
