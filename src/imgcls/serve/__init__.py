"""Serving: the FastAPI app and its upload page."""
