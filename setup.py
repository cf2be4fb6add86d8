"""The one compiled part of ernie-tiny: the tokenizers' per-word loops (one small C file).

Everything else is in pyproject.toml. The extension is optional: where no C compiler is found the
install goes on and the tokenizer runs the same loops in Python (``speedups.py`` says where), with the same output.
"""

import sys

from setuptools import Extension, setup

# gcc/clang: a call to an undeclared function is an error at build time, not a failed import later
STRICT = [] if sys.platform == "win32" else ["-Werror=implicit-function-declaration"]

setup(ext_modules=[Extension("ernie_tiny.tokenization._speedups", ["ernie_tiny/tokenization/_speedups.c"],
                             extra_compile_args=STRICT, optional=True)])
