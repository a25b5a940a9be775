"""The bottom layer every other layer may import: the Open Inference Protocol's transfer types
(``types``), its datatypes (``datatypes``), tensor conversions (``tensors``) and the model
configuration schema (``model_config``). It imports nothing of ``app`` but ``app.errors``."""
