"""Interchange with other tools' model formats (Hugging Face safetensors checkpoints)."""
