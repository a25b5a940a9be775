"""effective_config: the one place server settings fill in and override config.yaml."""

from __future__ import annotations

import pytest

from app.config import Settings, usable_cores
from app.protocol.model_config import ModelConfig, effective_config


def config(**fields) -> ModelConfig:
    return ModelConfig.model_validate({"name": "m", **fields})


def test_what_config_yaml_leaves_open_the_settings_fill():
    effective = effective_config(config(max_batch_size=16), Settings(intra_op_threads=3, default_max_queue_size=77))
    assert effective.instance_group.kind == "cpu"
    assert effective.instance_group.intra_op_threads == 3
    assert effective.dynamic_batching.max_queue_size == 77
    assert effective.warmup.batch_sizes == [1, 16]
    assert effective_config(config(max_batch_size=0), Settings()).warmup.batch_sizes == [1]


def test_what_config_yaml_says_stands_except_the_instance_kind_override():
    yaml_says = config(instance_group={"kind": "cuda", "intra_op_threads": 2}, dynamic_batching={"max_queue_size": 5},
                       warmup={"batch_sizes": [4]})  # fmt: skip
    effective = effective_config(yaml_says, Settings(intra_op_threads=3, default_max_queue_size=77))
    assert (effective.instance_group.kind, effective.instance_group.intra_op_threads) == ("cuda", 2)
    assert effective.dynamic_batching.max_queue_size == 5 and effective.warmup.batch_sizes == [4]
    assert effective_config(yaml_says, Settings(instance_kind="cpu")).instance_group.kind == "cpu"
    assert effective_config(config(), Settings(instance_kind="cuda")).instance_group.kind == "cuda"
    assert yaml_says.dynamic_batching.max_queue_size == 5 and yaml_says.warmup.batch_sizes == [4]  # not changed in place


@pytest.mark.skipif(usable_cores() < 2, reason="the cap needs two cores to split")
def test_workers_cap_the_threads_of_every_session():
    cap = usable_cores() // 2
    settings = Settings(workers=2, intra_op_threads=0)  # 0: ORT's choice, one per core: capped too
    assert effective_config(config(), settings).instance_group.intra_op_threads == cap
    many = config(instance_group={"intra_op_threads": 64})
    assert effective_config(many, settings).instance_group.intra_op_threads == cap
    assert effective_config(many, Settings()).instance_group.intra_op_threads == 64  # one worker: no cap
