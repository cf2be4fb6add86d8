"""``python -m ernie_tiny ...`` (and ``torchrun -m ernie_tiny distill ...``): the ernie-tiny command line."""

from ernie_tiny.console import main

main()
