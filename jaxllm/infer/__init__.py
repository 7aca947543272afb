"""Using a trained checkpoint: load it onto a mesh, generate, chat, evaluate."""
