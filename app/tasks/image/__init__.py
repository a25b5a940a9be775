"""Image classification: bytes -> normalised tensor (preprocess) and logits -> labelled top-k (postprocess).

Both read their settings from the model config's ``parameters`` (see ``ImagePreprocessing``), so the
training recipes and the server run exactly the same code.
"""
