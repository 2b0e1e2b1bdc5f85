"""Readers for the paper's datasets, on small fixtures built in their layouts."""

import shutil

import numpy as np
import pytest
import torch

from captum_shallowcam.experiments.images import (
    read_image_folder,
    read_imagenet_val,
    sample_images,
)

# A devkit with three classes (the leaves) and one inner synset. The
# ILSVRC2012_IDs are not in WNID order, as in the real devkit:
# ID 1 = n03000003, ID 2 = n01000001, ID 3 = n02000002; sorted WNIDs give
# torchvision's indices n01000001 -> 0, n02000002 -> 1, n03000003 -> 2.
SYNSETS = [
    (1, "n03000003", "third, thing", 0),
    (2, "n01000001", "first", 0),
    (3, "n02000002", "second", 0),
    (4, "n09999999", "inner node", 3),
]
GROUND_TRUTH = [1, 3, 2, 1]  # photos 1..4
EXPECTED = [2, 1, 0, 2]


def _val_folder(root):
    photo = sample_images()[0].path
    root.mkdir()
    for n in range(1, 5):
        shutil.copy(photo, root / f"ILSVRC2012_val_{n:08d}.JPEG")
    return root


def _devkit(root):
    sio = pytest.importorskip("scipy.io", reason="meta.mat is a MATLAB file")
    data = root / "ILSVRC2012_devkit_t12" / "data"
    data.mkdir(parents=True)
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children",
              "wordnet_height", "num_train_images"]  # fmt: skip
    synsets = np.array(
        [(i, w, words, "gloss", k, np.zeros(k), 0, 1300) for i, w, words, k in SYNSETS],
        dtype=[(f, "O") for f in fields],
    )
    sio.savemat(str(data / "meta.mat"), {"synsets": synsets})
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text(
        "".join(f"{i}\n" for i in GROUND_TRUTH)
    )
    return root / "ILSVRC2012_devkit_t12"


def test_imagenet_val_with_the_devkit_maps_ids_to_torchvision_indices(tmp_path):
    val = _val_folder(tmp_path / "val")
    devkit = _devkit(tmp_path)
    items = read_imagenet_val(val, devkit)
    assert [i.name for i in items] == [f"ILSVRC2012_val_{n:08d}" for n in range(1, 5)]
    assert [i.target for i in items] == EXPECTED
    # The devkit's data folder works too, and so does read_image_folder.
    assert [i.target for i in read_imagenet_val(val, devkit / "data")] == EXPECTED
    assert [i.target for i in read_image_folder(val, devkit=devkit)] == EXPECTED


def test_imagenet_val_with_torchvisions_meta_bin(tmp_path):
    val = _val_folder(tmp_path / "val")
    wnid_to_classes = {w: (words,) for _, w, words, k in SYNSETS if k == 0}
    by_id = {i: w for i, w, _, _ in SYNSETS}
    torch.save(
        (wnid_to_classes, [by_id[i] for i in GROUND_TRUTH]), tmp_path / "meta.bin"
    )
    assert [i.target for i in read_imagenet_val(val, tmp_path)] == EXPECTED
    assert [i.target for i in read_imagenet_val(val, tmp_path / "meta.bin")] == EXPECTED


def test_imagenet_val_names_what_is_missing(tmp_path):
    val = _val_folder(tmp_path / "val")
    with pytest.raises(FileNotFoundError, match="ILSVRC2012_devkit_t12"):
        read_imagenet_val(val, tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    devkit = _devkit(tmp_path)
    with pytest.raises(FileNotFoundError, match="No ILSVRC2012_val"):
        read_imagenet_val(tmp_path / "empty", devkit)


def test_class_subfolders_are_read_like_imagefolder(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    photos = sample_images()
    for wnid, photo in (("n02000002", photos[0]), ("n01000001", photos[1])):
        (tmp_path / wnid).mkdir()
        for k in range(2):
            shutil.copy(photo.path, tmp_path / wnid / f"img_{k}.JPEG")
    items = read_image_folder(tmp_path)
    reference = torchvision.datasets.ImageFolder(str(tmp_path))
    assert [(str(i.path), i.target) for i in items] == [
        (p, t) for p, t in reference.samples
    ]
    assert [i.target for i in items] == [0, 0, 1, 1]
    # Same file names in two classes still give distinct names.
    assert len({i.name for i in items}) == 4 and items[0].name == "n01000001/img_0"
