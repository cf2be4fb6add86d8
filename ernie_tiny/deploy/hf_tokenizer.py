"""``ErnieTinySubwordTokenizer``: the subword student's tokenizer as a ``transformers`` tokenizer.

jieba (or the release's dictionary matching) then sentencepiece under word constraints is no
stock ``transformers`` tokenizer, so ``export --format hf`` names this class in the folder's
``tokenizer_config.json`` and keeps our tokenizer files beside ``vocab.txt``. It delegates the
segmentation to :func:`ernie_tiny.tokenization.load.load_tokenizer` on that folder and adds
the specials as ERNIE does (``[CLS] a [SEP] b [SEP]``, type ids 0 then 1), so its ids are ours
(tested equal on real texts and pairs). Needs ``transformers`` (not a dependency of the
package). Example::

    from transformers import AutoModelForSequenceClassification
    from ernie_tiny.deploy.hf_tokenizer import ErnieTinySubwordTokenizer
    tokenizer = ErnieTinySubwordTokenizer.from_pretrained("exported/xnli-hf")
    model = AutoModelForSequenceClassification.from_pretrained("exported/xnli-hf")
    logits = model(**tokenizer(["房间很干净"], return_tensors="pt")).logits
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from transformers import PreTrainedTokenizer

from ernie_tiny.tokenization.encoding import CLS, MASK, PAD, SEP, UNK
from ernie_tiny.tokenization.load import load_tokenizer

NO_LIMIT = 10 ** 9  # our encode truncates to max_len; transformers truncates itself when asked


class ErnieTinySubwordTokenizer(PreTrainedTokenizer):
    vocab_files_names = {"vocab_file": "vocab.txt"}
    model_input_names = ["input_ids", "token_type_ids", "attention_mask"]

    def __init__(self, vocab_file: str, **kwargs):
        self.directory = Path(vocab_file).parent
        self.ernie = load_tokenizer(self.directory)
        if self.ernie.kind != "subword":
            raise ValueError(f"{self.directory}: a {self.ernie.kind} tokenizer; use transformers' BertTokenizer")
        self.vocab = dict(self.ernie.vocab)
        self.ids_to_tokens = {index: token for token, index in self.vocab.items()}
        for name, token in (("unk_token", UNK), ("sep_token", SEP), ("pad_token", PAD), ("cls_token", CLS),
                            ("mask_token", MASK)):
            kwargs.setdefault(name, token)
        super().__init__(**kwargs)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def get_vocab(self) -> dict[str, int]:
        return dict(self.vocab)

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        """Our pieces of ``text`` without the specials our encoder adds."""
        encoding = self.ernie.encode(text, max_len=NO_LIMIT)
        return [token for token, span in zip(encoding.tokens, encoding.spans) if span.text_index >= 0]

    def _convert_token_to_id(self, token: str) -> int:
        return self.vocab.get(token, self.vocab[UNK])

    def _convert_id_to_token(self, index: int) -> str:
        return self.ids_to_tokens.get(index, UNK)

    def build_inputs_with_special_tokens(self, ids_a: list[int], ids_b: list[int] | None = None) -> list[int]:
        cls, sep = [self.vocab[CLS]], [self.vocab[SEP]]
        return cls + ids_a + sep + (ids_b + sep if ids_b is not None else [])

    def create_token_type_ids_from_sequences(self, ids_a: list[int], ids_b: list[int] | None = None) -> list[int]:
        return [0] * (len(ids_a) + 2) + ([1] * (len(ids_b) + 1) if ids_b is not None else [])

    def get_special_tokens_mask(self, ids_a: list[int], ids_b: list[int] | None = None,
                                already_has_special_tokens: bool = False) -> list[int]:
        if already_has_special_tokens:
            return super().get_special_tokens_mask(ids_a, ids_b, already_has_special_tokens=True)
        return [1] + [0] * len(ids_a) + [1] + ([0] * len(ids_b) + [1] if ids_b is not None else [])

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        """Our tokenizer files (vocab.txt, the sentencepiece model, settings) copied into ``save_directory``."""
        out = Path(save_directory)
        written = []
        for source in self.directory.iterdir():
            if source.is_file() and source.name not in ("config.json", "model.safetensors", "hf_parity.json"):
                target = out / ((filename_prefix + "-" if filename_prefix else "") + source.name)
                if os.path.abspath(source) != os.path.abspath(target):
                    shutil.copyfile(source, target)
                written.append(str(target))
        return tuple(written)
