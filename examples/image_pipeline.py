"""An image-classification input pipeline: JPEG files decoded with Pillow, then
random-resized-crop, horizontal flip and normalisation (numpy), feeding a small conv net.

The JPEGs (``--images`` of 480×360, made once into ``--data-dir`` and reused by later runs)
stand in for an image folder on local disk. Decoding and augmenting is CPU-bound work in the
loader (a few ms per image), so num_workers=0 leaves the model waiting for every batch.

    python examples/image_pipeline.py                                  # num_workers=0
    python examples/image_pipeline.py --num-workers 1 --main-threads 1
    tracelens profile examples/image_pipeline.py
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from _common import SteadyRate, fit, loader_args, make_loader, print_rate
from PIL import Image
from torch.utils.data import Dataset

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def make_jpegs(root: Path, n: int, size: tuple[int, int] = (480, 360)) -> list[Path]:
    """Write ``n`` smooth random JPEGs (class = i % 10) into ``root`` unless already there."""
    root.mkdir(parents=True, exist_ok=True)
    paths = [root / f"{i % 10}_{i:05d}.jpg" for i in range(n)]
    rng = np.random.default_rng(0)
    for p in paths:
        if p.exists():
            continue
        small = rng.integers(0, 256, size=(size[1] // 16, size[0] // 16, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
        tmp = p.with_suffix(".tmp")
        img.save(tmp, format="JPEG", quality=90)
        os.replace(tmp, p)
    return paths


class JpegFolder(Dataset[tuple[torch.Tensor, int]]):
    """Decode → RandomResizedCrop(out) → RandomHorizontalFlip → ToTensor + Normalize."""

    def __init__(self, paths: list[Path], out: int = 96) -> None:
        self.paths, self.out = paths, out

    def __len__(self) -> int:
        return len(self.paths)

    def random_resized_crop(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        w, h = img.size
        for _ in range(10):  # torchvision's scale=(0.08, 1), ratio=(3/4, 4/3)
            area = w * h * rng.uniform(0.08, 1.0)
            ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if 0 < cw <= w and 0 < ch <= h:
                x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
                break
        else:
            cw = ch = min(w, h)
            x0, y0 = (w - cw) // 2, (h - ch) // 2
        return img.resize((self.out, self.out), Image.Resampling.BILINEAR,
                          box=(x0, y0, x0 + cw, y0 + ch))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        rng = np.random.default_rng()
        with Image.open(self.paths[i]) as f:
            img = f.convert("RGB")
        arr = np.asarray(self.random_resized_crop(img, rng), dtype=np.float32) / 255.0
        if rng.random() < 0.5:
            arr = arr[:, ::-1]
        arr = (arr - MEAN) / STD
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))), int(
            self.paths[i].name[0]
        )


def small_convnet() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, stride=2, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(),
        torch.nn.Conv2d(32, 64, 3, stride=2, padding=1), torch.nn.BatchNorm2d(64), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 10),
    )


def main() -> None:
    ap = loader_args(__doc__ or "", num_workers=0, batch_size=32, epochs=1)
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--data-dir", type=Path,
                    default=Path(tempfile.gettempdir()) / "tracelens-example-jpegs-480x360")
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: epochs)")
    ap.add_argument("--warmup-steps", type=int, default=10)
    args = ap.parse_args()
    loader = make_loader(JpegFolder(make_jpegs(args.data_dir, args.images)), args)
    model = small_convnet()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    meter = SteadyRate(args.warmup_steps)
    steps = fit(model, loader, opt, args.epochs, meter, max_steps=args.steps)
    print_rate(steps, meter)


if __name__ == "__main__":
    main()
