"""Fine-tuning tasks: the registry, readers, encoding, metrics, batches and evaluation.

    registry.py    TaskSpec, TaskKind, get_task, Example               (torch-free)
    readers.py     task_data TSVs and the embedded reviews -> Examples  (torch-free)
    encoding.py    Examples -> Encodings with aligned labels; predictions back to labels (torch-free)
    metrics.py     accuracy / F1 / MRR / entity F1 of predictions       (torch-free)
    batches.py     padded torch batches of encoded examples
    evaluation.py  a model's task metrics on a split, on one process or many

The torch-free names are importable from the package itself. Example::

    from ernie_tiny.tasks import encode_examples, evaluate, get_task, load_split
"""

from ernie_tiny.tasks.encoding import (EncodedExample, EncodedSplit, align_tags_to_tokens, char_tags_from_token_tags,
                                       char_tags_from_tokens, encode_examples, predictions_from_outputs)
from ernie_tiny.tasks.metrics import evaluate
from ernie_tiny.tasks.readers import (REVIEWS_FRACTIONS, REVIEWS_SEED, data_name, load_split, load_splits, parse_ner_row,
                                      parse_row, read_task_file, reviews_splits)
from ernie_tiny.tasks.registry import (KIND_HEADS, KIND_METRICS, MSRA_TAGS, NER_SEPARATOR, SPLITS, TASKS, DataError,
                                       Example, TaskKind, TaskSpec, get_task)

__all__ = ["DataError", "EncodedExample", "EncodedSplit", "Example", "KIND_HEADS", "KIND_METRICS", "MSRA_TAGS",
           "NER_SEPARATOR", "REVIEWS_FRACTIONS", "REVIEWS_SEED", "SPLITS", "TASKS", "TaskKind", "TaskSpec",
           "align_tags_to_tokens", "char_tags_from_token_tags", "char_tags_from_tokens", "data_name",
           "encode_examples", "evaluate", "get_task", "load_split", "load_splits", "parse_ner_row", "parse_row",
           "predictions_from_outputs", "read_task_file", "reviews_splits"]
