"""jaxllm: pre-training, SFT, reward modelling and RLHF for language models in JAX/Flax."""

__version__ = "0.1.0"
