"""Training: strategies, callbacks and the train/resume job."""
