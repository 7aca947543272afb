"""The built-in world: facts (`facts`), the pre-training corpus (`corpus`, `noise`), SFT chats (`chats`),
prompts of four kinds (`prompts`), ranked candidates (`rankings`), the rule-based judge (`judge`), and the
world as a data source (`source`). Deterministic from ``data.builtin.seed``."""
