"""The results page's prose: reStructuredText (and README markdown) templates in
``benchmarks/page/``, filled in from the stored results.

Each template is a :class:`string.Template`: ``${name}`` is a number, a sentence
or a table that the section modules compute from ``benchmarks/results/``;
``$$`` is a dollar sign. Read by ``results_page.py`` and the ``_*_section.py``
modules; it imports none of them.
"""

from pathlib import Path
from string import Template

PAGE = Path(__file__).resolve().parent / "page"


def render(name: str, values: dict) -> str:
    """The template ``benchmarks/page/<name>`` with ``values`` filled in (a
    placeholder without a value is an error; values may go unused)."""
    template = Template((PAGE / name).read_text(encoding="utf-8"))
    return template.substitute(values)
