"""Loading in the main process (num_workers=0) with CPU-heavy per-sample transforms.

Each sample is decoded and augmented on the CPU (a few ms of numpy work), in the training
process itself: the model waits for every batch. Expected diagnosis: cpu_starvation
(data wait ≈ most of the step; the fix is workers, up to the core budget).

    tracelens profile examples/cpu_heavy_main_process.py
    python examples/cpu_heavy_main_process.py --num-workers 1 --main-threads 1   # the recommendation
"""

from __future__ import annotations

import numpy as np
import torch
from _common import box_blur, loader_args, make_loader, train
from torch.utils.data import Dataset


class AugmentedImages(Dataset[tuple[torch.Tensor, int]]):
    """Synthetic 3×64×64 "images" with a CPU-heavy augmentation (blur + colour jitter + crop)."""

    def __init__(self, n: int = 2048) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        rng = np.random.default_rng(i)
        img = rng.random((3, 72, 72), dtype=np.float32)
        img = box_blur(img, 6)  # ~1-2 ms of CPU per sample
        img = img * rng.uniform(0.8, 1.2, size=(3, 1, 1)).astype(np.float32)
        x0, y0 = rng.integers(0, 8, size=2)
        return torch.from_numpy(np.ascontiguousarray(img[:, y0 : y0 + 64, x0 : x0 + 64])), i % 10


def main() -> None:
    args = loader_args(__doc__ or "", num_workers=0, batch_size=32, epochs=1).parse_args()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 64 * 64, 10))
    train(model, make_loader(AugmentedImages(), args), args.epochs)


if __name__ == "__main__":
    main()
