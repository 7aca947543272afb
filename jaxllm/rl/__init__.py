"""On-policy machinery shared by PPO, GRPO and their kin: rollouts, advantages, KL control, buffer, evaluation."""
