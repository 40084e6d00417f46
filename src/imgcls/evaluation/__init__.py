"""Evaluation: metrics, pictures and reports."""
