"""Deprecated import path, kept for one release: use :mod:`ernie_tiny.deploy.predict` (torch-free)."""

from ernie_tiny.deploy.predict import Predictor

__all__ = ["Predictor"]
