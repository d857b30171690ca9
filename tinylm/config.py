"""Typed configuration: dataclasses, named presets defined in code, and overrides.

Every stage takes one dataclass. The CLI generates a `--section.field` flag for every field
(see `tinylm/cli.py`), and the resolved config is saved next to every artifact as JSON so a run
can be reproduced from its files alone.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field


# ---------------------------------------------------------------------------------------------
# Model


@dataclass
class ModelConfig:
    """Shape of the Llama-style decoder (see tinylm/model.py)."""

    vocab_size: int = 4096  # set from the tokenizer at pretrain time
    seq_len: int = 256  # context length in tokens
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads (head dimension = n_embd / n_head, must be even for RoPE)
    n_kv_head: int = 4  # < n_head means grouped-query attention (Ainslie et al. 2023)
    n_embd: int = 128  # model (residual stream) width
    ffn_hidden: int = 0  # SwiGLU hidden size; 0 = 8/3 * n_embd rounded up to `multiple_of`
    multiple_of: int = 32  # the default SwiGLU hidden size is rounded up to a multiple of this
    rope_theta: float = 10000.0  # RoPE base (Su et al. 2021): longer wavelengths for larger values
    norm_eps: float = 1e-5  # RMSNorm epsilon
    tie_embeddings: bool = True  # share the input embedding with the output head
    # architecture variants, for ablations (tinylm sweep); the defaults are Llama's choices
    pos_emb: str = "rope"  # rope (Su et al. 2021) | learned (absolute, GPT-2)
    mlp: str = "swiglu"  # swiglu (Shazeer 2020) | gelu (hidden 3/2 x the SwiGLU hidden: same parameters)
    norm: str = "rmsnorm"  # rmsnorm (Zhang & Sennrich 2019) | layernorm (with bias, GPT-2)
    norm_position: str = "pre"  # pre (Llama, GPT-2) | post (Vaswani et al. 2017: norm after the residual add)

    def __post_init__(self):
        for name in ("vocab_size", "seq_len", "n_layer", "n_head", "n_kv_head", "n_embd", "multiple_of"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be a positive integer, got {getattr(self, name)!r}")
        for name, allowed in (("pos_emb", ("rope", "learned")), ("mlp", ("swiglu", "gelu")),
                              ("norm", ("rmsnorm", "layernorm")), ("norm_position", ("pre", "post"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"model.{name}={getattr(self, name)!r}; choose from {', '.join(allowed)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head={self.n_head} is not divisible by n_kv_head={self.n_kv_head}")
        if self.pos_emb == "rope" and (self.n_embd // self.n_head) % 2:
            raise ValueError("head dimension must be even for RoPE")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def hidden_dim(self) -> int:
        if self.ffn_hidden:
            return self.ffn_hidden
        h = int(8 * self.n_embd / 3)
        return self.multiple_of * ((h + self.multiple_of - 1) // self.multiple_of)

    @property
    def mlp_hidden(self) -> int:
        """Hidden width of the feed-forward actually built: SwiGLU has three d x h matrices, a GELU
        MLP two, so GELU gets 3/2 h (rounded to an even number) to match parameters and FLOPs."""
        return self.hidden_dim if self.mlp == "swiglu" else 2 * ((3 * self.hidden_dim + 3) // 4)

    @property
    def is_llama(self) -> bool:
        """The Llama architecture that export (Hugging Face, llama2.c) understands."""
        return (self.pos_emb, self.mlp, self.norm, self.norm_position) == ("rope", "swiglu", "rmsnorm", "pre")


# Sizes are quoted with the default 4096-token vocabulary; `tinylm info` prints exact counts.
MODEL_PRESETS: dict[str, dict] = {
    "300k": dict(n_layer=2, n_head=4, n_kv_head=4, n_embd=64),  # 0.36M (0.10M non-embedding)
    "1m": dict(n_layer=4, n_head=4, n_kv_head=4, n_embd=128),  # 1.33M (0.80M non-embedding)
    "3m": dict(n_layer=6, n_head=6, n_kv_head=6, n_embd=192),  # 3.4M
    "10m": dict(n_layer=8, n_head=5, n_kv_head=5, n_embd=320),  # 11.2M
    "30m": dict(n_layer=8, n_head=8, n_kv_head=8, n_embd=512),  # 27.4M
}
DEFAULT_MODEL = "1m"


def model_preset(name: str, **overrides) -> ModelConfig:
    if name not in MODEL_PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose from {', '.join(MODEL_PRESETS)}")
    return ModelConfig(**{**MODEL_PRESETS[name], **overrides})


# ---------------------------------------------------------------------------------------------
# Stages


@dataclass
class TokenizerConfig:
    corpus: str = "gutenberg-children"  # a named corpus, a file/dir/glob, or hf:owner/name
    vocab_size: int = 4096  # chosen by measurement: see bench/results/vocab_size.json
    sample_bytes: int = 20_000_000  # train BPE on this many bytes of the training split
    out: str = "runs/default/tokenizer.json"  # where to write the tokenizer (a .meta.json goes beside it)


@dataclass
class PrepareConfig:
    corpus: str = "gutenberg-children"  # a named corpus, a file/dir/glob, or hf:owner/name
    tokenizer: str = "runs/default/tokenizer.json"  # a tokenizer.json from `tinylm tokenizer`
    out: str = "runs/default/data"  # the data directory (shards, tokenizer.json, prepare.json)
    shard_tokens: int = 100_000_000  # max tokens per train shard
    max_train_bytes: int = 0  # 0 = the whole training split
    batch_docs: int = 64  # documents per tokenizer call (encode_batch is multi-threaded)


@dataclass
class TrainConfig:
    """Everything about the optimisation loop, shared by every training stage."""

    run_dir: str = "runs/default"  # checkpoints, metrics.jsonl, samples.jsonl and config.json go here
    data: str = "runs/default/data"  # a directory written by `tinylm prepare`
    seed: int = 1337  # weight initialisation and data order
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    dtype: str = "auto"  # autocast dtype: auto (bf16 where the hardware has it natively, else fp32 on CPU / fp16 on GPU) | bf16 | fp16 | fp32
    compile: bool = False  # torch.compile the model (first steps slower, then faster)
    threads: int = 0  # CPU intra-op threads; 0 = torch's default (one per core)
    parallel: str = "ddp"  # under torchrun: ddp (replicate the model) | fsdp (shard weights, grads, AdamW state)
    # batch
    batch_size: int = 32  # sequences per micro-batch
    total_batch_tokens: int = 8192  # tokens per optimizer step; grad accumulation is derived
    max_steps: int = 2000  # optimizer steps; the run always ends with a checkpoint at the last one
    # optimizer: AdamW (Loshchilov & Hutter 2019), no decay on norms and embeddings
    optimizer: str = "adamw"  # adamw | muon (Muon on the block matrices, AdamW on embeddings, norms and head)
    lr: float = 3e-3  # peak learning rate
    muon_lr: float = 0.02  # muon: learning rate of the block matrices (the schedule scales it like lr)
    muon_momentum: float = 0.95  # muon: Nesterov momentum
    min_lr_frac: float = 0.1  # the schedule ends at lr * min_lr_frac
    schedule: str = "cosine"  # cosine | wsd (warmup-stable-decay, Hu et al. 2024)
    warmup_steps: int = 100  # linear warmup from 0 to lr
    decay_frac: float = 0.2  # wsd: fraction of steps spent in the final linear decay
    weight_decay: float = 0.1  # AdamW decoupled weight decay (matrices only)
    beta1: float = 0.9  # AdamW first-moment decay
    beta2: float = 0.95  # AdamW second-moment decay
    eps: float = 1e-8  # AdamW epsilon
    grad_clip: float = 1.0  # clip the global gradient norm to this; 0 = off
    # bookkeeping
    log_every: int = 10  # steps between metrics.jsonl lines
    eval_every: int = 250  # steps between validation evaluations; 0 = never
    eval_batches: int = 20  # validation batches per evaluation
    sample_every: int = 500  # steps between samples written to samples.jsonl; 0 = never
    sample_tokens: int = 96  # tokens per sample
    save_every: int = 250  # steps between checkpoints; 0 = only the final one
    keep_last: int = 3  # keep the newest N checkpoints; 0 = keep all
    init_from: str = ""  # start from this checkpoint's weights (later stages: SFT, DPO, ...)
    tracker: str = ""  # mirror metrics and samples live: tensorboard | wandb (offline) | "" (metrics.jsonl only)
    tracker_dir: str = ""  # tracker log directory; default <run_dir>/tb (tensorboard) or <run_dir>/wandb


def _pretrain_train_defaults() -> "TrainConfig":
    """The default pretraining recipe: Muon on the block matrices (AdamW on embeddings and norms),
    1200 steps of 4096 tokens (16 x 256), warmup-stable-decay: sized so that the whole default
    pipeline fits in an hour on 2 CPU cores. bench/time_to_quality.py (bench/results/
    time_to_quality.json): it trains in 0.32 of the earlier default's wall-clock (AdamW, 2000 steps
    of 8192 tokens, cosine) and ends 0.094 bits per byte behind it (1.667 vs 1.574 on the whole
    validation shard); 1800 steps end 0.052 behind at 0.45. It buys time, not quality."""
    return TrainConfig(optimizer="muon", batch_size=16, total_batch_tokens=16 * 256, max_steps=1200, warmup_steps=50,
                       schedule="wsd")


@dataclass
class PretrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=_pretrain_train_defaults)
    repeat_frac: float = 0.0  # fraction of training windows made copying drills (first half, then it again); 0 = off


def _sft_train_defaults() -> "TrainConfig":
    return TrainConfig(run_dir="runs/default/sft", lr=1e-3, max_steps=600, warmup_steps=30, batch_size=32,
                       total_batch_tokens=32 * 256, eval_every=100, eval_batches=16, sample_every=200,
                       save_every=100, sample_tokens=120)


@dataclass
class SFTConfig:
    checkpoint: str = "runs/default"  # pretrained run or checkpoint: model config and tokenizer come from it
    mixture: str = "alpaca:1,instructions:1"  # task:weight list (see `tinylm/tasks`)
    data_seed: int = 0  # fixes the held-out split and the mixture
    val_examples: int = 512  # held-out conversations for the validation loss
    heldout_percent: float = 0.0  # percent of each task held out (raise it for a small JSONL); 0 = each task's default
    model_overrides: str = ""  # e.g. "rope_theta=20000"; each override is printed
    train: TrainConfig = field(default_factory=_sft_train_defaults)


# ---------------------------------------------------------------------------------------------
# Alignment (after SFT): reward model, best-of-n, DPO, PPO, GRPO. Each starts from an SFT checkpoint.


def _align_train_defaults(run_dir: str, lr: float, max_steps: int, batch_size: int = 16) -> "TrainConfig":
    return TrainConfig(run_dir=run_dir, lr=lr, max_steps=max_steps, warmup_steps=5, batch_size=batch_size,
                       total_batch_tokens=batch_size * 256, dtype="fp32", weight_decay=0.0, min_lr_frac=1.0,
                       log_every=1, eval_every=25, eval_batches=1, sample_every=0, save_every=10, keep_last=2)


@dataclass
class SamplingConfig:
    """On-policy sampling from the SFT model on training-split checkable instructions."""

    prompts: int = 600  # training prompts to sample for
    samples: int = 8  # answers per prompt (K)
    temperature: float = 1.0  # sampling temperature
    top_k: int = 0  # 0 = off
    max_new_tokens: int = 120  # answer length limit in tokens
    kinds: str = ""  # comma-separated instruction kinds to use ("" = all)
    compile: bool = False  # compiled decoding (pays off for long runs)
    greedy: bool = False  # also decode each prompt greedily and rank that answer with the samples (DPO's rejected)


@dataclass
class RolloutConfig:
    """RL rollouts: `prompts` x `group_size` answers per rollout, then `epochs` passes of
    `minibatches` optimizer steps over them (after the first step the ratio differs from 1 and
    the clipping acts)."""

    prompts: int = 8  # prompts per rollout (per rank)
    group_size: int = 8  # answers per prompt (GRPO's G)
    minibatches: int = 2  # optimizer steps per pass over a rollout
    epochs: int = 1  # passes over each rollout
    temperature: float = 1.0  # sampling temperature
    top_k: int = 0  # 0 = off
    max_new_tokens: int = 120  # answer length limit in tokens
    kinds: str = ""  # instruction kinds to train on ("" = all)
    compile: bool = False  # compiled decoding for the rollouts


@dataclass
class RMConfig:
    checkpoint: str = "runs/default/sft"  # the SFT model the reward model starts from
    pairs: str = "hh-rlhf"  # hh-rlhf[:SUBSET] | on-policy | pairs:PATH | pairs-lenient:PATH
    heldout_percent: float = 10.0  # pairs held out for pairwise accuracy
    also_eval: str = ""  # other pair sources whose held-out pairs are scored at the end (e.g. on-policy, hh-rlhf)
    task: str = "instructions"  # on-policy pairs: checkable task and its held-out split seed
    data_seed: int = 0  # must match the SFT data_seed so the held-out prompts stay held out
    sampling: SamplingConfig = field(default_factory=SamplingConfig)  # on-policy sampling (see SamplingConfig flags)
    train: TrainConfig = field(default_factory=lambda: _align_train_defaults("runs/default/rm", 1e-4, 200))  # optimisation (see TrainConfig flags)


@dataclass
class RFTConfig:
    """Best-of-n rejection-sampling fine-tuning (Llama 2, §3.2.3)."""

    checkpoint: str = "runs/default/sft"  # the SFT (policy) checkpoint or run to start from
    task: str = "instructions"  # checkable task whose train split gives prompts and whose checker gives rewards
    data_seed: int = 0  # must match the SFT data_seed so the held-out prompts stay held out
    min_score: float = 1.0  # keep a prompt's best answer only when it scores at least this (and is not degenerate)
    min_gain: float = 0.0  # also keep a best answer below min_score that beats its prompt's mean reward by this much (0 = off)
    repair: bool = False  # where no answer passes, keep one edited to pass (ends_with: last sentence replaced; max_sentences: cut)
    guard: bool = True  # degenerate answers are never kept
    eval_prompts: int = 48  # held-out prompts scored (greedy) at each evaluation
    sampling: SamplingConfig = field(default_factory=SamplingConfig)  # on-policy sampling (see SamplingConfig flags)
    train: TrainConfig = field(default_factory=lambda: _align_train_defaults("runs/default/rft", 3e-4, 150, 32))  # optimisation (see TrainConfig flags)


@dataclass
class DPOConfig:
    checkpoint: str = "runs/default/sft"  # policy start and, unless `reference` is set, the frozen reference
    reference: str = ""  # reference model ("" = checkpoint)
    pairs: str = "on-policy"  # on-policy | hh-rlhf[:SUBSET] | pairs:PATH | pairs-lenient:PATH
    beta: float = 0.1  # KL strength (Rafailov et al. 2023)
    nll_weight: float = 1.0  # + this x the chosen answers' NLL per token (RPO; Llama 3 uses 0.2; 1.0 measured best here)
    ref_logprobs: str = "precompute"  # precompute (one pass before training) | online (reference forward per batch)
    task: str = "instructions"  # checkable task whose train split gives prompts and whose checker gives rewards
    data_seed: int = 0  # must match the SFT data_seed so the held-out prompts stay held out
    guard: bool = True  # on-policy pairs: degenerate answers score 0
    eval_prompts: int = 48  # held-out prompts scored (greedy) at each evaluation (0 = none)
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(prompts=1200))  # on-policy sampling (see SamplingConfig flags)
    train: TrainConfig = field(default_factory=lambda: _align_train_defaults("runs/default/dpo", 1e-4, 150))  # optimisation (see TrainConfig flags)


@dataclass
class GRPOConfig:
    checkpoint: str = "runs/default/sft"  # the SFT (policy) checkpoint or run to start from
    reference: str = ""  # KL reference ("" = checkpoint)
    task: str = "instructions"  # checkable task whose train split gives prompts and whose checker gives rewards
    data_seed: int = 0  # must match the SFT data_seed so the held-out prompts stay held out
    beta: float = 0.04  # weight of the k3 KL to the reference (Shao et al. 2024)
    clip: float = 0.2  # ratio clipping epsilon (Schulman et al. 2017)
    guard: bool = True  # reward-hacking guard: degenerate answers get reward 0
    max_dead_fraction: float = 0.9  # refuse to start when the estimated fraction of dead groups is above this
    dead_estimate_prompts: int = 32  # prompts sampled before training to estimate dead groups (0 = skip)
    eval_prompts: int = 48  # held-out prompts scored (greedy) at each evaluation (0 = none)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)  # rollouts (see RolloutConfig flags)
    train: TrainConfig = field(default_factory=lambda: _align_train_defaults("runs/default/grpo", 1e-4, 100, 32))  # optimisation (see TrainConfig flags)


@dataclass
class PPOConfig:
    checkpoint: str = "runs/default/sft"  # policy start; the value head starts at zero
    reference: str = ""  # KL reference ("" = checkpoint)
    reward: str = "checker"  # checker | rm | checker+rm
    reward_model: str = ""  # a `tinylm rm` run (for reward rm or checker+rm)
    task: str = "instructions"  # checkable task whose train split gives prompts and whose checker gives rewards
    data_seed: int = 0  # must match the SFT data_seed so the held-out prompts stay held out
    kl_coef: float = 0.05  # per-token KL penalty to the reference in the reward (InstructGPT's beta)
    clip: float = 0.2  # ratio clipping epsilon (Schulman et al. 2017)
    value_clip: float = 0.2  # value clipping range
    vf_coef: float = 0.5  # weight of the value loss
    gamma: float = 1.0  # discount
    lam: float = 0.95  # GAE lambda
    no_end_penalty: float = 1.0  # subtracted from the reward of an answer that never emits <|end|>
    guard: bool = True  # reward-hacking guard: degenerate answers get reward 0
    eval_prompts: int = 48  # held-out prompts scored (greedy) at each evaluation (0 = none)
    rollout: RolloutConfig = field(default_factory=lambda: RolloutConfig(prompts=16, group_size=2, minibatches=2, epochs=2))  # rollouts (see RolloutConfig flags)
    train: TrainConfig = field(default_factory=lambda: _align_train_defaults("runs/default/ppo", 1e-4, 100, 16))  # optimisation (see TrainConfig flags)


@dataclass
class ChatConfig:
    checkpoint: str = "runs/default/sft"  # run dir or checkpoint dir of an SFT model
    system: str = ""  # optional system message
    prompt: str = ""  # `tinylm generate`: the one user message to answer
    max_new_tokens: int = 200  # most tokens per answer
    temperature: float = 0.7  # 0 = greedy
    top_k: int = 50  # 0 = off
    top_p: float = 1.0  # nucleus sampling mass; 1 = off
    seed: int = 0  # sampling seed
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    compile: bool = False  # compiled decoding: 2.6x tokens/s at 1M on CPU after 12-25 s of compiling; for long runs


@dataclass
class ServeConfig:
    model: str = "runs/default/sft"  # tinylm run/checkpoint dir, llama2.c .bin (with --tokenizer) or HF directory
    tokenizer: str = ""  # llama2.c: tokenizer .bin or SentencePiece .model
    host: str = "127.0.0.1"  # 0.0.0.0 exposes the server to the network (set --api_key then)
    port: int = 8000  # TCP port (0 = any free one)
    api_key: str = ""  # when set, /v1/* requires `Authorization: Bearer KEY`
    max_batch: int = 16  # sequences decoded together (continuous batching); 1 = a plain FIFO queue
    max_queue: int = 64  # requests waiting for a batch row; more are answered 503 with Retry-After
    max_n: int = 8  # cap on `n`, the choices per request
    max_tokens: int = 0  # cap on `max_tokens`; 0 = the model's context length
    max_body_bytes: int = 262144  # larger request bodies are answered 413
    timeout: float = 120.0  # seconds a request may wait and generate before it is answered 504
    threads: int = 0  # torch threads for generation; 0 = torch's default
    device: str = "cpu"  # auto | cpu | cuda | cuda:N | mps (the scheduler decodes on it)


@dataclass
class IFEvalConfig:
    checkpoint: str = "runs/default/sft"  # run dir or checkpoint dir (base or SFT model)
    task: str = "instructions"  # a checkable task (see `tinylm/tasks`)
    data_seed: int = 0  # must match the SFT data_seed so the test split is truly held out
    heldout_percent: float = 0.0  # must match the SFT heldout_percent; 0 = the task's default
    n: int = 300  # held-out examples to score (0 = all)
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    samples: int = 1  # responses per prompt (sampled decoding: >1 averages over seeds)
    max_new_tokens: int = 160  # most tokens per response
    seed: int = 0  # sampling seed
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    compile: bool = False  # compiled decoding: 2.6x tokens/s at 1M on CPU after 12-25 s of compiling; for long runs
    out: str = ""  # JSON results path; a Markdown file of sample responses is written beside it


@dataclass
class ExportConfig:
    checkpoint: str = "runs/default"  # run dir or checkpoint dir
    format: str = "hf"  # hf (transformers LlamaForCausalLM directory) | llama2c (run.c model.bin + tokenizer.bin) | gguf (llama.cpp)
    out: str = "runs/default/export-hf"  # output directory (not an existing file); gguf: a .gguf file or a directory for model-<outtype>.gguf
    outtype: str = "f32"  # gguf weights: f32 (exact) | f16 | q8_0 (norm gains stay f32)


@dataclass
class ImportConfig:
    path: str = ""  # a Hugging Face Llama directory, or a llama2.c .bin checkpoint
    format: str = "hf"  # hf | llama2c
    tokenizer: str = ""  # llama2c: the tokenizer .bin (e.g. tok512.bin); hf: defaults to the directory's tokenizer.json
    out: str = "runs/imported"  # a tinylm run directory (checkpoints/step_000000)


@dataclass
class SampleConfig:
    checkpoint: str = "runs/default"  # run dir or checkpoint dir
    prompt: str = ""  # text to continue ("" = start a new document)
    max_new_tokens: int = 200  # most tokens per sample
    temperature: float = 0.8  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    num_samples: int = 1  # samples to draw (seeds seed, seed+1, ...)
    seed: int = 0  # sampling seed
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    compile: bool = False  # compiled decoding: 2.6x tokens/s at 1M on CPU after 12-25 s of compiling; for long runs


@dataclass
class EvalConfig:
    model: str = "runs/default"  # tinylm run/checkpoint dir, llama2.c .bin (with --tokenizer), or HF directory
    tokenizer: str = ""  # llama2.c: tokenizer .bin or SentencePiece .model
    tasks: str = "default"  # comma-separated task names or suites (default, quick); --list_tasks shows them
    limit: int = 0  # examples per task (per subject for MMLU, per paradigm for BLiMP); 0 = all
    out: str = ""  # output directory; default <run dir>/eval for tinylm models, runs/eval/<name> otherwise
    batch_tokens: int = 8192  # padded tokens per forward pass when scoring
    dtype: str = "fp32"  # fp32 | bf16 (autocast for the forward pass; scores in fp32 either way)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps


@dataclass
class BpbConfig:
    checkpoint: str = "runs/default"  # run dir or checkpoint dir
    text: str = "tinystories"  # a file path, or a named corpus (its validation split)
    context_len: int = 0  # tokens of overlap between windows; 0 = half the context, 1 = lm-eval
    batch_size: int = 32  # windows per forward pass
    max_bytes: int = 0  # 0 = all
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    out: str = ""  # optional JSON output path


@dataclass
class PipelineConfig:
    """The default pipeline (`tinylm pipeline`, `make run`): every stage in order, into run_dir."""

    run_dir: str = "runs/default"  # everything the pipeline writes goes here
    corpus: str = "gutenberg-children"  # a named corpus or a path (see `tinylm info`)
    vocab_size: int = 4096  # tokenizer vocabulary
    preset: str = DEFAULT_MODEL  # model size preset (see `tinylm info`)
    max_steps: int = 1200  # pretraining steps of the default recipe (Muon, 4096 tokens per step, WSD)
    max_train_bytes: int = 0  # tokenize at most this many training bytes; 0 = all
    repeat_frac: float = 0.0  # share of pretraining windows made copying drills (`tinylm pretrain --repeat_frac`); 0 = off
    sft_steps: int = 600  # instruction-tuning steps after pretraining; 0 = stop after pretraining
    sft_mixture: str = "alpaca:1,instructions:1"  # SFT task mixture (see `tinylm/tasks`)
    ifeval_n: int = 300  # held-out checkable instructions scored for the base and the SFT model
    eval_tasks: str = "quick"  # `tinylm eval` suite or task list for the base and SFT models ("" = skip)
    eval_limit: int = 200  # examples per evaluation task (per paradigm for BLiMP) to keep `make run` short; 0 = all
    align: str = "dpo"  # alignment after SFT: dpo | grpo | ppo | rft | none (each also a `tinylm` subcommand)
    align_steps: int = 0  # optimizer steps of the alignment stage (0 = the method's default)
    report: bool = True  # finish with `tinylm report` on the run (PDF only when a TeX engine is installed)
    tracker: str = ""  # tensorboard | wandb: live curves of pretraining and SFT (`tinylm board RUN RUN/sft`)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    compile: bool = False  # torch.compile the model (first steps slower, then faster)


# ---------------------------------------------------------------------------------------------
# Ranges: every numeric field is checked before a stage does any work, so `--train.batch_size 0`
# is one line naming the flag, not a ZeroDivisionError twenty minutes in.

POS, NONNEG, UNIT = (1, None), (0, None), (0.0, 1.0)
DEVICE_HELP = "auto | cpu | cuda | cuda:N | mps"
RANGES: dict[str, dict[str, tuple]] = {
    "ModelConfig": dict(vocab_size=POS, seq_len=POS, n_layer=POS, n_head=POS, n_kv_head=POS, n_embd=POS,
                        ffn_hidden=NONNEG, multiple_of=POS, rope_theta=(1e-9, None), norm_eps=(1e-30, None)),
    "TokenizerConfig": dict(vocab_size=(263, None), sample_bytes=NONNEG),  # 256 bytes + 6 specials + 1 merge
    "PrepareConfig": dict(shard_tokens=NONNEG, max_train_bytes=NONNEG, batch_docs=POS),
    "TrainConfig": dict(seed=NONNEG, threads=NONNEG, batch_size=POS, total_batch_tokens=POS, max_steps=POS,
                        lr=(1e-30, None), min_lr_frac=UNIT, warmup_steps=NONNEG, decay_frac=UNIT,
                        weight_decay=(0.0, None), beta1=(0.0, 0.999999), beta2=(0.0, 0.999999), eps=(1e-30, None),
                        grad_clip=(0.0, None), log_every=POS, eval_every=NONNEG, eval_batches=POS,
                        sample_every=NONNEG, sample_tokens=POS, save_every=NONNEG, keep_last=NONNEG,
                        muon_lr=(1e-30, None), muon_momentum=(0.0, 0.999999)),
    "PretrainConfig": dict(repeat_frac=UNIT),
    "SFTConfig": dict(data_seed=NONNEG, val_examples=POS, heldout_percent=(0.0, 99.0)),
    "ChatConfig": dict(max_new_tokens=POS, temperature=(0.0, None), top_k=NONNEG, top_p=(1e-9, 1.0), seed=NONNEG),
    "IFEvalConfig": dict(data_seed=NONNEG, heldout_percent=(0.0, 99.0), n=NONNEG, temperature=(0.0, None), top_k=NONNEG, samples=POS,
                         max_new_tokens=POS, seed=NONNEG),
    "SampleConfig": dict(max_new_tokens=POS, temperature=(0.0, None), top_k=NONNEG, top_p=(1e-9, 1.0),
                         num_samples=POS, seed=NONNEG),
    "EvalConfig": dict(limit=NONNEG, batch_tokens=POS),
    "ServeConfig": dict(port=(0, 65535), max_batch=POS, max_queue=NONNEG, max_n=POS, max_tokens=NONNEG,
                        max_body_bytes=POS, timeout=(1e-9, None), threads=NONNEG),
    "BpbConfig": dict(context_len=NONNEG, batch_size=POS, max_bytes=NONNEG),
    "PipelineConfig": dict(repeat_frac=UNIT, vocab_size=(263, None), max_steps=POS, max_train_bytes=NONNEG, sft_steps=NONNEG,
                           ifeval_n=NONNEG, eval_limit=NONNEG, align_steps=NONNEG),
    "SamplingConfig": dict(prompts=NONNEG, samples=(2, None), temperature=(0.0, None), top_k=NONNEG, max_new_tokens=POS),
    "RolloutConfig": dict(prompts=POS, group_size=POS, minibatches=POS, epochs=POS, temperature=(1e-9, None), top_k=NONNEG,
                          max_new_tokens=POS),
    "RMConfig": dict(heldout_percent=(0.0, 99.0), data_seed=NONNEG),
    "RFTConfig": dict(data_seed=NONNEG, min_score=UNIT, min_gain=(0.0, 1.0), eval_prompts=NONNEG),
    "DPOConfig": dict(beta=(1e-9, None), nll_weight=(0.0, None), data_seed=NONNEG, eval_prompts=NONNEG),
    "GRPOConfig": dict(beta=(0.0, None), clip=(1e-9, 1.0), data_seed=NONNEG, max_dead_fraction=UNIT,
                       dead_estimate_prompts=NONNEG, eval_prompts=NONNEG),
    "PPOConfig": dict(kl_coef=(0.0, None), clip=(1e-9, 1.0), value_clip=(0.0, None), vf_coef=(0.0, None), gamma=UNIT,
                      lam=UNIT, no_end_penalty=(0.0, None), data_seed=NONNEG, eval_prompts=NONNEG),
}
CHOICES: dict[str, dict[str, tuple]] = {
    "TrainConfig": dict(dtype=("auto", "bf16", "fp16", "fp32"), schedule=("cosine", "wsd"), parallel=("ddp", "fsdp"),
                        optimizer=("adamw", "muon"), tracker=("", "tensorboard", "wandb")),
    "ExportConfig": dict(format=("hf", "llama2c", "gguf"), outtype=("f32", "f16", "q8_0")),
    "ImportConfig": dict(format=("hf", "llama2c")),
    "EvalConfig": dict(dtype=("fp32", "bf16")),
    "PipelineConfig": dict(preset=tuple(MODEL_PRESETS), tracker=("", "tensorboard", "wandb"),
                           align=("grpo", "dpo", "ppo", "rft", "none")),
    "DPOConfig": dict(ref_logprobs=("precompute", "online")),
    "PPOConfig": dict(reward=("checker", "rm", "checker+rm")),
}


def _fmt_range(lo, hi) -> str:
    if hi is None:
        return f">= {lo}"
    return f"in [{lo}, {hi}]"


def validate(cfg, prefix: str = "") -> None:
    """Raise ValueError naming the flag (`--train.batch_size`) of the first field out of range."""
    import re

    cls = type(cfg).__name__
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        flag = f"--{prefix}{f.name}"
        if dataclasses.is_dataclass(v):
            validate(v, f"{prefix}{f.name}.")
            continue
        if f.name in RANGES.get(cls, {}):
            lo, hi = RANGES[cls][f.name]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v < lo or (hi is not None and v > hi):
                raise ValueError(f"{flag} must be {_fmt_range(lo, hi)}, got {v!r}")
        if f.name in CHOICES.get(cls, {}) and v not in CHOICES[cls][f.name]:
            raise ValueError(f"{flag} must be one of {', '.join(CHOICES[cls][f.name])}, got {v!r}")
        if f.name == "device" and not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", str(v)):
            raise ValueError(f"{flag} must be one of {DEVICE_HELP}, got {v!r}")


# ---------------------------------------------------------------------------------------------
# Generic helpers: dict round trip and "section.field=value" overrides


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(cls, d: dict):
    """Build dataclass `cls` from a (possibly nested) dict, rejecting unknown keys."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
    kwargs = {}
    for k, v in d.items():
        t = hints[k]
        kwargs[k] = from_dict(t, v) if dataclasses.is_dataclass(t) else v
    return cls(**kwargs)


def parse_value(text: str, typ):
    if typ is bool:
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean, got {text!r}")
    return typ(text)


def flat_fields(cls, prefix: str = ""):
    """Yield (dotted_name, type, default) for every leaf field of a (nested) dataclass."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        if dataclasses.is_dataclass(t):
            yield from flat_fields(t, f"{prefix}{f.name}.")
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            yield f"{prefix}{f.name}", t, default


def apply_overrides(cfg, overrides: dict[str, object]):
    """Return a copy of `cfg` with dotted-name overrides applied (values may be strings)."""
    d = to_dict(cfg)
    types = {name: t for name, t, _ in flat_fields(type(cfg))}
    for name, value in overrides.items():
        if name not in types:
            raise ValueError(f"unknown config field {name!r}")
        if isinstance(value, str) and types[name] is not str:
            value = parse_value(value, types[name])
        node = d
        *path, leaf = name.split(".")
        for p in path:
            node = node[p]
        node[leaf] = value
    return from_dict(type(cfg), d)


def save_json(obj, path) -> None:
    from tinylm.util import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
