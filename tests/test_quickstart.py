"""The quick starts of the README and the docs run as written."""

import re
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _readme_quickstart() -> str:
    section = (ROOT / "README.md").read_text().split("## Quickstart", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _docs_quickstart() -> str:
    section = (ROOT / "docs" / "index.rst").read_text().split("Quick start\n---", 1)[1]
    block = re.search(r".. code-block:: python\n\n((?:   .*\n|\n)+)", section).group(1)
    return "\n".join(line[3:] for line in block.splitlines())


@pytest.mark.parametrize(
    "source", [_readme_quickstart, _docs_quickstart], ids=["readme", "docs"]
)
def test_quickstart_makes_an_attribution_and_a_figure(
    source, tmp_path, monkeypatch, efficientnet_lite0
):
    monkeypatch.chdir(tmp_path)
    # The session's copy of the same pretrained model, to save loading it again.
    monkeypatch.setattr(
        "captum_shallowcam.models.load_model", lambda name: efficientnet_lite0
    )
    namespace: dict = {}
    exec(compile(source(), f"<{source.__name__}>", "exec"), namespace)
    assert tuple(namespace["attr"].shape) == (1, 1, 56, 56)
    assert namespace["attr"].max() > 0
    assert 0.0 < namespace["result"].insertion_auc.item() <= 1.0
    title = namespace["ax"].get_title()
    assert title.startswith("LayerShallowCam, stage2 (56 x 56)\noverall ")
    with Image.open(tmp_path / "tiger_cat_stage2.png") as figure:
        assert min(figure.size) >= 400
