"""The one training engine: every trainer (fine-tuning, pretraining, distillation) runs on :mod:`ernie_tiny.training.loop`."""
