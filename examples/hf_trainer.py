"""Hugging Face Trainer: a tiny BERT (2 layers, built from a config: nothing is downloaded)
fine-tuned for sequence classification on documents generated and tokenized on the fly in the
Dataset's ``__getitem__`` (text clean-up in Python, a WordLevel fast tokenizer built in memory).

The loader flags map onto TrainingArguments: --num-workers → dataloader_num_workers,
--pin-memory → dataloader_pin_memory (on by default, as in TrainingArguments),
--persistent-workers → dataloader_persistent_workers, --prefetch-factor →
dataloader_prefetch_factor; --main-threads sets torch.set_num_threads before training and
--worker-threads is applied in each worker by the dataset itself (the Trainer has no
worker_init_fn argument).

    python examples/hf_trainer.py                          # num_workers=0 (the default)
    python examples/hf_trainer.py --num-workers 1 --main-threads 1
    tracelens profile examples/hf_trainer.py
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be fetched from the hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import re
import tempfile

import numpy as np
import torch
from _common import SteadyRate, loader_args, set_main_threads
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from torch.utils.data import Dataset, get_worker_info
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    PreTrainedTokenizerFast,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

WORDS = [f"w{i}" for i in range(2000)]
SEQ_LEN = 128


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over WORDS, made in memory (no vocabulary file, no download)."""
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]")


class ReviewStream(Dataset[dict[str, torch.Tensor]]):
    """Synthetic "reviews": generated, cleaned and tokenized per sample (CPU work per item)."""

    def __init__(self, n: int, words: int, worker_threads: int | None) -> None:
        self.n, self.words, self.worker_threads = n, words, worker_threads
        self.tokenizer = build_tokenizer()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if self.worker_threads is not None and get_worker_info() is not None:
            torch.set_num_threads(self.worker_threads)
        rng = np.random.default_rng(i)
        ids = rng.zipf(1.3, size=self.words) % len(WORDS)
        text = " ".join(f"{WORDS[j].upper()}, " if j % 7 == 0 else WORDS[j] for j in ids)
        text = re.sub(r"[^\w\s]", " ", text)  # clean-up, like stripping markup
        text = re.sub(r"\s+", " ", text).strip()
        enc = self.tokenizer(text, truncation=True, max_length=SEQ_LEN, padding="max_length",
                             return_tensors="pt")
        label = int(ids[: SEQ_LEN // 2].sum() % 2)
        return {"input_ids": enc["input_ids"][0], "attention_mask": enc["attention_mask"][0],
                "labels": torch.tensor(label)}


class Throughput(TrainerCallback):
    """Ticks the steady-state meter at every optimizer step."""

    def __init__(self, meter: SteadyRate) -> None:
        self.meter = meter

    def on_step_begin(self, *args: object, **kwargs: object) -> None:
        self.meter.tick()


def main() -> None:
    ap = loader_args(__doc__ or "", num_workers=0, batch_size=16, epochs=1)
    ap.set_defaults(pin_memory=True)  # TrainingArguments' own default
    ap.add_argument("--steps", type=int, default=120, help="max_steps (-1: --epochs)")
    ap.add_argument("--samples", type=int, default=4096)
    ap.add_argument("--words", type=int, default=1500, help="words per document (CPU per sample)")
    ap.add_argument("--warmup-steps", type=int, default=10)
    args = ap.parse_args()
    set_main_threads(args)
    config = BertConfig(vocab_size=len(WORDS) + 4, hidden_size=64, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=128,
                        max_position_embeddings=SEQ_LEN, num_labels=2)
    model = BertForSequenceClassification(config)
    workers = args.num_workers > 0
    training_args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="hf-trainer-example-"),
        per_device_train_batch_size=args.batch_size,
        num_train_epochs=args.epochs,
        max_steps=args.steps,
        learning_rate=5e-4,
        dataloader_num_workers=args.num_workers,
        dataloader_pin_memory=args.pin_memory,
        dataloader_persistent_workers=args.persistent_workers and workers,
        dataloader_prefetch_factor=args.prefetch_factor if workers else None,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
    )
    meter = SteadyRate(args.warmup_steps)
    trainer = Trainer(model=model, args=training_args, callbacks=[Throughput(meter)],
                      train_dataset=ReviewStream(args.samples, args.words, args.worker_threads))
    trainer.train()
    print(f"{len(meter.ticks)} training steps, torch threads {torch.get_num_threads()}")
    print(meter.summary())


if __name__ == "__main__":
    main()
