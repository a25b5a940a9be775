"""What tests and benches share, so neither imports the other: tiny ONNX models and repositories
(``models``), a real server process (``server``), OIP binary bodies and checked cases (``oip``), load
generators (``load``) and /metrics parsing (``metrics``)."""
