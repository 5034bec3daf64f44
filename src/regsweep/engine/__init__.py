"""The trial engine: models, training and packs of models. PyTorch only, never Optuna."""
