"""Golden images: render, pixels, store (with its update transaction), mismatch artifacts, verify."""
