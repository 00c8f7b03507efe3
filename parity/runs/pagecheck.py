"""What a report page must hold for a reader to trust it at a glance, checked on the page itself (issue 34):

- **a case belongs to one section**: every section of the gate page lists the tests it stands for (the
  markdown in a ``<details>`` list of ``- `test id` ``, the HTML as ``data-case`` attributes), and no test
  is listed under two headings;
- **every image is captioned**: each side-by-side golden image says which panel is expected, actual and
  difference (markdown: the line after the image; HTML: the ``<figcaption>`` of its ``<figure>``).

The gate's tests run these on the pages it writes, and on hand-broken pages as the negative controls.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

CAPTION_WORDS = ("expected", "actual", "difference")
_MD_HEADING = re.compile(r"^## (.*)$")
_MD_CASE = re.compile(r"^- `([^`]+)`\s*$")
_MD_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")


def _captioned(text: str) -> bool:
    text = text.lower()
    at = [text.find(word) for word in CAPTION_WORDS]
    return all(i >= 0 for i in at) and at == sorted(at)


def md_cases(text: str) -> dict[str, list[str]]:
    """test → the headings of the markdown sections that list it."""
    where: dict[str, list[str]] = {}
    title = ""
    for line in text.splitlines():
        heading = _MD_HEADING.match(line)
        if heading:
            title = heading.group(1)
            continue
        case = _MD_CASE.match(line)
        if case and title not in where.setdefault(case.group(1), []):
            where[case.group(1)].append(title)
    return where


def md_uncaptioned_images(text: str) -> list[str]:
    """Each image whose next non-empty line is not a caption naming expected, actual and difference."""
    lines = text.splitlines()
    bad = []
    for i, line in enumerate(lines):
        for image in _MD_IMAGE.findall(line):
            rest = [x for x in lines[i + 1:] if x.strip()]
            if not rest or not _captioned(rest[0]):
                bad.append(image)
    return bad


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.title = ""
        self.in_h2 = False
        self.where: dict[str, list[str]] = {}
        self.figures: list[dict] = []  # open figures: {"imgs": [...], "caption": str}
        self.in_caption = 0
        self.uncaptioned: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "h2":
            self.in_h2, self.title = True, ""
        case = attrs.get("data-case")
        if case is not None and self.title not in self.where.setdefault(case, []):
            self.where[case].append(self.title)
        if tag == "figure":
            self.figures.append({"imgs": [], "caption": ""})
        elif tag == "figcaption":
            self.in_caption += 1
        elif tag == "img":
            src = attrs.get("src", "")
            if self.figures:
                self.figures[-1]["imgs"].append(src)
            else:
                self.uncaptioned.append(src)

    def handle_endtag(self, tag):
        if tag == "h2":
            self.in_h2 = False
        elif tag == "figcaption":
            self.in_caption -= 1
        elif tag == "figure" and self.figures:
            figure = self.figures.pop()
            if not _captioned(figure["caption"]):
                self.uncaptioned += figure["imgs"]

    def handle_data(self, data):
        if self.in_h2:
            self.title += data
        if self.in_caption and self.figures:
            self.figures[-1]["caption"] += data


def html_cases(text: str) -> dict[str, list[str]]:
    """test (``data-case``) → the ``<h2>`` titles of the sections that list it."""
    page = _Page()
    page.feed(text)
    return page.where


def html_uncaptioned_images(text: str) -> list[str]:
    """The ``src`` of each image outside a ``<figure>`` whose caption names expected, actual and difference."""
    page = _Page()
    page.feed(text)
    page.close()
    return page.uncaptioned


def in_more_than_one_section(where: dict[str, list[str]]) -> dict[str, list[str]]:
    return {case: titles for case, titles in where.items() if len(titles) > 1}
