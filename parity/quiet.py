"""Silencing diffusers/transformers logging, progress bars and warnings: the suite prints its own."""

from __future__ import annotations

import warnings


def quiet_libraries() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
    # transformers first: importing diffusers can make transformers log (e.g. missing torchvision).
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
