"""Images to explain: the bundled demo photographs and labelled image folders.

These folder layouts are read, so that the paper's experiment can be run where
the data exist:

* a flat folder with ``labels.csv`` (columns ``file`` and ``class_index``), as
  in ImageNet-style samples;
* the CUB-200-2011 layout (``images.txt``, ``image_class_labels.txt``,
  ``train_test_split.txt`` and ``images/``); class labels there are 1-based and
  are returned 0-based. Only the test split is read unless asked otherwise;
* ILSVRC2012 val as the flat folder of ``ILSVRC2012_val_00000001.JPEG`` ... with
  the devkit (:func:`read_imagenet_val`), labelled with torchvision's class
  indices;
* class subfolders, as torchvision's ``ImageFolder`` and ``ImageNet`` (its
  ``val/`` and ``train/`` folders) lay them out: the class index is the
  position of the folder name in sorted order, which for WNID folders is
  torchvision's ImageNet class index.
"""

import csv
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

DATA_DIR = Path(__file__).parent.parent / "data"
_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}

#: The bundled photographs and their ImageNet class (index, name).
SAMPLE_IMAGES = {
    "chelsea_cat.jpg": (282, "tiger cat"),
    "coffee_cup.jpg": (967, "espresso"),
    "rocket_launch.jpg": (657, "missile"),
}


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    target: int | None
    name: str

    def load(self) -> Image.Image:
        return Image.open(self.path).convert("RGB")


def _class_index(text: str | None, path: Path, line: int) -> int:
    """A labels file's class index, or an error naming the file and the row."""
    try:
        return int(str(text).strip())
    except ValueError:
        raise ValueError(
            f"{path}, line {line}: class_index {text!r} is not an integer class "
            "index; write the model's class number (e.g. 281), not its name."
        ) from None


def sample_images() -> list[LabelledImage]:
    """The photographs shipped with the package (no download needed)."""
    return [
        LabelledImage(DATA_DIR / file, target, name)
        for file, (target, name) in SAMPLE_IMAGES.items()
    ]


def read_image_folder(
    folder: str | Path,
    labels: str | Path | None = None,
    split: str = "test",
    devkit: str | Path | None = None,
) -> list[LabelledImage]:
    """Reads a labelled folder: CUB-200-2011 layout, ILSVRC2012 val with its
    devkit, files + ``labels.csv``, or class subfolders (``ImageFolder``).

    Args:
        folder (str or Path): The folder.
        devkit (str or Path, optional): For a flat ILSVRC2012 val folder: the
                    devkit (see :func:`read_imagenet_val`). Default: None
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
    if (folder / "images.txt").exists() and (
        folder / "image_class_labels.txt"
    ).exists():
        return _read_cub(folder, split)
    if devkit is not None:
        return read_imagenet_val(folder, devkit)
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
                LabelledImage(
                    folder / r["file"],
                    _class_index(r["class_index"], labels_path, line),
                    r.get("name") or r["file"],
                )
                for line, r in enumerate(rows, start=2)
            ),
            key=lambda item: item.path.name,
        )
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _SUFFIXES)
    if not files and any(p.is_dir() for p in folder.iterdir()):
        return _read_class_folders(folder)
    if not files:
        raise FileNotFoundError(f"No images (jpg, png, ...) in {folder}.")
    return [LabelledImage(p, None, p.stem) for p in files]


def _read_class_folders(folder: Path) -> list[LabelledImage]:
    """torchvision's ``ImageFolder`` layout, read with torchvision's own helpers."""
    from torchvision.datasets.folder import find_classes, make_dataset

    _, class_to_idx = find_classes(str(folder))
    samples = make_dataset(str(folder), class_to_idx, extensions=tuple(_SUFFIXES))
    return [
        LabelledImage(Path(path), target, f"{Path(path).parent.name}/{Path(path).stem}")
        for path, target in samples
    ]


def read_imagenet_val(folder: str | Path, devkit: str | Path) -> list[LabelledImage]:
    """ILSVRC2012 val as one flat folder, labelled with torchvision's class indices.

    The photos are ``ILSVRC2012_val_<n>.JPEG`` (``n`` from 1 to 50,000). The
    devkit's ``ILSVRC2012_validation_ground_truth.txt`` gives photo ``n`` an
    ILSVRC2012_ID (1 to 1000), which is *not* torchvision's class index:
    torchvision (``ImageNet``, ``ImageFolder`` over WNID folders, the
    pretrained weights) numbers the 1000 WNIDs in sorted order. The ID -> WNID
    table is in the devkit's ``meta.mat``. ``devkit`` is one of:

    * the unpacked devkit folder ``ILSVRC2012_devkit_t12`` (or its ``data``
      folder), holding ``meta.mat`` and
      ``ILSVRC2012_validation_ground_truth.txt``; reading ``meta.mat`` needs
      scipy;
    * torchvision's ``meta.bin`` (written by ``torchvision.datasets.ImageNet``
      when it unpacks the devkit archive), or the folder that holds it; it
      already lists each val photo's WNID.

    Returns:
        list[LabelledImage]: In photo order, named by file stem.
    """
    folder, devkit = Path(folder), Path(devkit)
    wnids, val_wnids = _imagenet_val_wnids(devkit)
    class_index = {wnid: i for i, wnid in enumerate(sorted(wnids))}
    files = sorted(folder.glob("ILSVRC2012_val_*.*"))
    if not files:
        raise FileNotFoundError(
            f"No ILSVRC2012_val_*.JPEG photos in {folder}: expected the flat val "
            "folder of ILSVRC2012_img_val.tar."
        )
    items = []
    for path in files:
        number = int(path.stem.rsplit("_", 1)[1])
        if not 1 <= number <= len(val_wnids):
            raise ValueError(
                f"{path.name} has no ground truth: the devkit lists {len(val_wnids)} photos."
            )
        items.append(LabelledImage(path, class_index[val_wnids[number - 1]], path.stem))
    return items


def _imagenet_val_wnids(devkit: Path) -> tuple[list[str], list[str]]:
    """(the 1000 WNIDs, the WNID of each val photo) from a devkit or meta.bin."""
    meta_bin = devkit if devkit.is_file() else devkit / "meta.bin"
    if meta_bin.name == "meta.bin" and meta_bin.is_file():
        from torchvision.datasets.imagenet import load_meta_file

        wnid_to_classes, val_wnids = load_meta_file(str(meta_bin.parent), meta_bin.name)
        return list(wnid_to_classes), list(val_wnids)
    data = devkit / "data" if (devkit / "data").is_dir() else devkit
    truth = data / "ILSVRC2012_validation_ground_truth.txt"
    meta_mat = data / "meta.mat"
    for needed in (truth, meta_mat):
        if not needed.is_file():
            raise FileNotFoundError(
                f"{needed} not found: pass the unpacked ILSVRC2012_devkit_t12 folder "
                "(data/meta.mat and data/ILSVRC2012_validation_ground_truth.txt) or "
                "torchvision's ImageNet meta.bin as the devkit."
            )
    try:
        from scipy.io import loadmat
    except ImportError as error:
        raise ImportError(
            "Reading the devkit's meta.mat needs scipy (pip install scipy), or pass "
            "torchvision's meta.bin instead."
        ) from error
    # As torchvision's parse_devkit_archive: the 1000 classes are the synsets
    # without children; fields 0, 1 and 4 are ILSVRC2012_ID, WNID, num_children.
    synsets = loadmat(str(meta_mat), squeeze_me=True)["synsets"]
    leaves = [s for s in synsets if int(s[4]) == 0]
    id_to_wnid = {int(s[0]): str(s[1]) for s in leaves}
    ids = [int(line) for line in truth.read_text().split()]
    return list(id_to_wnid.values()), [id_to_wnid[i] for i in ids]


def _read_cub(folder: Path, split: str) -> list[LabelledImage]:
    def table(name: str) -> dict:
        with open(folder / name) as handle:
            return dict(line.split(maxsplit=1) for line in handle if line.strip())

    paths = {k: v.strip() for k, v in table("images.txt").items()}
    classes = {k: int(v) - 1 for k, v in table("image_class_labels.txt").items()}
    if split == "all" or not (folder / "train_test_split.txt").exists():
        keep = set(paths)
    elif split in ("test", "train"):
        flag = "1" if split == "train" else "0"
        keep = {
            k for k, v in table("train_test_split.txt").items() if v.strip() == flag
        }
    else:
        raise ValueError(f"split must be 'test', 'train' or 'all', got {split!r}.")
    ids = sorted((k for k in paths if k in keep), key=int)
    return [
        LabelledImage(folder / "images" / paths[k], classes[k], Path(paths[k]).stem)
        for k in ids
    ]
