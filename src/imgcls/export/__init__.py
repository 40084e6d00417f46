"""Export: ONNX and TorchScript files that carry their classes and preprocessing."""
