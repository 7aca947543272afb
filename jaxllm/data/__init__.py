"""Data path: sources, the built-in world corpus, tokenizer, packing and iteration."""
