"""Training: real data -> trained torch model -> ONNX graph(s) -> checked, evaluated, versioned in ``models/``.

Usage::

    python -m app.training <recipe> [--profile smoke|full] [--data PATH] [--repository models]
    python -m app.training all        # every default model that has no version yet, fastest first
    python -m app.training list       # recipes, their models and data sources
    python -m app.training quantize fashion-cnn   # an int8 copy of the latest version as the next version
    python -m app.training.data       # obtain the default data sets (``make data``)

One run (``runner.run_recipe``): seed -> ``load_data`` -> ``build_model`` -> ``train`` -> ``export`` (ONNX +
parity check against torch, fails loudly) -> ``write_assets`` (labels, catalogues) -> ``evaluate_onnx``
(ONNX Runtime through the serving code in ``app.tasks``) -> ``card.json`` -> the version folder
``models/<name>/<N>/`` appears atomically, and ``models/<name>/config.yaml`` is written if missing.

Adding a recipe is one module:

1. Create ``app/training/recipes/<task>.py`` with a subclass of ``app.training.recipe.Recipe``: set the class
   attributes (``name`` = model name, ``task``, ``expected_minutes``, ``source``) and implement ``load_data``,
   ``build_model``, ``train``, ``export`` (use ``app.training.export.export_onnx`` and
   ``app.training.parity.check_parity``), ``write_assets``, ``model_config`` and ``evaluate_onnx``.
   Choose on a validation split only (say what in ``selection``); put the test split behind
   ``self.test = HeldOut(...)`` in ``load_data`` and read it once, in ``evaluate_onnx``. For
   ``quantize``, set ``quantization`` ("static"/"dynamic") and implement ``sample_feeds``.
   Respect ``self.profile`` (``smoke``: a seconds-long run on a small subset) and ``self.data_path``
   (the user's own data in the recipe's documented plain format).
2. Register the class in ``app/training/recipes/__init__.py`` (``RECIPES``).
3. Add its smoke test under ``tests/training/recipes/``.

Torch is only imported here (the ``train`` extra); serving code never imports this package.
"""

import os

# Before torch loads OpenMP: worker threads that busy-wait between operations collapse throughput when the
# machine is shared (measured here: a CNN step took 5x longer with two spinning threads beside other jobs).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
