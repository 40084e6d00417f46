"""Inference: the one Predictor and its backends."""
