"""One thin entry point per pipeline stage: build the inputs, call shared code, write artifacts.

tok_train -> prepare -> pretrain -> (sample, bpb) -> sft -> ifeval; `report` only reads what they
wrote. Stages never import each other; `tinylm pipeline` (tinylm/cli.py) runs them in order.
"""
