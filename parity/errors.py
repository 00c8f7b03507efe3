"""The one error type for bad user input: it names the file and the key."""

from __future__ import annotations


class ParityInputError(Exception):
    """Bad input (file, key, family, path). The CLI prints it as one line and exits 2."""

    def __init__(self, message: str, path: str | None = None, key: str | None = None) -> None:
        self.path = path
        self.key = key
        self.message = message
        where = ""
        if path is not None:
            where += f"{path}"
        if key is not None:
            where += f" [key {key}]" if where else f"[key {key}]"
        super().__init__(f"{where}: {message}" if where else message)


class LoaderRefused(Exception):
    """diffusers refused (raised on, or loaded nothing from) a file our reader parsed as valid: a
    parity failure of diffusers, not bad input. The CLI prints it as one line and exits 1."""

    def __init__(self, path: str | None, layout: str, reason: str) -> None:
        self.path = path
        self.layout = layout
        self.reason = reason
        self.known: str | None = None  # "known diffusers behaviour: …" when a pinned finding is this refusal
        super().__init__(path, layout, reason)

    def __str__(self) -> str:
        text = f"{self.path}: diffusers refused a valid {self.layout} file: {self.reason}"
        return text + (f" ({self.known})" if self.known else "")
