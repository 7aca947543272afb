"""Train state and optimizer, the jitted step, the loop, checkpoints and metrics."""
