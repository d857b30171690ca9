"""Kill a training run mid-way and resume it: the pattern every resume test shares."""

from __future__ import annotations

import pytest

from tinylm.config import PretrainConfig
from tinylm.stages import pretrain


def kill_and_resume(model_cfg, train_cfg, die_at: int):
    """Train `train_cfg.run_dir` until step `die_at` raises KeyboardInterrupt (as a Ctrl-C would), then
    build the run again and resume it to the end; returns the resumed Trainer."""
    trainer = pretrain.build(PretrainConfig(model_cfg, train_cfg))

    def die(step):
        if step == die_at:
            raise KeyboardInterrupt

    trainer.on_step = die
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    resumed = pretrain.build(PretrainConfig(model_cfg, train_cfg))
    resumed.fit(resume=True)
    return resumed
