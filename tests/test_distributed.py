"""Data parallelism on CPU: 2 processes with the gloo backend, as torchrun would launch them."""

import dataclasses
import json
import math
import os

import pytest
import torch.multiprocessing as mp

from tinylm.config import PretrainConfig
from tinylm.stages import pretrain


def _losses(run_dir):
    return [json.loads(x)["loss"] for x in (run_dir / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]


class _Stop(Exception):
    pass


def _worker(rank, world, port, cfg, stop_at):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    trainer = pretrain.build(cfg)

    def stop(step):
        if step == stop_at:  # both ranks stop after the same step: a run interrupted at world size 2
            raise _Stop

    trainer.on_step = stop
    try:
        trainer.fit()
    except _Stop:
        pass
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_processes_equals_single_process_and_resumes_at_world_size_one(tiny_model_cfg, tiny_train_cfg, tmp_path):
    # one process, micro-batch 4, no accumulation  ==  two processes, micro-batch 2 each
    single = dataclasses.replace(tiny_train_cfg, run_dir=str(tmp_path / "single"), batch_size=4,
                                 total_batch_tokens=4 * 32, max_steps=8, save_every=4)
    pretrain.run(PretrainConfig(tiny_model_cfg, single))
    ddp = dataclasses.replace(single, run_dir=str(tmp_path / "ddp"), batch_size=2)  # same 8-step schedule
    mp.spawn(_worker, args=(2, _free_port(), PretrainConfig(tiny_model_cfg, ddp), 4), nprocs=2, join=True)
    a, b = _losses(tmp_path / "single"), _losses(tmp_path / "ddp")
    assert len(b) == 4
    assert all(math.isclose(x, y, rel_tol=1e-5) for x, y in zip(a[:4], b))
    # the checkpoint written at world size 2 resumes at world size 1 (micro-batch 4) to step 8
    resumed = dataclasses.replace(single, run_dir=str(tmp_path / "ddp"))
    trainer = pretrain.build(PretrainConfig(tiny_model_cfg, resumed))
    trainer.fit(resume=True)
    c = _losses(tmp_path / "ddp")
    assert len(c) == 8 and all(math.isclose(x, y, rel_tol=1e-5) for x, y in zip(a, c)), (a, c)
