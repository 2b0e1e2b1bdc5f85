"""Sphinx configuration for captum-shallowcam.

Build offline (what CI does)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Formulas are rendered by MathJax from a local copy (the
``sphinx-mathjax-offline`` package, in the ``docs`` extra), never from a CDN.

Cross-links to the Python, PyTorch and Captum docs (intersphinx) need their
``objects.inv`` files from the internet, so they are off by default and the
build never touches the network. Set ``SHALLOWCAM_DOCS_ONLINE=1`` to turn them on::

    SHALLOWCAM_DOCS_ONLINE=1 python -m sphinx -b html docs docs/_build/html
"""

from __future__ import annotations

import os
import sys
from datetime import date

# Import the package from this checkout even when it is not installed.
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

import captum_shallowcam  # noqa: E402

project = "captum-shallowcam"
author = "captum-shallowcam contributors"
copyright = f"{date.today().year}, {author}"
release = captum_shallowcam.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    # Ships MathJax 3 and points mathjax_path at the copy in _static, so that
    # formulas render with no internet access (the default loads it from a CDN).
    "sphinx-mathjax-offline",
    "sphinx.ext.viewcode",
]

templates_path: list[str] = []
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store"]
root_doc = "index"

# -- autodoc / napoleon -------------------------------------------------------
autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autoclass_content = "both"
napoleon_google_docstring = True
napoleon_numpy_docstring = True
napoleon_use_rtype = False

# -- intersphinx: only when explicitly online ---------------------------------
if os.environ.get("SHALLOWCAM_DOCS_ONLINE"):
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "torch": ("https://pytorch.org/docs/stable", None),
        "captum": ("https://captum.ai/api", None),
    }
else:
    intersphinx_mapping = {}

# -- HTML -----------------------------------------------------------------------
try:
    import furo  # noqa: F401

    html_theme = "furo"
except ImportError:  # the built-in theme needs nothing extra
    html_theme = "alabaster"
html_title = f"captum-shallowcam {release}"
html_static_path: list[str] = []


# -- Show Captum's base classes, not the package's private ones ---------------
def _public_bases(bases: list) -> list:
    """Replaces each private base (``_RelevanceCamBase``) by its own bases, so
    that the API page says ``Bases: LayerAttribution, GradientAttribution``."""
    public: list = []
    for base in bases:
        found = (
            [base]
            if not base.__name__.startswith("_")
            else _public_bases(list(base.__bases__))
        )
        public.extend(b for b in found if b not in public)
    return public


def _process_bases(app, name, obj, options, bases: list) -> None:
    bases[:] = _public_bases(list(bases))


# -- The method list, written from the method registry -------------------------
def _write_method_table(app) -> None:
    """docs/_generated/methods.rst: one row per registered method, so that the
    docs' list is the registry's (included by api.rst)."""
    from captum_shallowcam.methods import METHODS

    rows = [
        ".. list-table:: Methods by name (``--methods``, ``make_explainer``)",
        "   :header-rows: 1",
        "   :widths: 16 22 38 24",
        "",
        "   * - Name",
        "     - Class",
        "     - Map",
        "     - Citation",
    ]
    for spec in METHODS.values():
        module = spec.method.__module__
        public = "captum.attr" if module.startswith("captum.") else "captum_shallowcam"
        options = ", ".join(f"``+{o}``" for o in spec.options)
        defaults = ", ".join(f"``{k}={v!r}``" for k, v in spec.defaults.items())
        rows += [
            f"   * - ``{spec.name}``",
            f"     - :class:`{public}.{spec.method.__name__}`"
            + (f" ({defaults})" if defaults else ""),
            f"     - {spec.description}"
            + (
                "; extra forward passes per channel, group or step"
                if spec.perturbation
                else ""
            )
            + (f"; options: {options}" if options else ""),
            f"     - {spec.citation}",
        ]
    folder = os.path.join(app.srcdir, "_generated")
    os.makedirs(folder, exist_ok=True)
    text = "\n".join(rows) + "\n"
    path = os.path.join(folder, "methods.rst")
    if not os.path.exists(path) or open(path).read() != text:
        with open(path, "w") as f:
            f.write(text)


def setup(app) -> None:
    app.connect("autodoc-process-bases", _process_bases)
    app.connect("builder-inited", _write_method_table)
