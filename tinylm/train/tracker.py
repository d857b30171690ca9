"""Experiment tracking: the Trainer's metrics.jsonl rows and samples, mirrored live to
TensorBoard or Weights & Biases (offline). metrics.jsonl stays the record; a tracker is a view.

    tinylm pretrain ... --train.tracker tensorboard      # events in <run_dir>/tb
    tinylm board runs/a runs/b runs/a/sft                # their curves side by side in TensorBoard

Every numeric field of a metrics.jsonl row becomes a scalar of the same name at the row's step,
stored in float64 so the dashboard holds exactly the JSON's values (float32 would round token
counts above 2^24); samples become text at their step. A resumed run continues the same curves:
the run resumes from the checkpoint at step k, where the killed process may already have logged
steps after k, so TensorBoard is told to purge every event from step k + 1 on (`purge_step`,
honoured by TensorBoard's reader) before the resumed steps are logged again; Weights & Biases
only accepts increasing steps, so steps it has already seen are not sent twice (CPU resume is
bit-exact, so the values agree).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TRACKERS = ("", "tensorboard", "wandb")
_PACKAGES = {"tensorboard": "tensorboard (or pip install 'tinylm[track]')", "wandb": "wandb"}


class TrackerError(ValueError):
    """A tracker that cannot run: unknown, not installed, or its log directory is not writable."""


class Tracker:
    """The no-op tracker (`--train.tracker ""`)."""

    def log_metrics(self, row: dict) -> None:
        pass

    def log_samples(self, step: int, rows: list[dict]) -> None:
        pass

    def close(self) -> None:
        pass


def _scalars(row: dict) -> dict[str, float]:
    return {k: v for k, v in row.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


def _samples_markdown(rows: list[dict]) -> str:
    return "\n\n".join(f"**{r.get('prompt') or '(no prompt)'}**\n\n    " + str(r.get("text", "")).replace("\n", "\n    ")
                       for r in rows)


class TensorBoardTracker(Tracker):
    def __init__(self, log_dir: Path, start_step: int):
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: events of an earlier process at steps >= start_step are dropped by the reader
        self.writer = SummaryWriter(str(log_dir), purge_step=start_step, flush_secs=10)

    def log_metrics(self, row: dict) -> None:
        for k, v in _scalars(row).items():
            self.writer.add_scalar(k, v, row["step"], new_style=True, double_precision=True)
        self.writer.flush()

    def log_samples(self, step: int, rows: list[dict]) -> None:
        if rows:
            self.writer.add_text("samples", _samples_markdown(rows), step)
            self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbTracker(Tracker):
    """Offline W&B run under <log_dir>/wandb, one run id per run directory (kept in
    <log_dir>/wandb/tinylm.json with the last step sent), resumed with the same id."""

    def __init__(self, log_dir: Path, run_name: str, config: dict, fresh: bool):
        import wandb

        state_path = log_dir / "wandb" / "tinylm.json"
        state_path.parent.mkdir(parents=True, exist_ok=True)
        state = {"id": wandb.util.generate_id(), "last_step": -1}  # a fresh run is a new W&B run
        if not fresh and state_path.exists():
            state = json.loads(state_path.read_text())
        self.state, self.state_path = state, state_path
        self.run = wandb.init(project="tinylm", name=run_name, id=state["id"], dir=str(log_dir), mode="offline",
                              config=config, resume="allow")

    def _save(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state))
        os.replace(tmp, self.state_path)

    def log_metrics(self, row: dict) -> None:
        if row["step"] <= self.state["last_step"]:
            return  # sent before a kill; W&B only takes increasing steps
        self.run.log(_scalars(row), step=row["step"])
        self.state["last_step"] = row["step"]
        self._save()

    def log_samples(self, step: int, rows: list[dict]) -> None:
        import wandb

        if rows and step >= self.state["last_step"]:
            table = wandb.Table(columns=["step", "prompt", "text"], data=[[step, r.get("prompt", ""), r.get("text", "")] for r in rows])
            self.run.log({"samples": table}, step=step)

    def close(self) -> None:
        self.run.finish()


def default_dir(kind: str, run_dir) -> Path:
    return Path(run_dir) / "tb" if kind == "tensorboard" else Path(run_dir)


def _require(kind: str) -> None:
    try:
        if kind == "tensorboard":
            import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it)
        else:
            import wandb  # noqa: F401
    except ImportError:
        raise TrackerError(f"train.tracker={kind} needs the {kind} package: pip install {_PACKAGES[kind]}") from None


def check(kind: str, log_dir) -> Path:
    """Fail early, in one line, when the tracker cannot run: unknown name, package missing,
    log directory not writable. Returns the log directory."""
    if kind not in TRACKERS:
        raise TrackerError(f"train.tracker={kind!r}: choose tensorboard, wandb or '' (none)")
    log_dir = Path(log_dir)
    if not kind:
        return log_dir
    _require(kind)
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        probe = log_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise TrackerError(f"train.tracker_dir {log_dir} is not writable ({e.strerror or e})") from None
    return log_dir


def create(kind: str, log_dir, start_step: int, run_name: str = "", config: dict | None = None) -> Tracker:
    """A tracker whose first logged step will be `start_step` (0 for a fresh run, k + 1 after
    resuming from the checkpoint at step k)."""
    log_dir = check(kind, log_dir)
    if kind == "tensorboard":
        return TensorBoardTracker(log_dir, start_step)
    if kind == "wandb":
        return WandbTracker(log_dir, run_name or log_dir.name, config or {}, fresh=start_step == 0)
    return Tracker()


# ---------------------------------------------------------------------------------------------
# Several runs side by side


def _events_dir(run: Path) -> Path:
    return run / "tb"


def replay(run: Path) -> Path:
    """Write <run>/tb from metrics.jsonl and samples.jsonl, for a run trained without a tracker
    (metrics.jsonl is the record, so the curves are the same ones)."""
    out = _events_dir(run)
    t = TensorBoardTracker(check("tensorboard", out), 0)
    for line in (run / "metrics.jsonl").read_text().splitlines():
        try:
            t.log_metrics(json.loads(line))
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line torn by a kill
    samples: dict[int, list[dict]] = {}
    if (run / "samples.jsonl").exists():
        for line in (run / "samples.jsonl").read_text().splitlines():
            try:
                r = json.loads(line)
                samples.setdefault(int(r["step"]), []).append(r)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
    for step, rows in sorted(samples.items()):
        t.log_samples(step, rows)
    t.close()
    return out


def board_command(runs: list[str], port: int = 6006) -> list[str]:
    """The `tensorboard --logdir_spec name:dir,...` command for runs (each a run directory with
    tb/ events or, failing that, a metrics.jsonl to replay into tb/ first)."""
    specs = []
    for r in runs:
        run = Path(r)
        if not (_events_dir(run).is_dir() and any(_events_dir(run).glob("events.out.tfevents.*"))):
            if not (run / "metrics.jsonl").exists():
                raise TrackerError(f"{run}: neither TensorBoard events (tb/) nor metrics.jsonl; not a training run directory")
            print(f"board: {run} has no TensorBoard events; writing {replay(run)} from its metrics.jsonl")
        name = str(run).rstrip("/")
        if any(c in name for c in ",:"):
            raise TrackerError(f"{run}: TensorBoard's --logdir_spec cannot name a path containing ',' or ':'")
        specs.append(f"{name}:{_events_dir(run)}")
    return [sys.executable, "-m", "tensorboard.main", "--logdir_spec", ",".join(specs), "--port", str(port)]


def board(runs: list[str], port: int = 6006, print_only: bool = False) -> int:
    _require("tensorboard")
    cmd = board_command(runs, port)
    print("board: " + " ".join(cmd[2:]).replace("tensorboard.main", "tensorboard", 1))
    if print_only:
        return 0
    return subprocess.call(cmd)
