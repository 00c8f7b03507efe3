"""The LoRA compatibility matrix: the suite's merge, unfuse and hotswap checks on the case table under several
library version sets, each in its own cached environment, as one grid (docs/matrix.md)."""
