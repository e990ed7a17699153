"""Images in memory, decoded once: random crops for training, fixed crops for validation."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"}


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images in {folder}")
    return files


def load_rgb_uint8(path: Path) -> torch.Tensor:
    with Image.open(path) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)


class ImageBank:
    """All training images as uint8 tensors; crops are sliced, never re-decoded."""

    def __init__(self, folder: str | Path, min_side: int = 0):
        self.images = [im for im in map(load_rgb_uint8, list_images(folder))
                       if min(im.shape[1:]) >= min_side]
        if not self.images:
            raise ValueError(f"no image in {folder} is at least {min_side} px on its short side")

    def __len__(self):
        return len(self.images)

    def batch(self, n: int, crop: int, gen: torch.Generator) -> torch.Tensor:
        out = torch.empty(n, 3, crop, crop, dtype=torch.uint8)
        for i in range(n):
            im = self.images[int(torch.randint(len(self.images), (1,), generator=gen))]
            _, H, W = im.shape
            c = min(crop, H, W)
            top = int(torch.randint(H - c + 1, (1,), generator=gen))
            left = int(torch.randint(W - c + 1, (1,), generator=gen))
            patch = im[:, top:top + c, left:left + c]
            if c < crop:
                patch = torch.nn.functional.interpolate(patch[None].float(), size=(crop, crop),
                                                        mode="bilinear", align_corners=False)[0]
            if torch.rand(1, generator=gen) < 0.5:
                patch = patch.flip(-1)
            if torch.rand(1, generator=gen) < 0.5:
                patch = patch.flip(-2)
            out[i] = patch
        return out.float().div_(255)


def center_crops(folder: str | Path, size: int, limit: int | None = None) -> torch.Tensor:
    """Square centre crops, shrunk to the smallest image and to a multiple of 64 (whole grids)."""
    ims = [load_rgb_uint8(p) for p in list_images(folder)[:limit]]
    size = min([size] + [min(im.shape[1:]) for im in ims]) // 64 * 64
    if size == 0:
        raise ValueError(f"validation images in {folder} are smaller than 64 px")
    out = []
    for im in ims:
        _, H, W = im.shape
        t, l = (H - size) // 2, (W - size) // 2
        out.append(im[:, t:t + size, l:l + size])
    return torch.stack(out).float().div_(255)
