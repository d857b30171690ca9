"""Data parallelism on CPU: 2 processes with the gloo backend, as torchrun would launch them.
DDP (replicated weights) and FSDP2 (sharded weights) must both reproduce single-process training
with the equivalent gradient accumulation, and their checkpoints must be interchangeable with a
single process's."""

import dataclasses
import json
import math
import os
import shutil

import pytest
import torch.multiprocessing as mp
from safetensors.torch import load_file

from tinylm.config import PretrainConfig
from tinylm.stages import pretrain


def _rows(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]


def _losses(run_dir):
    return [r["loss"] for r in _rows(run_dir)]


def _close(a, b, rel=1e-5):
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=rel) for x, y in zip(a, b))


class _Stop(Exception):
    pass


def _worker(rank, world, port, cfg, stop_at, resume=False):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    trainer = pretrain.build(cfg)
    assert trainer.sharded == (cfg.train.parallel == "fsdp")

    def stop(step):
        if step == stop_at:  # both ranks stop after the same step: a run interrupted at world size 2
            raise _Stop

    trainer.on_step = stop
    try:
        trainer.fit(resume=resume)
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


def _spawn(cfg, stop_at=-1, resume=False):
    mp.spawn(_worker, args=(2, _free_port(), cfg, stop_at, resume), nprocs=2, join=True)


def _single(tiny_model_cfg, tiny_train_cfg, tmp_path):
    """The reference: one process, micro-batch 4, no accumulation, 8 steps, checkpoint at step 4."""
    cfg = dataclasses.replace(tiny_train_cfg, run_dir=str(tmp_path / "single"), batch_size=4,
                              total_batch_tokens=4 * 32, max_steps=8, save_every=4)
    pretrain.run(PretrainConfig(tiny_model_cfg, cfg))
    return cfg


@pytest.mark.slow
def test_ddp_two_processes_equals_single_process_and_resumes_at_world_size_one(tiny_model_cfg, tiny_train_cfg, tmp_path):
    # one process, micro-batch 4, no accumulation  ==  two processes, micro-batch 2 each
    single = _single(tiny_model_cfg, tiny_train_cfg, tmp_path)
    ddp = dataclasses.replace(single, run_dir=str(tmp_path / "ddp"), batch_size=2)  # same 8-step schedule
    _spawn(PretrainConfig(tiny_model_cfg, ddp), stop_at=4)
    a, b = _losses(tmp_path / "single"), _losses(tmp_path / "ddp")
    assert len(b) == 4 and _close(a[:4], b)
    # the checkpoint written at world size 2 resumes at world size 1 (micro-batch 4) to step 8
    resumed = dataclasses.replace(single, run_dir=str(tmp_path / "ddp"))
    pretrain.build(PretrainConfig(tiny_model_cfg, resumed)).fit(resume=True)
    assert _close(a, _losses(tmp_path / "ddp")), (a, _losses(tmp_path / "ddp"))


def _tensor_layout(path):
    return {k: (tuple(v.shape), v.dtype) for k, v in load_file(str(path)).items() if not k.startswith("rng.")}


@pytest.mark.slow
def test_fsdp_equals_single_process_accumulation_and_checkpoints_are_interchangeable(tiny_model_cfg, tiny_train_cfg,
                                                                                      tmp_path):
    # one process, micro-batch 4  ==  two FSDP ranks, micro-batch 1, 2 accumulation steps each
    # (the first micro-step skips the reduce-scatter: set_requires_gradient_sync(False))
    single = _single(tiny_model_cfg, tiny_train_cfg, tmp_path)
    # evaluation and sampling run the sharded model on both ranks (collectives); rank 0 writes.
    # Neither draws from the training RNG, so the losses stay those of the reference.
    fsdp = dataclasses.replace(single, run_dir=str(tmp_path / "fsdp"), batch_size=1, parallel="fsdp",
                               eval_every=2, eval_batches=2, sample_every=2, sample_tokens=8)
    _spawn(PretrainConfig(tiny_model_cfg, fsdp), stop_at=4)
    ref, got = _rows(tmp_path / "single"), _rows(tmp_path / "fsdp")
    assert [r["step"] for r in got if "val_bpb" in r] == [2, 4]
    samples = [json.loads(x) for x in (tmp_path / "fsdp/samples.jsonl").read_text().splitlines()]
    assert [r["step"] for r in samples] == [2] * len(pretrain.SAMPLE_PROMPTS) + [4] * len(pretrain.SAMPLE_PROMPTS)
    assert _close([r["loss"] for r in ref[:4]], [r["loss"] for r in got])
    # clipping over DTensors: the norm is that of the full, unsharded gradient
    assert _close([r["grad_norm"] for r in ref[:4]], [r["grad_norm"] for r in got], rel=1e-4)

    # the checkpoint is saved once, unsharded, in exactly the single-process format
    a, b = tmp_path / "single/checkpoints/step_000004", tmp_path / "fsdp/checkpoints/step_000004"
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    for name in ("model.safetensors", "optimizer.safetensors"):
        assert _tensor_layout(a / name) == _tensor_layout(b / name), name
    meta_a, meta_b = json.loads((a / "meta.json").read_text()), json.loads((b / "meta.json").read_text())
    assert meta_a["optimizer_param_groups"] == meta_b["optimizer_param_groups"]

    # FSDP checkpoint (world size 2) -> resumed by one process: the same next losses
    resumed = dataclasses.replace(single, run_dir=str(tmp_path / "fsdp"))
    pretrain.build(PretrainConfig(tiny_model_cfg, resumed)).fit(resume=True)
    assert _close([r["loss"] for r in ref], _losses(tmp_path / "fsdp"))

    # and the other way: a single-process checkpoint resumed by two FSDP ranks
    (tmp_path / "back/checkpoints").mkdir(parents=True)
    shutil.copytree(a, tmp_path / "back/checkpoints" / a.name)
    shutil.copy(tmp_path / "single/metrics.jsonl", tmp_path / "back/metrics.jsonl")
    _spawn(PretrainConfig(tiny_model_cfg, dataclasses.replace(fsdp, run_dir=str(tmp_path / "back"))), resume=True)
    assert _close([r["loss"] for r in ref], _losses(tmp_path / "back"))


def _sft_grad_worker(rank, world, port, tok_path, model_path, out_dir):
    """One rank of a 2-process DDP SFT step: 8 of the 16 conversations each; rank 0 saves loss and gradients."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    import torch
    import torch.distributed as dist

    from tinylm.config import TrainConfig
    from tinylm.data.sft_loader import ConversationLoader
    from tinylm.runtime import Runtime
    from tinylm.tokenizer import Tokenizer
    from tinylm.train.loop import Trainer
    from test_sft import UNEVEN

    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = torch.load(model_path, weights_only=False)
        tok = Tokenizer.load(tok_path)
        cfg = TrainConfig(run_dir=str(out_dir), device="cpu", dtype="fp32", batch_size=8, total_batch_tokens=16 * 128,
                          grad_clip=0.0)
        rt = Runtime(torch.device("cpu"), torch.float32, rank=rank, local_rank=rank, world_size=world)
        trainer = Trainer(rt, cfg, model, ConversationLoader(tok, UNEVEN, 8, 128, rank=rank, world_size=world,
                                                             shuffle=False))
        loss, _ = trainer.accumulate()
        if rank == 0:
            torch.save({"loss": loss.item(), "grad": torch.cat([p.grad.flatten() for p in model.parameters()])},
                       out_dir / "ddp.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_sft_step_equals_one_process_token_weighted(tokenizer, tmp_path):
    """2 ranks x 8 conversations give the loss and gradient of one process with all 16 (SFT micro-
    batches hold different numbers of assistant tokens, so a plain mean over ranks would not)."""
    import torch

    from test_sft import _step_grads, _tiny
    from tinylm.model import GPT

    torch.manual_seed(0)
    model = GPT(dataclasses.replace(_tiny(tokenizer), seq_len=128))
    torch.save(model, tmp_path / "model.pt")
    one_loss, one = _step_grads(tokenizer, model, 16, tmp_path)
    mp.spawn(_sft_grad_worker, args=(2, _free_port(), tokenizer.path, tmp_path / "model.pt", tmp_path), nprocs=2,
             join=True)
    ddp = torch.load(tmp_path / "ddp.pt")
    assert math.isclose(ddp["loss"], one_loss, rel_tol=1e-5)
    assert torch.allclose(ddp["grad"], one, rtol=1e-4, atol=1e-6)
