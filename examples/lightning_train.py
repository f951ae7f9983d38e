"""PyTorch Lightning: a LightningModule and a LightningDataModule with train and validation
loaders, trained by ``Trainer(accelerator="cpu")`` with its defaults (including the sanity
check, which draws 2 validation batches before training starts).

Loading is CPU-bound: every sample is augmented in numpy (~3 ms of CPU), so with
num_workers=0 the training step waits for the batch. The validation set is the same kind of
data without the augmentation (cheap).

    python examples/lightning_train.py                                 # num_workers=0
    python examples/lightning_train.py --num-workers 1 --main-threads 1
    tracelens profile examples/lightning_train.py
"""

from __future__ import annotations

import argparse
import logging
import warnings

import lightning as L
import numpy as np
import torch
from _common import SteadyRate, box_blur, loader_args, loader_kwargs, set_main_threads
from torch.utils.data import DataLoader, Dataset


class Patches(Dataset[tuple[torch.Tensor, int]]):
    """Synthetic 3×64×64 patches; ``augment`` adds blur, jitter and a random crop in numpy."""

    def __init__(self, n: int, augment: bool, blur_passes: int) -> None:
        self.n, self.augment, self.blur_passes = n, augment, blur_passes

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        rng = np.random.default_rng(i)
        img = rng.random((3, 72, 72), dtype=np.float32)
        if self.augment:
            img = box_blur(img, self.blur_passes)  # the CPU cost per sample
            img = img * rng.uniform(0.8, 1.2, size=(3, 1, 1)).astype(np.float32)
            x0, y0 = rng.integers(0, 8, size=2)
        else:
            x0 = y0 = 4
        crop = np.ascontiguousarray(img[:, y0 : y0 + 64, x0 : x0 + 64])
        return torch.from_numpy(crop), i % 10


class PatchData(L.LightningDataModule):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__()
        self.args = args

    def setup(self, stage: str) -> None:
        self.train_set = Patches(self.args.train_samples, True, self.args.blur_passes)
        self.val_set = Patches(self.args.val_samples, False, 0)

    def train_dataloader(self) -> DataLoader[tuple[torch.Tensor, int]]:
        return DataLoader(self.train_set, batch_size=self.args.batch_size, shuffle=True,
                          drop_last=True, **loader_kwargs(self.args))

    def val_dataloader(self) -> DataLoader[tuple[torch.Tensor, int]]:
        return DataLoader(self.val_set, batch_size=self.args.batch_size,
                          **loader_kwargs(self.args))


class SmallConvNet(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(32, 64, 3, stride=2, padding=1), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 10),
        )

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.cross_entropy(self.net(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


class Throughput(L.Callback):
    """Ticks the steady-state meter at every training batch."""

    def __init__(self, meter: SteadyRate) -> None:
        self.meter = meter

    def on_train_batch_start(self, *args: object) -> None:
        self.meter.tick()


def main() -> None:
    ap = loader_args(__doc__ or "", num_workers=0, batch_size=16, epochs=2)
    ap.add_argument("--steps", type=int, default=-1, help="Trainer max_steps (-1: max_epochs)")
    ap.add_argument("--train-samples", type=int, default=1024)
    ap.add_argument("--val-samples", type=int, default=256)
    ap.add_argument("--blur-passes", type=int, default=32, help="CPU cost per training sample")
    ap.add_argument("--warmup-steps", type=int, default=10)
    ap.add_argument("--progress-bar", action="store_true")
    args = ap.parse_args()
    set_main_threads(args)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # the "few workers" tips
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    meter = SteadyRate(args.warmup_steps)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_epochs=args.epochs, max_steps=args.steps,
        logger=False, enable_checkpointing=False, enable_model_summary=False,
        enable_progress_bar=args.progress_bar, callbacks=[Throughput(meter)],
    )
    trainer.fit(SmallConvNet(), datamodule=PatchData(args))
    print(f"{len(meter.ticks)} training steps, torch threads {torch.get_num_threads()}")
    print(meter.summary())


if __name__ == "__main__":
    main()
