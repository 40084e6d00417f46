"""Models: the factory (the only caller of timm.create_model), scratch nets, offline weights,
checkpoints and the LightningModule."""
