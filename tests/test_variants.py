"""Architecture variants and the Muon optimizer: each trains, resumes exactly, and counts right."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from resume_helpers import kill_and_resume

from tinylm.config import ModelConfig, PretrainConfig
from tinylm.model import GPT, KVCache, describe, flops_per_token
from tinylm.stages import pretrain
from tinylm.train.optim import build_optimizer

VARIANTS = {
    "llama": {},
    "learned_positions": dict(pos_emb="learned"),
    "gelu_mlp": dict(mlp="gelu"),
    "layernorm": dict(norm="layernorm"),
    "post_norm": dict(norm_position="post"),
    "untied": dict(tie_embeddings=False),
}


def losses(run_dir):
    return [json.loads(line)["loss"] for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
            if "loss" in json.loads(line)]


@pytest.mark.parametrize("variant,optimizer", [(v, "adamw") for v in VARIANTS] + [("llama", "muon")])
def test_every_variant_trains_and_resumes_bitwise(variant, optimizer, tiny_model_cfg, tiny_train_cfg, tmp_path):
    mcfg = dataclasses.replace(tiny_model_cfg, **VARIANTS[variant])
    tcfg = dataclasses.replace(tiny_train_cfg, optimizer=optimizer, muon_lr=0.02, max_steps=8)
    full = dataclasses.replace(tcfg, run_dir=str(tmp_path / "full"))
    pretrain.run(PretrainConfig(mcfg, full))
    ls = losses(full.run_dir)
    assert ls[-1] < ls[0] - 0.3  # it learns

    cut = dataclasses.replace(tcfg, run_dir=str(tmp_path / "cut"))
    kill_and_resume(mcfg, cut, die_at=6)  # after the checkpoint at step 4
    assert losses(cut.run_dir) == ls  # bitwise, optimizer state included


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variants_are_causal_and_kv_cache_matches(variant):
    cfg = ModelConfig(vocab_size=61, seq_len=16, n_layer=2, n_head=2, n_kv_head=2, n_embd=16, **VARIANTS[variant])
    model = GPT(cfg).eval()
    x = torch.randint(0, 61, (2, 12))
    with torch.no_grad():
        full = model(x)
        cache = KVCache(cfg, 2, 16, "cpu", torch.float32)
        parts = [model(x[:, :5], kv_cache=cache)] + [model(x[:, t:t + 1], kv_cache=cache) for t in range(5, 12)]
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)


def test_gelu_mlp_matches_swiglu_parameters_and_flops():
    base = ModelConfig(vocab_size=512, n_layer=2, n_embd=128, n_head=4, n_kv_head=4)
    gelu = dataclasses.replace(base, mlp="gelu")
    assert gelu.mlp_hidden == 528 and base.mlp_hidden == 352  # 2 x 528 = 3 x 352 matrices of width 128
    assert describe(gelu)["params"] == describe(base)["params"]
    assert flops_per_token(gelu) == flops_per_token(base)


def test_three_parameter_counts_by_hand():
    cfg = ModelConfig(vocab_size=100, seq_len=16, n_layer=2, n_embd=32, n_head=4, n_kv_head=4,
                      pos_emb="learned", tie_embeddings=False, norm="layernorm")
    d, h, L = 32, cfg.hidden_dim, 2
    matrices = L * (4 * d * d + 3 * d * h)
    norms = (2 * L + 1) * 2 * d  # LayerNorm gain + bias: two per block and the final one
    info = describe(cfg)
    assert info["params_matrices"] == matrices
    assert info["params_non_embedding"] == matrices + norms
    assert info["params"] == matrices + norms + 100 * d * 2 + 16 * d  # wte, untied head, wpe


def test_muon_gets_block_matrices_and_adamw_the_rest(tiny_model_cfg, tiny_train_cfg):
    from tinylm.config import TrainConfig
    model = GPT(dataclasses.replace(tiny_model_cfg, tie_embeddings=False))
    opt = build_optimizer(model, TrainConfig(optimizer="muon", lr=1e-3, muon_lr=0.02), torch.device("cpu"))
    muon, adamw = opt.optimizers
    from tinylm.runtime import resolve_dtype
    from tinylm.train.optim import Muon
    assert isinstance(muon, Muon) and isinstance(adamw, torch.optim.AdamW)
    # Newton-Schulz in bf16 only where the run computes in bf16 (native); fp32 where bf16 is emulated
    native = resolve_dtype("auto", torch.device("cpu")) == "bf16"
    assert muon.ns_dtype == (torch.bfloat16 if native else torch.float32)
    muon_ids = {id(p) for g in muon.param_groups for p in g["params"]}
    assert muon_ids == {id(p) for p in model.layers.parameters() if p.dim() == 2}
    assert id(model.wte.weight) not in muon_ids and id(model.lm_head.weight) not in muon_ids
    assert muon.param_groups[0]["lr_scale"] == pytest.approx(20.0)


def test_unknown_variant_is_one_clear_error():
    with pytest.raises(ValueError, match="model.mlp='relu'; choose from swiglu, gelu"):
        ModelConfig(mlp="relu")


def test_export_refuses_non_llama_architectures(tmp_path):
    from tinylm.interop import llama2c
    model = GPT(ModelConfig(vocab_size=64, seq_len=16, n_layer=1, n_embd=16, n_head=2, n_kv_head=2, mlp="gelu"))
    with pytest.raises(ValueError, match="only the Llama architecture"):
        llama2c.write_checkpoint(model, tmp_path / "m.bin")
