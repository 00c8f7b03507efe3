"""lora-parity: regression and parity checks for LoRA in diffusers + PEFT."""
