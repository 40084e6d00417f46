"""Data: folder scanning, splits, image decoding, transform presets, the DataModule, caches."""
