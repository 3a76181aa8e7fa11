"""Contrastive pretraining (`python -m training.pretrain`; usage in `train`).

Modules: `sampler` (anchor, positives and negatives from a frame store), `monitor` (label-free held-out clips and the
labelled probe), `checkpointing` (resumable state written atomically), `train` (the Accelerate loop and `main`).
"""
