"""The recommendation names the knob of the user's own pipeline (diagnosis.knobs), and a sharded
Hugging Face dataset caps the workers at its shards (capture.knobs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tracelens.diagnosis.knobs import knob_for


def test_a_dataloader_subclass_is_named_by_its_class() -> None:
    knob = knob_for('torchdata.stateful_dataloader.stateful_dataloader.StatefulDataLoader', None, None, 4)
    assert (knob.name, knob.call, knob.dataloader_args) == ("StatefulDataLoader.num_workers", "StatefulDataLoader", True)
    assert knob_for('torch.utils.data.dataloader.DataLoader', None, None, 4).name == "DataLoader.num_workers"
    assert knob_for(None, None, None, 4).name == "DataLoader.num_workers"  # a bare trace: no class known


def test_torchdata_nodes_concurrency_goes_to_parallel_mapper_with_its_method() -> None:
    loader = ("torchdata.nodes.loader.LoaderIterator", "torchdata.nodes",
              {"ParallelMapper.num_workers": 1, "ParallelMapper.method": "thread"})
    knob = knob_for(*loader, 16, "io_bound")
    assert knob.name == "ParallelMapper.num_workers" and not knob.dataloader_args
    assert "num_workers=16" in knob.text and 'method="thread"' in knob.text
    assert 'method="process"' in knob_for(*loader, 2, "cpu_starvation").text


def test_a_generator_gets_littles_law_concurrency_not_dataloader_arguments() -> None:
    knob = knob_for('__main__.batches', 'generator', None, 8)
    assert knob.name == "concurrency" and not knob.dataloader_args
    assert "ThreadPoolExecutor(max_workers=8)" in knob.text


def test_webdataset_rebatching_in_the_main_process_says_batch_inside_the_workers() -> None:
    knob = knob_for('__main__.iterator', 'webdataset', {'rebatch_in_main': True, 'shards': 4}, 4)
    assert knob.call == "WebLoader" and knob.dataloader_args
    assert "batch inside the workers" in knob.text and "shards ≥ workers × ranks" in knob.text


def test_a_hugging_face_dataset_names_its_shards_and_how_to_reshard() -> None:
    knob = knob_for('torch.utils.data.dataloader.DataLoader', 'datasets', {'n_shards': 2}, 2)
    assert "n_shards (2)" in knob.text and "to_iterable_dataset(num_shards=" in knob.text


def test_a_two_shard_hugging_face_dataset_caps_the_loader_at_two_workers(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    datasets = pytest.importorskip("datasets")
    from tracelens.capture.dataloader.registry import describe_loader

    def gen(shards: list[int]) -> Any:
        for s in shards:
            for i in range(4):
                yield {"x": [float(s * 10 + i)]}

    ds = datasets.IterableDataset.from_generator(gen, gen_kwargs={"shards": [0, 1]}).with_format("torch")
    assert ds.num_shards == 2
    loader = describe_loader(torch.utils.data.DataLoader(ds, batch_size=2), 0, {})
    assert loader.max_workers == 2 and loader.pipeline == {"n_shards": 2} and loader.framework == "datasets"
