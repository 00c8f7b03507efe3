"""The families: one registry entry each. Apart from the package's ``__init__`` so that the zoo's own
modules (the single-file loader, the published architecture) can look a family up without importing the
package that imports them."""

from __future__ import annotations

from parity.errors import ParityInputError
import parity.zoo.flux as flux
import parity.zoo.flux2 as flux2
import parity.zoo.qwenimage as qwenimage
import parity.zoo.qwenimage_edit as qwenimage_edit
import parity.zoo.sd2 as sd2
import parity.zoo.sd15 as sd15
import parity.zoo.sdxl as sdxl
import parity.zoo.wan as wan
import parity.zoo.zimage as zimage
from parity.zoo.family import Family

# Every family, in the order commands list them: a new family is one module and one entry here.
ALL: tuple[Family, ...] = (sd15.FAMILY, sdxl.FAMILY, flux.FAMILY, qwenimage.FAMILY, qwenimage_edit.FAMILY, sd2.FAMILY,
                           wan.FAMILY, zimage.FAMILY, flux2.DEV_FAMILY, flux2.KLEIN_FAMILY)
# A family whose pipeline this diffusers lacks is left out of the registry (and so out of every case
# table) with the reason, which get_family gives: the gate's old env runs diffusers 0.35.
UNAVAILABLE: dict[str, str] = {f.name: why for f in ALL if (why := f.unavailable()) is not None}
FAMILIES: dict[str, Family] = {f.name: f for f in ALL if f.name not in UNAVAILABLE}


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        if name in UNAVAILABLE:
            raise ParityInputError(f"family {name!r} is not available here: {UNAVAILABLE[name]}") from None
        raise ParityInputError(f"unknown family {name!r}; known: {', '.join(FAMILIES)}") from None
