"""Data parallelism for the training loop: DDP (every rank holds the whole model) or FSDP2 (every
rank holds a 1/N shard of each weight, gradient and AdamW moment), and full-state checkpoints
under both.

    torchrun --nproc_per_node=N -m tinylm pretrain ... --train.parallel ddp    # default
    torchrun --nproc_per_node=N -m tinylm pretrain ... --train.parallel fsdp

FSDP2 (`torch.distributed.fsdp.fully_shard`, the per-parameter DTensor sharding used by
torchtitan) wraps each transformer block, then the root (embedding, final norm, tied head), so a
block's weights are all-gathered just before it runs and freed after; gradients are
reduce-scattered. On GPU the blocks compute in bf16 with fp32 gradient reduction
(`MixedPrecisionPolicy`); on CPU the weights stay fp32 and bf16 comes from autocast, exactly as
in single-process and DDP training, so the three give the same numbers. (gloo in torch 2.13 runs
FSDP2's all-gather and reduce-scatter, with a bf16 MixedPrecisionPolicy too; it is not used on CPU
because autocast keeps norms and softmax in fp32 as single-process training does.)

Checkpoints do not depend on the layout: under FSDP every rank takes part in gathering the full
(unsharded) state with `torch.distributed.checkpoint.state_dict`, rank 0 writes it in the same
safetensors format as single-process training, and loading broadcasts it from rank 0 and
re-shards it. A checkpoint from any world size and either layout resumes on any other.
"""

from __future__ import annotations

import torch
import torch.nn as nn

PARALLEL = ("ddp", "fsdp")


def is_sharded(model: nn.Module) -> bool:
    """True when `model` was sharded with fully_shard (its parameters are DTensors)."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def shard_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Apply FSDP2 in place: each block is one unit of all-gather/reduce-scatter, the root holds the
    rest. Build the optimizer after this, over the sharded (DTensor) parameters."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    kwargs = {"mesh": mesh}
    if device.type == "cuda":
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for block in model.layers:
        fully_shard(block, **kwargs)
    fully_shard(model, **kwargs)
    return model


def wrap(model: nn.Module, device: torch.device, world_size: int, parallel: str) -> nn.Module:
    """The module the training step calls: the model itself, DDP around it, or the model sharded in place."""
    if parallel not in PARALLEL:
        raise ValueError(f"unknown parallel mode {parallel!r}; choose from {', '.join(PARALLEL)}")
    if world_size == 1:
        return model
    if parallel == "fsdp":
        return shard_model(model, device)
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


def gradient_sync(train_model: nn.Module, sync: bool):
    """Context for one micro-batch's backward: reduce gradients across ranks only when `sync`
    (the last micro-batch of an optimizer step); earlier ones accumulate locally."""
    import contextlib

    if sync:
        return contextlib.nullcontext()
    if hasattr(train_model, "no_sync"):  # DDP
        return train_model.no_sync()
    if hasattr(train_model, "set_requires_gradient_sync"):  # FSDP2: a flag, not a context manager

        @contextlib.contextmanager
        def no_sync():
            train_model.set_requires_gradient_sync(False)
            try:
                yield
            finally:
                train_model.set_requires_gradient_sync(True)

        return no_sync()
    return contextlib.nullcontext()


def full_tensor(x):
    """A DTensor (a sharded model's grad norm) as the plain tensor it stands for."""
    return x.full_tensor() if hasattr(x, "full_tensor") else x


# ---------------------------------------------------------------------------------------------
# Full-state checkpoints of a sharded model. All ranks must call these (they are collectives).


def _optimizer_fqns(model: nn.Module, optimizer) -> list[list[str]]:
    """Parameter names in the optimizer's order, one list per param group."""
    name_of = {}
    for name, p in model.named_parameters():
        name_of.setdefault(id(p), name)  # a tied weight keeps its first name (wte.weight)
    return [[name_of[id(p)] for p in g["params"]] for g in optimizer.param_groups]


def full_state(model: nn.Module, optimizer) -> tuple[dict, dict | None]:
    """(model state dict, optimizer state dict) of a sharded model, unsharded on CPU, keyed exactly
    like `model.state_dict()` / `optimizer.state_dict()` of an unsharded one (optimizer state by
    parameter index). Filled on rank 0; empty on the other ranks."""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_optimizer_state_dict)

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    msd = get_model_state_dict(model, options=opts)
    if optimizer is None:
        return msd, None
    osd = get_optimizer_state_dict(model, optimizer, options=opts)
    if not osd:
        return msd, {}
    state, groups, idx = {}, [], 0
    for g, names in zip(osd["param_groups"], _optimizer_fqns(model, optimizer)):
        params = []
        for name in names:
            if name in osd["state"]:
                state[idx] = osd["state"][name]
            params.append(idx)
            idx += 1
        groups.append({**g, "params": params})
    return msd, {"state": state, "param_groups": groups}


def load_full_state(model: nn.Module, optimizer, model_sd: dict | None, optim_sd: dict | None, rank: int) -> None:
    """Load a full (unsharded) state read on rank 0 into a sharded model and its optimizer:
    rank 0 broadcasts each tensor and every rank keeps its shard. Other ranks pass None."""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                         set_optimizer_state_dict)

    opts = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    if rank == 0 and getattr(model.cfg, "tie_embeddings", False):
        model_sd = {**model_sd, "lm_head.weight": model_sd["wte.weight"]}  # stored once in the file
    set_model_state_dict(model, model_sd if rank == 0 else {}, options=opts)
    if optimizer is None:
        return
    names = _optimizer_fqns(model, optimizer)
    if rank == 0:
        flat = [n for group in names for n in group]
        state = {flat[i]: v for i, v in optim_sd["state"].items()}
        groups = [{**g, "params": n} for g, n in zip(optim_sd["param_groups"], names)]
        optim_sd = {"state": state, "param_groups": groups}
    set_optimizer_state_dict(model, optimizer, optim_sd if rank == 0 else {}, options=opts)
