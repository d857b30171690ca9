"""Evaluation harness: `tinylm eval --model MODEL --tasks a,b,c` (see tinylm/eval/harness.py)."""
