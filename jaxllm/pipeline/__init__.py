"""The whole path as one command: pre-training -> SFT -> reward model -> PPO, and a report."""
