"""Sphinx configuration for captum-shallowcam.

Build offline (what CI does)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

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
    "sphinx.ext.viewcode",
]

templates_path: list[str] = []
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
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
