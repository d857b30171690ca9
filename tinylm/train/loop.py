"""The training loop: one loop for every stage (pretraining now; SFT, reward model, DPO, RL later).

A stage hands the Trainer a model, a batch source (anything with `next_batch()`,
`state_dict()` and `load_state_dict()`), an objective `objective(model, batch) -> (loss, n)` or
`(loss, n, metrics)` (a dict of scalars averaged over the log window into metrics.jsonl), and
optional `evaluate(model) -> dict` and `sample(model, step) -> list[dict]` hooks. The loop owns
everything else: AdamW, the LR schedule, gradient accumulation derived from a token budget,
autocast, optional torch.compile, clipping, logging to metrics.jsonl, checkpoints and exact resume,
and data parallelism under torchrun (DDP or FSDP2: tinylm/train/parallel.py).

Exact resume: a checkpoint holds the weights, AdamW moments, every RNG state and the data
position, and nothing in the loop draws from a global RNG between checkpoints (samples use their
own seeded generator), so a run killed and resumed produces bit-identical losses on CPU.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from tinylm.config import TrainConfig
from tinylm.runtime import Runtime, peak_flops, remeasure_peak
from tinylm.train import parallel, tracker
from tinylm.train.checkpoint import (CheckpointError, find_checkpoint, list_checkpoints, load_model_weights,
                                     optimizer_state, read_meta, read_tensors, remove_stale_temp,
                                     restore_training_state, save_checkpoint)
from tinylm.train.objectives import next_token_loss
from tinylm.train.optim import build_optimizer, lr_at
from tinylm.util import code_version, hardware_info, load_average


class NonFiniteLossError(RuntimeError):
    pass


class ResumeMismatchError(ValueError):
    pass


def grad_accum_steps(cfg: TrainConfig, seq_len: int, world_size: int = 1) -> int:
    per_step = cfg.batch_size * seq_len * world_size
    if cfg.total_batch_tokens % per_step:
        raise ValueError(
            f"total_batch_tokens={cfg.total_batch_tokens} is not a multiple of batch_size * seq_len * world_size "
            f"= {cfg.batch_size} * {seq_len} * {world_size} = {per_step}"
        )
    return cfg.total_batch_tokens // per_step


def _config_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _config_diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


class MetricsLog:
    """Append-only JSONL with a `step` per row (metrics.jsonl, samples.jsonl); on resume, rows past
    the checkpoint's step are dropped so the file describes exactly one history."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path, self.enabled = path, enabled

    def truncate_after(self, step: int) -> None:
        if not (self.enabled and self.path.exists()):
            return
        keep = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line)
            except json.JSONDecodeError:
                continue  # a line torn by a kill mid-write
        self.path.write_text("".join(line + "\n" for line in keep))

    def write(self, row: dict) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")


class Trainer:
    def __init__(self, rt: Runtime, cfg: TrainConfig, model, train_data, *,
                 objective: Callable = next_token_loss, evaluate: Callable | None = None,
                 sample: Callable | None = None, run_config: dict | None = None,
                 tokenizer_path=None, tokenizer_sha256: str = "", flops_per_token: float = 0.0,
                 on_step: Callable | None = None):
        self.rt, self.cfg, self.model = rt, cfg, model
        self.train_data, self.objective = train_data, objective
        self.evaluate_fn, self.sample_fn = evaluate, sample
        self.run_config = run_config or {}
        self.tokenizer_path, self.tokenizer_sha256 = tokenizer_path, tokenizer_sha256
        self.flops_per_token = flops_per_token
        self.on_step = on_step  # test hook: called after every optimizer step with the step number
        self.run_dir = Path(cfg.run_dir)
        self.seq_len = model.cfg.seq_len
        self.accum = grad_accum_steps(cfg, self.seq_len, rt.world_size)
        # data parallel: every rank its own batches, gradients averaged (DDP), or also the weights,
        # gradients and AdamW moments split across ranks (FSDP, which shards `model` in place)
        self.train_model = parallel.wrap(model, rt.device, rt.world_size, cfg.parallel)
        self.sharded = parallel.is_sharded(model)
        self.optimizer = build_optimizer(model, cfg, rt.device)  # after sharding: over the shards
        if cfg.compile:
            self.train_model = torch.compile(self.train_model)
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl", rt.is_main)
        self.samples = MetricsLog(self.run_dir / "samples.jsonl", rt.is_main)
        # a live view of the same rows (TensorBoard / W&B); checked now so a missing package fails before training
        self.tracker_dir = Path(cfg.tracker_dir) if cfg.tracker_dir else tracker.default_dir(cfg.tracker, self.run_dir)
        if rt.is_main:
            tracker.check(cfg.tracker, self.tracker_dir)
        self.tracker = tracker.Tracker()
        self.step, self.tokens_seen, self.elapsed = 0, 0, 0.0
        self.loss_tokens = 0  # targets that carried loss (all tokens in pretraining; assistant tokens in SFT)
        self._loss_tokens = torch.zeros((), dtype=torch.long, device=rt.device)
        self.last_eval: dict = {}
        self.steps_run = 0  # optimizer steps taken by this fit() call (0 when a finished run is resumed)

    # ------------------------------------------------------------------ checkpoints
    def _meta(self) -> dict:
        return {
            "stage": self.run_config.get("stage", "train"),
            "tokens_seen": self.tokens_seen,
            "loss_tokens": self.loss_tokens,
            "elapsed_s": round(self.elapsed, 3),
            "config": self.run_config.get("config", {}),
            "tokenizer_sha256": self.tokenizer_sha256,
            "code_version": code_version(),
            "hardware": hardware_info(self.rt.device),
            "data_state": self.train_data.state_dict(),
            "last_eval": self.last_eval,
        }

    def save(self) -> Path | None:
        # a sharded model's full state is gathered by all ranks together; only rank 0 writes
        state = parallel.full_state(self.model, self.optimizer) if self.sharded else None
        if not self.rt.is_main:
            return None
        return save_checkpoint(self.run_dir, self.step, self.model, self.optimizer, self._meta(),
                               self.tokenizer_path, self.cfg.keep_last, state=state)

    def _load_weights(self, ckpt: Path, with_optimizer: bool) -> None:
        if not self.sharded:
            load_model_weights(self.model, ckpt / "model.safetensors")
            if with_optimizer:
                self.optimizer.load_state_dict(optimizer_state(ckpt))
            return
        main = self.rt.is_main  # rank 0 reads the files and broadcasts; every rank keeps its shard
        parallel.load_full_state(self.model, self.optimizer if with_optimizer else None,
                                 read_tensors(ckpt / "model.safetensors") if main else None,
                                 optimizer_state(ckpt) if main and with_optimizer else None, self.rt.rank)

    def resume(self) -> bool:
        """Restore the newest checkpoint of run_dir, if any. Returns whether one was found."""
        if not list_checkpoints(self.run_dir):
            return False
        ckpt = find_checkpoint(self.run_dir)
        try:
            return self._resume_from(ckpt)
        except CheckpointError as e:
            older = [p for p in list_checkpoints(self.run_dir) if p != ckpt]
            if not older:
                raise
            raise CheckpointError(
                f"{e}. The previous checkpoint {older[-1]} is complete: move the damaged one aside "
                f"(mv {ckpt} {ckpt.parent / ('damaged-' + ckpt.name)}) and run again with --resume"
            ) from e

    def _resume_from(self, ckpt: Path) -> bool:
        meta = read_meta(ckpt)
        if self.tokenizer_sha256 and meta.get("tokenizer_sha256") not in ("", None, self.tokenizer_sha256):
            raise ResumeMismatchError(
                f"{ckpt / 'meta.json'} records tokenizer sha256 {meta['tokenizer_sha256'][:12]}, but "
                f"{self.tokenizer_path} is {self.tokenizer_sha256[:12]}: resuming would feed the model foreign token ids"
            )
        old_model = meta.get("config", {}).get("model")
        new_model = self.run_config.get("config", {}).get("model")
        if old_model is not None and new_model is not None and old_model != new_model:
            raise ResumeMismatchError(
                f"{ckpt}: model config differs from the checkpoint's ({'; '.join(_config_diff(old_model, new_model))})"
            )
        changed = _config_diff(meta.get("config", {}).get("train", {}), self.run_config.get("config", {}).get("train", {}))
        if changed and self.rt.is_main:
            print(f"resume: training config changed since the checkpoint: {'; '.join(changed)}")
        self._load_weights(ckpt, with_optimizer=True)
        restore_training_state(ckpt, None)  # RNG states
        self.train_data.load_state_dict(meta["data_state"])
        self.step, self.tokens_seen = meta["step"], meta["tokens_seen"]
        self.loss_tokens = meta.get("loss_tokens", 0)
        self.elapsed, self.last_eval = meta.get("elapsed_s", 0.0), meta.get("last_eval", {})
        self.metrics.truncate_after(self.step)
        self.samples.truncate_after(self.step)
        if self.rt.is_main:
            print(f"resumed from {ckpt} (step {self.step}, {self.tokens_seen:,} tokens)")
        return True

    # ------------------------------------------------------------------ hooks
    def _evaluate(self) -> dict:
        if self.evaluate_fn is None:
            return {}
        self.model.eval()
        out = self.evaluate_fn(self.model)
        self.model.train()
        self.last_eval = dict(out, step=self.step)
        return out

    def _sample(self) -> None:
        # a sharded model runs only when every rank runs it (each forward all-gathers the weights)
        if self.sample_fn is None or not (self.rt.is_main or self.sharded):
            return
        self.model.eval()
        rows = self.sample_fn(self.model, self.step)
        self.model.train()
        if not self.rt.is_main:
            return
        for r in rows:
            self.samples.write(dict(r, step=self.step))
        self.tracker.log_samples(self.step, rows)
        if rows:
            tqdm.write(f"--- sample at step {self.step} ---\n{rows[0]['text'][:400]}\n---")

    # ------------------------------------------------------------------ the loop
    def accumulate(self) -> tuple[torch.Tensor, int]:
        """Gradients of one optimizer step: `accum` micro-batches on every rank, weighted by their
        loss tokens, so the gradient is that of the mean loss over all loss tokens of the step, on
        all ranks together, however they are split into micro-batches and ranks (SFT micro-batches
        hold different numbers of assistant tokens; pretraining ones hold equal numbers, where this
        is the plain mean over micro-batches). Returns (that mean loss, token positions computed
        by all ranks, padding included); the gradients are left in the parameters."""
        step_sum = torch.zeros((), device=self.rt.device)  # summed loss over the step's loss tokens
        self.step_stats: dict[str, torch.Tensor] = {}
        step_n = torch.zeros((), device=self.rt.device)
        positions = 0
        for micro in range(self.accum):
            batch = self.train_data.next_batch()
            x = batch[0] if isinstance(batch, (tuple, list)) else None
            positions += x.numel() if torch.is_tensor(x) else self.cfg.total_batch_tokens // (self.accum * self.rt.world_size)
            # DDP/FSDP: reduce gradients only on the last micro-batch of the step
            with parallel.gradient_sync(self.train_model, sync=micro == self.accum - 1):
                with self.rt.autocast():
                    out = self.objective(self.train_model, batch)
                loss, n = out[0], out[1]
                for k, v in (out[2] if len(out) > 2 else {}).items():  # an objective's own metrics (reward, KL, ...)
                    v = v.detach().float() if torch.is_tensor(v) else torch.tensor(float(v))
                    self.step_stats[k] = self.step_stats.get(k, 0.0) + v / self.accum
                n = torch.as_tensor(n, device=loss.device)
                (loss * n).backward()  # the micro-batch's summed loss; divided by the step's count below
            step_sum += loss.detach().float() * n
            step_n += n
            self._loss_tokens += n.detach().long()
        ranks = torch.tensor(1.0, device=self.rt.device)
        if self.rt.world_size > 1:  # the global count; DDP/FSDP averaged the gradients over ranks
            import torch.distributed as dist

            stats = torch.stack([step_sum, step_n, torch.tensor(float(positions), device=step_sum.device)])
            dist.all_reduce(stats, op=dist.ReduceOp.SUM)
            step_sum, step_n, positions = stats[0], stats[1], int(stats[2])
            ranks.fill_(self.rt.world_size)
        total = step_n.clamp(min=1)  # a step without loss tokens: zero gradient, loss 0
        scale = float(ranks / total)
        for p in self.model.parameters():
            if p.grad is not None:
                p.grad.mul_(scale)
        return step_sum / total, positions

    def train_step(self, lr: float) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        """One optimizer step; returns (mean loss, grad norm) as tensors and the number of token
        positions computed by all ranks (padding included). bench/train_throughput.py times
        exactly this method."""
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)  # Muon's groups run at muon_lr / lr times the schedule
        step_loss, positions = self.accumulate()
        grad_norm = None
        if self.cfg.grad_clip > 0:
            # over DTensors (FSDP) the norm is reduced across shards: the norm of the full gradient
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            grad_norm = parallel.full_tensor(grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return step_loss, grad_norm, positions

    def fit(self, resume: bool = False) -> dict:
        cfg, rt = self.cfg, self.rt
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if rt.is_main:
            for p in remove_stale_temp(self.run_dir):
                print(f"removed {p}: an incomplete checkpoint left by an interrupted write")
        if not (resume and self.resume()):
            if cfg.init_from:
                self._load_weights(find_checkpoint(cfg.init_from), with_optimizer=False)
            self.metrics.truncate_after(-1)
            self.samples.truncate_after(-1)
        if rt.is_main:  # first step logged from here: 0, or the checkpoint's step + 1 (later events purged)
            self.tracker = tracker.create(self.cfg.tracker, self.tracker_dir, self.step + 1 if self.step else 0,
                                          self.run_dir.name, self.run_config)
        peak, peak_src = peak_flops(rt.device, rt.dtype) if self.flops_per_token else (0.0, "")
        if rt.is_main:
            mean_len = getattr(self.train_data, "mean_length", None)  # padded conversations (SFT)
            if mean_len:
                per_step = mean_len * cfg.batch_size * self.accum * rt.world_size
                size = (f"about {per_step:,.0f} real tokens (batches of {cfg.batch_size} conversations averaging "
                        f"{mean_len:.0f} tokens, padded, at most {self.seq_len}; grad accumulation {self.accum})")
            else:
                size = (f"{cfg.total_batch_tokens:,} tokens (micro-batch {cfg.batch_size} x {self.seq_len}, "
                        f"grad accumulation {self.accum})")
            print(f"training: {cfg.max_steps} steps x {size}"
                  + (f"; peak {peak / 1e12:.3f} TFLOP/s ({peak_src})" if peak else ""))
        remeasured = False
        if self.step == 0 and cfg.eval_every > 0:
            row = {"step": 0, "tokens": 0, **self._evaluate(), "elapsed_s": 0.0}
            self.metrics.write(row)
            self.tracker.log_metrics(row)
        self.model.train()
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=not rt.is_main, dynamic_ncols=True, unit="step")
        window_losses: list[torch.Tensor] = []
        window_stats: dict[str, list[torch.Tensor]] = {}
        t_window, tokens_window = time.perf_counter(), 0
        t_fit, elapsed_before = time.perf_counter(), self.elapsed  # wall-clock, resumes included
        check_every_step = rt.device.type == "cpu"  # on GPU, checking costs a sync; do it at log steps
        try:  # the progress bar is closed on any exit, so an error message starts on its own line
            while self.step < cfg.max_steps:
                lr = lr_at(self.step, cfg)
                step_loss, grad_norm, positions = self.train_step(lr)
                self.step += 1
                self.steps_run += 1
                self.tokens_seen += positions
                tokens_window += positions
                window_losses.append(step_loss)
                for k, v in self.step_stats.items():
                    window_stats.setdefault(k, []).append(v)
                self.elapsed = elapsed_before + time.perf_counter() - t_fit

                do_eval = cfg.eval_every > 0 and (self.step % cfg.eval_every == 0 or self.step == cfg.max_steps)
                # the last step always saves: a run ends with its final checkpoint whatever save_every is
                do_save = (cfg.save_every > 0 and self.step % cfg.save_every == 0) or self.step == cfg.max_steps
                # a save step is always a log step, so a resumed run's log windows match an uninterrupted one's
                do_log = self.step % cfg.log_every == 0 or self.step == cfg.max_steps or do_save
                if check_every_step or do_log or do_eval or do_save:
                    losses = torch.stack(window_losses).tolist()
                    bad = [i for i, v in enumerate(losses) if not math.isfinite(v)]
                    if bad:
                        first = self.step - len(losses) + bad[0] + 1
                        last = list_checkpoints(self.run_dir)
                        raise NonFiniteLossError(
                            f"loss became {losses[bad[0]]} at step {first}; stopping. "
                            f"Last good checkpoint: {last[-1] if last else 'none'} (lower train.lr or check the data)"
                        )
                if do_log or do_eval:
                    losses = torch.stack(window_losses).tolist()
                    self.loss_tokens += int(self._loss_tokens)
                    self._loss_tokens.zero_()
                    dt = time.perf_counter() - t_window
                    tps = tokens_window / dt
                    row = {
                        "step": self.step, "tokens": self.tokens_seen, "loss_tokens": self.loss_tokens, "lr": lr,
                        "loss": sum(losses) / len(losses),
                        "grad_norm": float(grad_norm) if grad_norm is not None else None,
                        "tok_per_s": round(tps, 1),
                        "mfu": None,
                        "elapsed_s": round(self.elapsed, 2),
                        "loadavg": load_average(),  # 1/5/15-minute: a timing under load is flagged in the report
                    }
                    if peak:
                        mfu = tps * self.flops_per_token / peak
                        if mfu > 1 and not remeasured and "measured" in peak_src:
                            peak, peak_src = remeasure_peak(rt.device, rt.dtype, peak)  # measured while busy
                            remeasured, mfu = True, tps * self.flops_per_token / peak
                            if rt.is_main:
                                tqdm.write(f"note: throughput exceeded the measured peak; re-measured it: "
                                           f"{peak / 1e12:.3f} TFLOP/s")
                        row["mfu"] = round(mfu, 4) if mfu <= 1 else None  # above 100% is a measurement error
                    row.update({k: sum(float(x) for x in v) / len(v) for k, v in window_stats.items()})
                    if do_eval:
                        row.update(self._evaluate())
                    self.metrics.write(row)
                    self.tracker.log_metrics(row)
                    bar.set_postfix(loss=f"{row['loss']:.3f}", **({"val_bpb": f"{row['val_bpb']:.3f}"} if "val_bpb" in row else {}),
                                    tok_s=f"{tps:,.0f}")
                    window_losses, window_stats, tokens_window = [], {}, 0
                if cfg.sample_every > 0 and (self.step % cfg.sample_every == 0 or self.step == cfg.max_steps):
                    self._sample()
                if do_save:
                    self.elapsed = elapsed_before + time.perf_counter() - t_fit
                    self.loss_tokens += int(self._loss_tokens)
                    self._loss_tokens.zero_()
                    self.save()
                if do_log or do_eval:  # tokens/s measures training only, not evaluation, sampling or saving
                    t_window = time.perf_counter()
                bar.update(1)
                if self.on_step is not None:
                    self.on_step(self.step)
        finally:
            bar.close()
            self.tracker.close()
        self.elapsed = elapsed_before + time.perf_counter() - t_fit
        return {"step": self.step, "tokens": self.tokens_seen, "elapsed_s": self.elapsed, **self.last_eval}
