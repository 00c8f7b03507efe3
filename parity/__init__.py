"""lora-parity: regression and parity checks for LoRA in diffusers + PEFT."""

__version__ = "0.1.0"
