"""Deployment: exported artifacts (StableHLO, ONNX, TFLite) and real-time streaming lifting."""
