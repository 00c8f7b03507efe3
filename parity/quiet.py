"""Silencing diffusers/transformers logging, progress bars and warnings: the suite prints its own."""

from __future__ import annotations

import warnings


# The quantization packages log at import (torchao: CUDA-only extensions it cannot load on a CPU; bitsandbytes:
# a kernel hub it cannot reach; torch: torchao's enum registrations): warnings about this machine, not the run.
IMPORT_NOISE = ("torchao", "bitsandbytes", "torch.utils._pytree")


def quiet_libraries() -> None:
    import logging

    for name in IMPORT_NOISE:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
    # transformers first: importing diffusers can make transformers log (e.g. missing torchvision).
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
