"""LoRA files: layouts (reading and writing), the format-neutral form, synthesis."""
