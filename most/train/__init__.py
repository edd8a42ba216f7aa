"""Training: task formatting and mixing, freezing, the training loop with checkpoints, and the runner of the two training stages."""
