"""ernie-tiny: distil a char-level ERNIE teacher into a fast subword-level ERNIE-tiny student."""

__version__ = "0.1.0"
