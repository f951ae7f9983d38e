"""A free loader: batches cached from the training loader, served again without its cost.

The sweep's ceiling trial (``tracelens sweep --ceiling``) caches the first K batches the
training loader yields after its warm-up (the loop trains on them as usual), then serves them
in turn for every later ``__next__`` of that loader, so the unmodified loop runs as fast as its
own step allows. What it keeps of the loader and what it does not:

- **the same objects**: a cached batch is handed out again as it is, no copy: pinned host
  memory stays pinned, device tensors stay on their device, the loop's own ``.to(device)``
  copies still run. The loop may change a batch in place (``x.div_(255)``); every tensor's
  version counter is recorded when it is cached and checked when it is served: once a change is
  seen, every later serve is a copy of the cached batch (pinned again where it was pinned), and
  the result says so (that copy is a cost a free loader would not have);
- **the epoch structure**: an iterator still raises StopIteration after ``len(loader)``
  batches (counting the batches it already yielded), and each new epoch's ``iter(loader)`` gets
  a :class:`ReplayIterator` of the same length instead of new workers (their start-up is the
  loader's cost). A loader without a length (an IterableDataset stream) uses the epoch length
  seen before the switch, if an epoch ended; else it is replayed without epoch ends;
- **bounded memory**: at most ``max_batches`` batches and ``max_bytes`` of tensor data (host and
  device together); at least one batch is kept whatever its size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

#: Batches cached by default: enough that the loop does not see one batch over and over in a
#: cache-warm loop, few enough to cache in seconds.
DEFAULT_REPLAY_BATCHES = 16
#: Tensor bytes cached at most by default (the cache lives beside the script's own memory).
DEFAULT_REPLAY_BYTES = 1 << 30


def tensors_of(batch: Any) -> Iterator[Any]:
    """Every tensor in a batch (nested tuples, lists, dicts, namedtuples)."""
    import torch

    if isinstance(batch, torch.Tensor):
        yield batch
    elif isinstance(batch, dict):
        for v in batch.values():
            yield from tensors_of(v)
    elif isinstance(batch, (list, tuple)):
        for v in batch:
            yield from tensors_of(v)


def copy_batch(batch: Any) -> Any:
    """A copy of ``batch`` with the same structure; tensors cloned (re-pinned where pinned)."""
    import torch

    if isinstance(batch, torch.Tensor):
        out = batch.clone()
        return out.pin_memory() if batch.device.type == "cpu" and batch.is_pinned() else out
    if isinstance(batch, dict):
        return type(batch)((k, copy_batch(v)) for k, v in batch.items())
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(copy_batch(v) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(copy_batch(v) for v in batch)
    return batch


def batch_bytes(batch: Any) -> int:
    """Tensor bytes of a batch."""
    return sum(int(t.element_size()) * int(t.nelement()) for t in tensors_of(batch))


class BatchCache:
    """Up to ``max_batches`` batches (``max_bytes`` of tensors), served in turn."""

    def __init__(self, max_batches: int = DEFAULT_REPLAY_BATCHES, max_bytes: int = DEFAULT_REPLAY_BYTES) -> None:
        self.max_batches = max(1, max_batches)
        self.max_bytes = max_bytes
        self.batches: list[Any] = []
        self.versions: list[list[int]] = []
        self.nbytes = 0
        self.full = False
        self.served = 0
        self.copying = False  # the loop changed a cached batch in place: serve copies
        self.pinned = False
        self.devices: set[str] = set()

    def add(self, batch: Any) -> None:
        """Cache ``batch`` (the object the loader yielded); full once the count or bytes are reached."""
        size = batch_bytes(batch)
        if self.batches and self.nbytes + size > self.max_bytes:
            self.full = True
            return
        tensors = list(tensors_of(batch))
        self.batches.append(batch)
        self.versions.append([int(t._version) for t in tensors])
        self.nbytes += size
        self.pinned = self.pinned or any(t.device.type == "cpu" and t.is_pinned() for t in tensors)
        self.devices.update(str(t.device) for t in tensors)
        if len(self.batches) >= self.max_batches or self.nbytes >= self.max_bytes:
            self.full = True

    def serve(self) -> Any:
        """The next cached batch (a copy once the loop has been seen changing one in place)."""
        i = self.served % len(self.batches)
        self.served += 1
        batch = self.batches[i]
        if not self.copying and [int(t._version) for t in tensors_of(batch)] != self.versions[i]:
            self.copying = True
        return copy_batch(batch) if self.copying else batch

    def describe(self) -> dict[str, Any]:
        """What was cached and how it was served (sweep.json's ``ceiling.replay``)."""
        return {"batches": len(self.batches), "bytes": self.nbytes, "max_batches": self.max_batches,
                "max_bytes": self.max_bytes, "served": self.served, "pinned": self.pinned,
                "devices": sorted(self.devices), "copied_on_serve": self.copying}


class ReplayIterator:
    """The iterator ``iter(loader)`` returns once the loader is replayed: ``length`` batches
    (None: no end) served by ``next_batch``, then StopIteration, as a DataLoader epoch ends."""

    def __init__(self, next_batch: Callable[[ReplayIterator], Any], length: int | None, loader_id: int) -> None:
        self._next_batch = next_batch
        self._length = length
        self._num_yielded = 0
        self._tracelens_loader_id = loader_id

    def __iter__(self) -> ReplayIterator:
        return self

    def __next__(self) -> Any:
        return self._next_batch(self)

    def __len__(self) -> int:
        if self._length is None:
            raise TypeError("this replayed loader has no length")
        return self._length


def epoch_length(it: Any, seen: int | None) -> int | None:
    """Batches per epoch of a DataLoader iterator: its own ``len()``, else the length seen."""
    try:
        return len(it)
    except Exception:
        return seen
