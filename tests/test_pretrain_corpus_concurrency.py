"""Corpus reads are process- and thread-safe: forked readers never share a file offset with the parent.

A handle the parent opened is inherited by every forked process with the same open file
description, i.e. one shared offset: concurrent ``seek`` + ``readline`` then interleave and return
another document or cut a UTF-8 character in half. Each reader here re-reads every document
after the parent has read them all (so the parent's handles exist when the readers fork) and
compares it with the parent's reference read.
"""

import multiprocessing
import operator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from ernie_tiny.pretrain.corpus import DocumentLayout, open_corpus

N_DOCUMENTS = 4000


def varied_corpus(path, n_documents, layout):
    """Documents of 1 to ~120 multi-byte chars (3 bytes each in UTF-8) in distinct files, so offsets differ."""
    rng = np.random.default_rng(0)
    alphabet = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面"
    docs = []
    for d in range(n_documents):
        body = "".join(alphabet[i] for i in rng.integers(0, len(alphabet), int(rng.integers(1, 120))))
        docs.append(f"第{d}篇{body}。")
    separator = "\n" if layout is DocumentLayout.line else "\n\n"
    half = n_documents // 2
    (path / "a.txt").write_text(separator.join(docs[:half]) + "\n", encoding="utf-8")
    (path / "b.txt").write_text(separator.join(docs[half:]) + "\n", encoding="utf-8")
    return [path / "a.txt", path / "b.txt"]


def read_all(corpus, order):
    """(wrong documents, read errors) of reading the documents in ``order`` against the reference."""
    wrong = errors = 0
    for index in order:
        try:
            if corpus[int(index)] != REFERENCE[int(index)]:
                wrong += 1
        except (UnicodeDecodeError, ValueError):
            errors += 1
    return wrong, errors


REFERENCE: list = []  # the parent's read of every document (forked children see it)


def reader_process(corpus, seed, results):
    order = np.random.default_rng(seed).permutation(len(corpus))
    results.put(read_all(corpus, order))


@pytest.fixture(params=list(DocumentLayout))
def parent_read_corpus(request, tmp_path):
    corpus = open_corpus(varied_corpus(tmp_path, N_DOCUMENTS, request.param), layout=request.param)
    REFERENCE[:] = [corpus[i] for i in range(len(corpus))]  # the parent now holds open handles
    assert len(REFERENCE) == N_DOCUMENTS and REFERENCE[7].sentences[0].startswith("第7篇")
    yield corpus
    REFERENCE.clear()


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method")
@pytest.mark.parametrize("readers", [4, 8])
def test_forked_readers_read_every_document_right(parent_read_corpus, readers):
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    processes = [context.Process(target=reader_process, args=(parent_read_corpus, seed, results))
                 for seed in range(readers)]
    for process in processes:
        process.start()
    counts = [results.get(timeout=300) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert all(process.exitcode == 0 for process in processes)
    wrong, errors = (sum(c[0] for c in counts), sum(c[1] for c in counts))
    assert (wrong, errors) == (0, 0), f"{wrong} wrong documents and {errors} read errors in {readers} x {N_DOCUMENTS}"
    assert read_all(parent_read_corpus, range(N_DOCUMENTS)) == (0, 0)  # the parent's own handles still read right


class CheckedDocuments(torch.utils.data.Dataset):
    """Item i: whether document i read in a DataLoader worker equals the parent's reference read."""

    def __init__(self, corpus):
        self.corpus = corpus

    def __len__(self):
        return len(self.corpus)

    def __getitem__(self, index):
        return read_all(self.corpus, [index])


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method")
@pytest.mark.filterwarnings("ignore:This DataLoader will create")  # 4 workers on a 2-core machine, on purpose
def test_dataloader_workers_read_every_document_right(parent_read_corpus):
    loader = torch.utils.data.DataLoader(CheckedDocuments(parent_read_corpus), batch_size=None, num_workers=4,
                                         multiprocessing_context="fork", collate_fn=lambda item: item)
    counts = list(loader)
    assert len(counts) == N_DOCUMENTS
    assert (sum(c[0] for c in counts), sum(c[1] for c in counts)) == (0, 0)


def test_threads_read_every_document_right(parent_read_corpus):
    orders = [np.random.default_rng(seed).permutation(N_DOCUMENTS) for seed in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        counts = list(pool.map(lambda order: read_all(parent_read_corpus, order), orders))
    assert (sum(c[0] for c in counts), sum(c[1] for c in counts)) == (0, 0)


def test_a_pickled_corpus_reads_in_a_spawned_process(parent_read_corpus):
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        document = pool.apply(operator.getitem, (parent_read_corpus, N_DOCUMENTS - 1))
    assert document == REFERENCE[-1]
