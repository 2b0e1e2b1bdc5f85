"""Images to explain: the bundled demo photographs and labelled image folders.

Two folder layouts are read, so that the paper's experiment can be run where the
data exist:

* a flat folder with ``labels.csv`` (columns ``file`` and ``class_index``), as
  in ImageNet-style samples;
* the CUB-200-2011 layout (``images.txt``, ``image_class_labels.txt``,
  ``train_test_split.txt`` and ``images/``); class labels there are 1-based and
  are returned 0-based. Only the test split is read unless asked otherwise.
"""

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Union

from PIL import Image

DATA_DIR = Path(__file__).with_name("data")

#: The bundled photographs and their ImageNet class (index, name).
SAMPLE_IMAGES = {
    "chelsea_cat.jpg": (282, "tiger cat"),
    "coffee_cup.jpg": (967, "espresso"),
    "rocket_launch.jpg": (657, "missile"),
}


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    target: Optional[int]
    name: str

    def load(self) -> Image.Image:
        return Image.open(self.path).convert("RGB")


def sample_images() -> List[LabelledImage]:
    """The photographs shipped with the package (no download needed)."""
    return [
        LabelledImage(DATA_DIR / file, target, name)
        for file, (target, name) in SAMPLE_IMAGES.items()
    ]


def read_image_folder(
    folder: Union[str, Path],
    labels: Optional[Union[str, Path]] = None,
    split: str = "test",
) -> List[LabelledImage]:
    """Reads a labelled folder: CUB-200-2011 layout, or files + ``labels.csv``.

    Args:
        folder (str or Path): The folder.
        labels (str or Path, optional): A CSV with columns ``file`` and
                    ``class_index`` (and optionally ``name``). Default:
                    ``folder/labels.csv`` when it exists; otherwise all images
                    in the folder, unlabelled (the predicted class is explained).
        split (str, optional): For CUB: ``"test"``, ``"train"`` or ``"all"``.
                    Default: ``"test"``

    Returns:
        list[LabelledImage]: Sorted by file name (CUB: by image id).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Image folder {folder} does not exist.")
    if (folder / "images.txt").exists() and (folder / "image_class_labels.txt").exists():
        return _read_cub(folder, split)
    labels_path = Path(labels) if labels is not None else folder / "labels.csv"
    if labels is not None and not labels_path.exists():
        raise FileNotFoundError(f"Labels file {labels_path} does not exist.")
    if labels_path.exists():
        with open(labels_path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        if not rows or not {"file", "class_index"} <= set(rows[0]):
            raise ValueError(
                f"{labels_path} must be a CSV with the columns 'file' and 'class_index'."
            )
        return sorted(
            (
                LabelledImage(folder / r["file"], int(r["class_index"]), r.get("name") or r["file"])
                for r in rows
            ),
            key=lambda item: item.path.name,
        )
    suffixes = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes)
    if not files:
        raise FileNotFoundError(f"No images (jpg, png, ...) in {folder}.")
    return [LabelledImage(p, None, p.stem) for p in files]


def _read_cub(folder: Path, split: str) -> List[LabelledImage]:
    def table(name: str) -> dict:
        with open(folder / name) as handle:
            return dict(line.split(maxsplit=1) for line in handle if line.strip())

    paths = {k: v.strip() for k, v in table("images.txt").items()}
    classes = {k: int(v) - 1 for k, v in table("image_class_labels.txt").items()}
    if split == "all" or not (folder / "train_test_split.txt").exists():
        keep = set(paths)
    elif split in ("test", "train"):
        flag = "1" if split == "train" else "0"
        keep = {k for k, v in table("train_test_split.txt").items() if v.strip() == flag}
    else:
        raise ValueError(f"split must be 'test', 'train' or 'all', got {split!r}.")
    ids = sorted((k for k in paths if k in keep), key=int)
    return [
        LabelledImage(folder / "images" / paths[k], classes[k], Path(paths[k]).stem)
        for k in ids
    ]
