"""Training: task formatting, task mixing, the training loop with checkpoints, the two training stages."""
