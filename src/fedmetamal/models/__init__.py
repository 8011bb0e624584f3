"""Networks as pure functions of a flat parameter vector, checkpoints and ONNX export."""
