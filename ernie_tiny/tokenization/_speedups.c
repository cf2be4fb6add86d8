/* The tokenizers' per-word and per-token loops in C; each has the same loop in Python beside it, which runs where
 * this module is not built and is the reference of the parity tests (tests/test_tokenizer_parity.py).
 *
 * encode_texts(chunk_words, chunk_counts, cache, table, prefixes) -> (list[(ids, starts, ends)], pairs)
 *     The subword tokenizer's per-token loop: ConstrainedTokens._encode_chunk and ._best_units in
 *     subword/fast_path.py, over a whole batch in one call:
 *
 *       for each text: for each of its space-free chunks (its words, already in the unit cache):
 *           Viterbi over word boundaries: each step is one word cut by sentencepiece (the unit's
 *           pieces and score), or one multi-word piece covering words k..m-1 whole (its score from
 *           `table`), tried in the same order with the same strict `>` (so the same ties win);
 *           then the chosen units' tokens, spans offset by the chunk's first char;
 *       chunks of one text are one space apart.
 *
 *     chunk_words:  list[list[str]]   the words of every chunk of every text, in order
 *     chunk_counts: list[int]         how many chunks each text has
 *     cache:        dict[str, Unit]   word -> (ids, spans, lengths, score, starts_piece, size, followers)
 *     table:        dict[str, (float, int)]   multi-word piece text -> (score, vocab id)
 *     prefixes:     set[str]          proper prefixes of the table's pieces
 *     pairs: how many word pairs were added to the units' follower tables (unit item 6, when a dict):
 *     next word -> (the two words' table entry or None, whether a longer piece begins with them).
 *     Spans are in chars of the normalised text; the caller maps them to source chars.
 *
 * encodings_from_columns(columns, has_b, max_len, cls_id, sep_id, unk_id, id_to_token, spans, specials, make)
 *     -> list[Encoding]
 *     encoding.py's encoding_from_columns for every example of a batch: [CLS] a [SEP] (b [SEP]) from
 *     each text's (ids, starts, ends), truncated longest-first to max_len (one token at a time from
 *     the longer text, from b on ties), with type ids, tokens (id_to_token[id]), unk mask and spans:
 *     spans[(text_index, start, end)] (a dict that makes missing spans), specials[k] for the k-th
 *     special token. `columns` holds each example's text a, then its text b where has_b says so;
 *     each example is make(tokens, ids, type_ids, spans, unk_mask, truncated).
 *
 * jieba_words(route, has_word, hmm_words) -> list[str] | None
 *     CompiledJieba.words in wordseg.py after the route: jieba's precise-mode words from jieba-rs's
 *     HMM-off route. Runs of single-char route words (CJK U+4E00-9FD5 or one of jieba's ASCII block
 *     chars) and of ASCII alphanumeric words are joined; a finished run of one char stays, one that
 *     is a dictionary word (has_word) splits into chars, any other goes to hmm_words(run). An ASCII
 *     alphanumeric route word that is a dictionary word returns None (only Python jieba can tell).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>

/* Scratch arrays of one chunk's Viterbi, grown as needed and kept between chunks. */
typedef struct {
    Py_ssize_t capacity;
    double *best;           /* best[m]: best score of words 0..m-1 */
    Py_ssize_t *piece_at;   /* first word of the multi-word piece ending at m, -1: a word's own cut */
    PyObject **pieces;      /* borrowed: that piece's vocab id (from the piece table) */
    Py_ssize_t *chosen;     /* backtrack: step ends, from the last */
    PyObject **units;       /* borrowed: cache[words[k]] */
} Scratch;

static void scratch_free(Scratch *s) {
    PyMem_Free(s->best);
    PyMem_Free(s->piece_at);
    PyMem_Free(s->pieces);
    PyMem_Free(s->chosen);
    PyMem_Free(s->units);
}

static int scratch_reserve(Scratch *s, Py_ssize_t n_words) {
    Py_ssize_t need = n_words + 1;
    if (need <= s->capacity) return 0;
    Py_ssize_t cap = need < 64 ? 64 : need * 2;
    double *best = PyMem_Realloc(s->best, cap * sizeof(double));
    if (best) s->best = best;
    Py_ssize_t *piece_at = PyMem_Realloc(s->piece_at, cap * sizeof(Py_ssize_t));
    if (piece_at) s->piece_at = piece_at;
    PyObject **pieces = PyMem_Realloc(s->pieces, cap * sizeof(PyObject *));
    if (pieces) s->pieces = pieces;
    Py_ssize_t *chosen = PyMem_Realloc(s->chosen, cap * sizeof(Py_ssize_t));
    if (chosen) s->chosen = chosen;
    PyObject **units = PyMem_Realloc(s->units, cap * sizeof(PyObject *));
    if (units) s->units = units;
    if (!best || !piece_at || !pieces || !chosen || !units) {
        PyErr_NoMemory();
        return -1;
    }
    s->capacity = cap;
    return 0;
}

/* One token: its vocab id (borrowed from the unit cache or the piece table, which this call never
 * changes) and its span in chars of the normalised text. */
typedef struct {
    PyObject *id;
    Py_ssize_t start, end;
} Token;

typedef struct {
    Py_ssize_t size, capacity;
    Token *items;
} Tokens;

static int tokens_push(Tokens *t, PyObject *id, Py_ssize_t start, Py_ssize_t end) {
    if (t->size == t->capacity) {
        Py_ssize_t cap = t->capacity < 256 ? 256 : t->capacity * 2;
        Token *items = PyMem_Realloc(t->items, cap * sizeof(Token));
        if (items == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        t->items = items;
        t->capacity = cap;
    }
    t->items[t->size++] = (Token){id, start, end};
    return 0;
}

/* The tokens of one word's own sentencepiece cut, its spans offset by `position`. */
static int emit_unit(PyObject *unit, Py_ssize_t position, Tokens *out) {
    PyObject *unit_ids = PyTuple_GET_ITEM(unit, 0);
    PyObject *spans = PyTuple_GET_ITEM(unit, 1);
    if (!PyTuple_Check(unit_ids) || !PyTuple_Check(spans) || PyTuple_GET_SIZE(unit_ids) != PyTuple_GET_SIZE(spans)) {
        PyErr_SetString(PyExc_TypeError, "a cached word needs tuples of ids and spans of one length");
        return -1;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(unit_ids);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *span = PyTuple_GET_ITEM(spans, i);
        if (!PyTuple_Check(span) || PyTuple_GET_SIZE(span) != 2) {
            PyErr_SetString(PyExc_TypeError, "a cached span must be a (start, end) tuple");
            return -1;
        }
        Py_ssize_t start = PyLong_AsSsize_t(PyTuple_GET_ITEM(span, 0));
        Py_ssize_t end = PyLong_AsSsize_t(PyTuple_GET_ITEM(span, 1));
        if ((start == -1 || end == -1) && PyErr_Occurred()) return -1;
        if (tokens_push(out, PyTuple_GET_ITEM(unit_ids, i), position + start, position + end) < 0) return -1;
    }
    return 0;
}

static int unit_size(PyObject *unit, Py_ssize_t *size) {
    *size = PyLong_AsSsize_t(PyTuple_GET_ITEM(unit, 5));
    return (*size == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* A multi-word piece's table entry (None or (score, vocab id)) and whether longer pieces begin with the
 * words k, k+1: from the first word's follower table (unit item 6, a dict or None), else looked up (and
 * remembered there, counted in *added). Sets new references; -1 on error. */
static int pair_of(PyObject *unit, PyObject *word, PyObject *following, PyObject *table, PyObject *prefixes,
                   PyObject **entry, int *longer, Py_ssize_t *added) {
    PyObject *followers = PyTuple_GET_SIZE(unit) > 6 ? PyTuple_GET_ITEM(unit, 6) : Py_None;
    if (PyDict_Check(followers)) {
        PyObject *pair = PyDict_GetItemWithError(followers, following);
        if (pair == NULL && PyErr_Occurred()) return -1;
        if (pair != NULL) {
            if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
                PyErr_SetString(PyExc_TypeError, "a follower entry must be an (entry, longer) tuple");
                return -1;
            }
            *entry = PyTuple_GET_ITEM(pair, 0);
            Py_INCREF(*entry);
            *longer = PyObject_IsTrue(PyTuple_GET_ITEM(pair, 1));
            if (*longer < 0) {
                Py_CLEAR(*entry);
                return -1;
            }
            return 0;
        }
    }
    PyObject *candidate = PyUnicode_Concat(word, following);
    if (candidate == NULL) return -1;
    PyObject *found = PyDict_GetItemWithError(table, candidate);
    if (found == NULL && PyErr_Occurred()) goto fail;
    *longer = PySet_Contains(prefixes, candidate);
    if (*longer < 0) goto fail;
    Py_DECREF(candidate);
    *entry = found != NULL ? found : Py_None;
    Py_INCREF(*entry);
    if (PyDict_Check(followers)) {
        PyObject *pair = Py_BuildValue("(OO)", *entry, *longer ? Py_True : Py_False);
        if (pair == NULL || PyDict_SetItem(followers, following, pair) < 0) {
            Py_XDECREF(pair);
            Py_CLEAR(*entry);
            return -1;
        }
        Py_DECREF(pair);
        (*added)++;
    }
    return 0;
fail:
    Py_DECREF(candidate);
    return -1;
}

/* Try a multi-word piece ending at m: a better score there records it. */
static int try_piece(Scratch *s, PyObject *entry, double base, Py_ssize_t k, Py_ssize_t m, int *any_piece) {
    if (entry == Py_None || entry == NULL) return 0;
    if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 2) {
        PyErr_SetString(PyExc_TypeError, "a piece table entry must be a (score, vocab id) tuple");
        return -1;
    }
    double score = PyFloat_AsDouble(PyTuple_GET_ITEM(entry, 0));
    if (score == -1.0 && PyErr_Occurred()) return -1;
    if (base + score > s->best[m]) {
        s->best[m] = base + score;
        s->piece_at[m] = k;  /* remembered as its first word; the entry gives the vocab id */
        s->pieces[m] = PyTuple_GET_ITEM(entry, 1);
        *any_piece = 1;
    }
    return 0;
}

/* One chunk: append its tokens (first char at `start`); set *end to the char after its last. */
static int encode_chunk(PyObject *words, PyObject *cache, PyObject *table, PyObject *prefixes, Scratch *s,
                        Py_ssize_t start, Tokens *out, Py_ssize_t *end, Py_ssize_t *added) {
    if (!PyList_Check(words)) {
        PyErr_SetString(PyExc_TypeError, "each chunk's words must be a list");
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(words);
    if (scratch_reserve(s, n) < 0) return -1;
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *unit = PyDict_GetItemWithError(cache, PyList_GET_ITEM(words, k));
        if (unit == NULL) {
            if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, PyList_GET_ITEM(words, k));
            return -1;
        }
        if (!PyTuple_Check(unit) || PyTuple_GET_SIZE(unit) < 6) {
            PyErr_SetString(PyExc_TypeError, "a cached word must be a tuple of at least 6 items");
            return -1;
        }
        s->units[k] = unit;
    }
    /* Viterbi over word boundaries (ConstrainedTokens._best_units) */
    int any_piece = 0;
    s->best[0] = 0.0;
    for (Py_ssize_t m = 1; m <= n; m++) {
        s->best[m] = -INFINITY;
        s->piece_at[m] = -1;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *unit = s->units[k];
        double base = s->best[k];
        double score = PyFloat_AsDouble(PyTuple_GET_ITEM(unit, 3));
        if (score == -1.0 && PyErr_Occurred()) return -1;
        if (base + score > s->best[k + 1]) {
            s->best[k + 1] = base + score;
            s->piece_at[k + 1] = -1;
        }
        int starts_piece = PyObject_IsTrue(PyTuple_GET_ITEM(unit, 4));
        if (starts_piece < 0) return -1;
        if (!starts_piece || k + 1 >= n) continue;
        PyObject *entry = NULL, *candidate = NULL;
        int longer;
        if (pair_of(unit, PyList_GET_ITEM(words, k), PyList_GET_ITEM(words, k + 1), table, prefixes, &entry, &longer,
                    added) < 0)
            return -1;
        for (Py_ssize_t m = k + 2;; m++) {  /* the piece of words k..m-1 */
            if (try_piece(s, entry, base, k, m, &any_piece) < 0) goto fail;
            if (m >= n || !longer) break;
            if (candidate == NULL) {
                candidate = PyUnicode_Concat(PyList_GET_ITEM(words, k), PyList_GET_ITEM(words, k + 1));
                if (candidate == NULL) goto fail;
            }
            PyObject *next = PyUnicode_Concat(candidate, PyList_GET_ITEM(words, m));
            Py_SETREF(candidate, next);
            if (candidate == NULL) goto fail;
            Py_XSETREF(entry, PyDict_GetItemWithError(table, candidate));
            if (entry == NULL && PyErr_Occurred()) goto fail;
            Py_XINCREF(entry);
            longer = PySet_Contains(prefixes, candidate);
            if (longer < 0) goto fail;
        }
        Py_XDECREF(entry);
        Py_XDECREF(candidate);
        continue;
    fail:
        Py_XDECREF(entry);
        Py_XDECREF(candidate);
        return -1;
    }
    Py_ssize_t position = start;
    Py_ssize_t steps = 0;
    if (!any_piece) {  /* no multi-word piece ever won: every word keeps its own cut */
        for (Py_ssize_t m = n; m > 0; m--) s->chosen[steps++] = m;
    } else {
        for (Py_ssize_t m = n; m > 0; steps++) {  /* backtrack: the end of each chosen step, last first */
            s->chosen[steps] = m;
            m = s->piece_at[m] < 0 ? m - 1 : s->piece_at[m];
        }
    }
    for (Py_ssize_t i = steps - 1; i >= 0; i--) {
        Py_ssize_t m = s->chosen[i], size;
        if (s->piece_at[m] < 0) {
            if (emit_unit(s->units[m - 1], position, out) < 0 || unit_size(s->units[m - 1], &size) < 0) return -1;
            position += size;
            continue;
        }
        Py_ssize_t length = 0;
        for (Py_ssize_t k = s->piece_at[m]; k < m; k++) {
            if (unit_size(s->units[k], &size) < 0) return -1;
            length += size;
        }
        if (tokens_push(out, s->pieces[m], position, position + length) < 0) return -1;
        position += length;
    }
    *end = position;
    return 0;
}

/* The three columns of one text's tokens, as new lists; NULL on error. */
static PyObject *columns_of(const Tokens *t) {
    PyObject *ids = PyList_New(t->size), *starts = PyList_New(t->size), *ends = PyList_New(t->size);
    if (ids == NULL || starts == NULL || ends == NULL) goto fail;
    PyObject *previous_end = NULL;  /* borrowed: the last end, shared with the next start when equal */
    for (Py_ssize_t i = 0; i < t->size; i++) {
        const Token *token = &t->items[i];
        Py_INCREF(token->id);
        PyList_SET_ITEM(ids, i, token->id);
        PyObject *start;
        if (previous_end != NULL && i > 0 && t->items[i - 1].end == token->start) {
            start = previous_end;
            Py_INCREF(start);
        } else if ((start = PyLong_FromSsize_t(token->start)) == NULL) {
            goto fail;
        }
        PyList_SET_ITEM(starts, i, start);
        PyObject *end = PyLong_FromSsize_t(token->end);
        if (end == NULL) goto fail;
        PyList_SET_ITEM(ends, i, end);
        previous_end = end;
    }
    PyObject *columns = PyTuple_Pack(3, ids, starts, ends);
    Py_DECREF(ids);
    Py_DECREF(starts);
    Py_DECREF(ends);
    return columns;
fail:
    Py_XDECREF(ids);
    Py_XDECREF(starts);
    Py_XDECREF(ends);
    return NULL;
}

static PyObject *encode_texts(PyObject *module, PyObject *args) {
    PyObject *chunk_words, *chunk_counts, *cache, *table, *prefixes;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O:encode_texts", &PyList_Type, &chunk_words, &PyList_Type, &chunk_counts,
                          &PyDict_Type, &cache, &PyDict_Type, &table, &prefixes))
        return NULL;
    if (!PyAnySet_Check(prefixes)) {
        PyErr_SetString(PyExc_TypeError, "prefixes must be a set");
        return NULL;
    }
    Py_ssize_t n_texts = PyList_GET_SIZE(chunk_counts);
    PyObject *out = PyList_New(n_texts);
    if (out == NULL) return NULL;
    Scratch scratch = {0};
    Tokens tokens = {0};
    Py_ssize_t next_chunk = 0, n_chunks = PyList_GET_SIZE(chunk_words), added = 0;
    for (Py_ssize_t t = 0; t < n_texts; t++) {
        Py_ssize_t count = PyLong_AsSsize_t(PyList_GET_ITEM(chunk_counts, t));
        if (count == -1 && PyErr_Occurred()) goto error;
        if (count < 0 || next_chunk + count > n_chunks) {
            PyErr_SetString(PyExc_ValueError, "chunk_counts do not add up to the chunks given");
            goto error;
        }
        tokens.size = 0;
        Py_ssize_t start = 0;
        for (Py_ssize_t c = 0; c < count; c++, next_chunk++) {
            Py_ssize_t end;
            if (encode_chunk(PyList_GET_ITEM(chunk_words, next_chunk), cache, table, prefixes, &scratch, start,
                             &tokens, &end, &added) < 0)
                goto error;
            start = end + 1;  /* the space after the chunk */
        }
        PyObject *columns = columns_of(&tokens);
        if (columns == NULL) goto error;
        PyList_SET_ITEM(out, t, columns);
    }
    if (next_chunk != n_chunks) {
        PyErr_SetString(PyExc_ValueError, "chunk_counts do not add up to the chunks given");
        goto error;
    }
    scratch_free(&scratch);
    PyMem_Free(tokens.items);
    return Py_BuildValue("(Nn)", out, added);
error:
    scratch_free(&scratch);
    PyMem_Free(tokens.items);
    Py_DECREF(out);
    return NULL;
}

/* ---- jieba_words ------------------------------------------------------------------------------- */

static int in_han_block(Py_UCS4 c) { return c >= 0x4e00 && c <= 0x9fd5; }

static int ascii_block_char(Py_UCS4 c) {  /* jieba's re_han_default keeps these inside one block */
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' || c == '#' ||
           c == '&' || c == '.' || c == '_' || c == '%' || c == '-';
}

static int ascii_alnum_word(PyObject *word) {  /* str.isascii() and str.isalnum(), for a word of >= 2 chars */
    if (!PyUnicode_IS_ASCII(word)) return 0;
    const Py_UCS1 *chars = PyUnicode_1BYTE_DATA(word);
    Py_ssize_t n = PyUnicode_GET_LENGTH(word);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS1 c = chars[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) return 0;
    }
    return n > 0;
}

/* Append a new reference to the list, stealing it; -1 on error. */
static int append_new(PyObject *list, PyObject *item) {
    if (item == NULL) return -1;
    int rc = PyList_Append(list, item);
    Py_DECREF(item);
    return rc;
}

/* Append each char of `text` to `out`. */
static int extend_chars(PyObject *out, PyObject *text) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (append_new(out, PyUnicode_Substring(text, i, i + 1)) < 0) return -1;
    }
    return 0;
}

/* A finished run route[start:end] (jieba's __cut_DAG buffer): its words appended to `out`. */
static int flush_run(PyObject *route, Py_ssize_t start, Py_ssize_t end, PyObject *has_word, PyObject *hmm_words,
                     PyObject *out) {
    PyObject *first = PyList_GET_ITEM(route, start);
    if (end - start == 1 && PyUnicode_GET_LENGTH(first) == 1) return PyList_Append(out, first);
    PyObject *slice = PyList_GetSlice(route, start, end);
    if (slice == NULL) return -1;
    PyObject *empty = PyUnicode_New(0, 0);
    PyObject *run = empty != NULL ? PyUnicode_Join(empty, slice) : NULL;
    Py_XDECREF(empty);
    Py_DECREF(slice);
    if (run == NULL) return -1;
    int rc = -1;
    PyObject *known = PyObject_CallOneArg(has_word, run);
    if (known != NULL) {
        int is_word = PyObject_IsTrue(known);
        Py_DECREF(known);
        if (is_word > 0) {
            rc = extend_chars(out, run);
        } else if (is_word == 0) {
            PyObject *words = PyObject_CallOneArg(hmm_words, run);
            if (words != NULL) {
                PyObject *fast = PySequence_Fast(words, "hmm_words must return a sequence of words");
                Py_DECREF(words);
                if (fast != NULL) {
                    rc = 0;
                    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(fast) && rc == 0; i++)
                        rc = PyList_Append(out, PySequence_Fast_GET_ITEM(fast, i));
                    Py_DECREF(fast);
                }
            }
        }
    }
    Py_DECREF(run);
    return rc;
}

static PyObject *jieba_words(PyObject *module, PyObject *args) {
    PyObject *route, *has_word, *hmm_words;
    if (!PyArg_ParseTuple(args, "O!OO:jieba_words", &PyList_Type, &route, &has_word, &hmm_words)) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(route);
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    Py_ssize_t run_start = -1;  /* first route word of the open run, -1: none */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *word = PyList_GET_ITEM(route, i);
        if (!PyUnicode_Check(word)) {
            PyErr_SetString(PyExc_TypeError, "route words must be str");
            goto error;
        }
        Py_ssize_t length = PyUnicode_GET_LENGTH(word);
        int joins = 0;
        if (length == 1) {
            Py_UCS4 c = PyUnicode_READ_CHAR(word, 0);
            joins = in_han_block(c) || ascii_block_char(c);
        } else if (ascii_alnum_word(word)) {  /* HMM off joins single ASCII letters/digits into one word */
            PyObject *known = PyObject_CallOneArg(has_word, word);
            if (known == NULL) goto error;
            int is_word = PyObject_IsTrue(known);
            Py_DECREF(known);
            if (is_word < 0) goto error;
            if (is_word) {
                Py_DECREF(out);
                Py_RETURN_NONE;
            }
            joins = 1;
        }
        if (joins) {
            if (run_start < 0) run_start = i;
            continue;
        }
        if (run_start >= 0) {
            if (flush_run(route, run_start, i, has_word, hmm_words, out) < 0) goto error;
            run_start = -1;
        }
        if (PyList_Append(out, word) < 0) goto error;
    }
    if (run_start >= 0 && flush_run(route, run_start, n, has_word, hmm_words, out) < 0) goto error;
    return out;
error:
    Py_DECREF(out);
    return NULL;
}

/* ---- encodings_from_columns -------------------------------------------------------------------- */

/* One text's columns: new references to the three as fast sequences of one length; -1 on error. */
static int text_columns(PyObject *columns, PyObject *out[3], Py_ssize_t *length) {
    out[0] = out[1] = out[2] = NULL;
    PyObject *fast = PySequence_Fast(columns, "columns must be (ids, starts, ends)");
    if (fast == NULL) return -1;
    if (PySequence_Fast_GET_SIZE(fast) != 3) {
        Py_DECREF(fast);
        PyErr_SetString(PyExc_ValueError, "columns must be (ids, starts, ends)");
        return -1;
    }
    for (int i = 0; i < 3; i++) {
        out[i] = PySequence_Fast(PySequence_Fast_GET_ITEM(fast, i), "a column must be a sequence");
        if (out[i] == NULL) goto fail;
    }
    Py_DECREF(fast);
    *length = PySequence_Fast_GET_SIZE(out[0]);
    if (PySequence_Fast_GET_SIZE(out[1]) != *length || PySequence_Fast_GET_SIZE(out[2]) != *length) {
        PyErr_SetString(PyExc_ValueError, "a text's ids, starts and ends differ in length");
        Py_CLEAR(out[0]);
        Py_CLEAR(out[1]);
        Py_CLEAR(out[2]);
        return -1;
    }
    return 0;
fail:
    Py_DECREF(fast);
    Py_CLEAR(out[0]);
    Py_CLEAR(out[1]);
    Py_CLEAR(out[2]);
    return -1;
}

/* The fields of one encoding, filled position by position. */
typedef struct {
    PyObject *tokens, *ids, *type_ids, *spans, *unk_mask;
    PyObject *id_to_token, *unk_id, *span_table;
} Fields;

/* Put token `id` (borrowed) of text `text_index` (also its type id) at position i; its span is
 * span_table[(text_index, start, end)], or `special` (borrowed) for [CLS] and [SEP]. */
static int put_token(Fields *f, Py_ssize_t i, PyObject *id, long text_index, PyObject *start, PyObject *end,
                     PyObject *special) {
    Py_ssize_t n_vocab = PyList_GET_SIZE(f->id_to_token);
    Py_ssize_t index = PyLong_AsSsize_t(id);
    if (index == -1 && PyErr_Occurred()) return -1;
    if (index < 0) index += n_vocab;  /* list indexing, as id_to_token[id] does it */
    if (index < 0 || index >= n_vocab) {
        PyErr_SetString(PyExc_IndexError, "list index out of range");
        return -1;
    }
    PyObject *token = PyList_GET_ITEM(f->id_to_token, index);
    Py_INCREF(token);
    PyList_SET_ITEM(f->tokens, i, token);
    Py_INCREF(id);
    PyList_SET_ITEM(f->ids, i, id);
    PyObject *type_id = PyLong_FromLong(text_index);
    if (type_id == NULL) return -1;
    PyList_SET_ITEM(f->type_ids, i, type_id);
    int is_unk = PyObject_RichCompareBool(id, f->unk_id, Py_EQ);
    if (is_unk < 0) return -1;
    PyObject *flag = is_unk ? Py_True : Py_False;
    Py_INCREF(flag);
    PyList_SET_ITEM(f->unk_mask, i, flag);
    PyObject *span;
    if (special != NULL) {
        span = special;
        Py_INCREF(span);
    } else {
        PyObject *key = PyTuple_New(3);
        if (key == NULL) return -1;
        PyTuple_SET_ITEM(key, 0, type_id);
        Py_INCREF(type_id);
        PyTuple_SET_ITEM(key, 1, start);
        Py_INCREF(start);
        PyTuple_SET_ITEM(key, 2, end);
        Py_INCREF(end);
        span = PyObject_GetItem(f->span_table, key);
        Py_DECREF(key);
        if (span == NULL) return -1;
    }
    PyList_SET_ITEM(f->spans, i, span);
    return 0;
}

static PyObject *field_names[6];  /* interned: tokens, input_ids, token_type_ids, spans, unk_mask, truncated */

/* A new `make` instance (a plain Python class: the dataclass Encoding) with the six fields set as
 * attributes, without its __init__: the fields agree in length by construction, which is all its
 * __post_init__ checks. */
static PyObject *new_encoding(PyObject *make, const Fields *f, int truncated) {
    if (!PyType_Check(make)) {
        PyErr_SetString(PyExc_TypeError, "make must be a class");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)make;
    PyObject *obj = type->tp_alloc(type, 0);
    if (obj == NULL) return NULL;
    PyObject *values[6] = {f->tokens, f->ids, f->type_ids, f->spans, f->unk_mask, truncated ? Py_True : Py_False};
    for (int i = 0; i < 6; i++) {
        if (PyObject_GenericSetAttr(obj, field_names[i], values[i]) < 0) {
            Py_DECREF(obj);
            return NULL;
        }
    }
    return obj;
}

static PyObject *encodings_from_columns(PyObject *module, PyObject *args) {
    PyObject *columns, *has_b, *cls_id, *sep_id, *unk_id, *id_to_token, *span_table, *specials, *make;
    Py_ssize_t max_len;
    if (!PyArg_ParseTuple(args, "O!O!nOOOO!OO!O:encodings_from_columns", &PyList_Type, &columns, &PyList_Type, &has_b,
                          &max_len, &cls_id, &sep_id, &unk_id, &PyList_Type, &id_to_token, &span_table,
                          &PyTuple_Type, &specials, &make))
        return NULL;
    if (PyTuple_GET_SIZE(specials) != 3) {
        PyErr_SetString(PyExc_ValueError, "specials must be the spans of [CLS], the first and the second [SEP]");
        return NULL;
    }
    Py_ssize_t n_examples = PyList_GET_SIZE(has_b), next_text = 0, n_texts = PyList_GET_SIZE(columns);
    PyObject *out = PyList_New(n_examples);
    if (out == NULL) return NULL;
    for (Py_ssize_t e = 0; e < n_examples; e++) {
        int pair = PyObject_IsTrue(PyList_GET_ITEM(has_b, e));
        if (pair < 0) goto error;
        if (max_len < (pair ? 3 : 2)) {
            PyErr_Format(PyExc_ValueError, "max_len %zd leaves no room for the special tokens", max_len);
            goto error;
        }
        if (next_text + 1 + pair > n_texts) {
            PyErr_SetString(PyExc_ValueError, "columns hold fewer texts than has_b asks for");
            goto error;
        }
        PyObject *a[3] = {NULL, NULL, NULL}, *b[3] = {NULL, NULL, NULL};
        Py_ssize_t len_a = 0, len_b = 0;
        Fields f = {NULL, NULL, NULL, NULL, NULL, id_to_token, unk_id, span_table};
        PyObject *encoding = NULL;
        if (text_columns(PyList_GET_ITEM(columns, next_text++), a, &len_a) < 0) goto error;
        if (pair && text_columns(PyList_GET_ITEM(columns, next_text++), b, &len_b) < 0) goto example_error;
        Py_ssize_t budget = max_len - (pair ? 3 : 2), keep_a = len_a, keep_b = len_b;
        while (keep_a + keep_b > budget) {  /* longest first, b on ties (encoding.longest_first_lengths) */
            if (keep_a > keep_b) keep_a--;
            else keep_b--;
        }
        int truncated = keep_a + keep_b < len_a + len_b;
        Py_ssize_t n = keep_a + 2 + (pair ? keep_b + 1 : 0);
        f.tokens = PyList_New(n);
        f.ids = PyList_New(n);
        f.type_ids = PyList_New(n);
        f.spans = PyList_New(n);
        f.unk_mask = PyList_New(n);
        if (f.tokens == NULL || f.ids == NULL || f.type_ids == NULL || f.spans == NULL || f.unk_mask == NULL)
            goto example_error;
        Py_ssize_t i = 0;
        if (put_token(&f, i++, cls_id, 0, NULL, NULL, PyTuple_GET_ITEM(specials, 0)) < 0) goto example_error;
        for (Py_ssize_t k = 0; k < keep_a; k++)
            if (put_token(&f, i++, PySequence_Fast_GET_ITEM(a[0], k), 0, PySequence_Fast_GET_ITEM(a[1], k),
                          PySequence_Fast_GET_ITEM(a[2], k), NULL) < 0)
                goto example_error;
        if (put_token(&f, i++, sep_id, 0, NULL, NULL, PyTuple_GET_ITEM(specials, 1)) < 0) goto example_error;
        if (pair) {
            for (Py_ssize_t k = 0; k < keep_b; k++)
                if (put_token(&f, i++, PySequence_Fast_GET_ITEM(b[0], k), 1, PySequence_Fast_GET_ITEM(b[1], k),
                              PySequence_Fast_GET_ITEM(b[2], k), NULL) < 0)
                    goto example_error;
            if (put_token(&f, i++, sep_id, 1, NULL, NULL, PyTuple_GET_ITEM(specials, 2)) < 0) goto example_error;
        }
        encoding = new_encoding(make, &f, truncated);
    example_error:
        for (int c = 0; c < 3; c++) {
            Py_XDECREF(a[c]);
            Py_XDECREF(b[c]);
        }
        Py_XDECREF(f.tokens);
        Py_XDECREF(f.ids);
        Py_XDECREF(f.type_ids);
        Py_XDECREF(f.spans);
        Py_XDECREF(f.unk_mask);
        if (encoding == NULL) goto error;
        PyList_SET_ITEM(out, e, encoding);
    }
    if (next_text != n_texts) {
        PyErr_SetString(PyExc_ValueError, "columns hold more texts than has_b asks for");
        goto error;
    }
    return out;
error:
    Py_DECREF(out);
    return NULL;
}

static PyMethodDef methods[] = {
    {"encode_texts", encode_texts, METH_VARARGS,
     "encode_texts(chunk_words, chunk_counts, cache, table, prefixes) -> ((ids, starts, ends) per text, pairs added)"},
    {"encodings_from_columns", encodings_from_columns, METH_VARARGS,
     "encodings_from_columns(columns, has_b, max_len, cls_id, sep_id, unk_id, id_to_token, spans, specials, make)"
     " -> [CLS] a [SEP] (b [SEP]) encodings, truncated longest-first"},
    {"jieba_words", jieba_words, METH_VARARGS,
     "jieba_words(route, has_word, hmm_words) -> jieba's words from jieba-rs's HMM-off route, or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_speedups", "The tokenizers' per-word loops in C (see _speedups.c).", -1, methods,
};

/* Bumped whenever a function here changes: the Python side ignores a stale build (an editable install
 * built before this file changed) and runs its Python loops instead. */
#define SPEEDUPS_VERSION 4

PyMODINIT_FUNC PyInit__speedups(void) {
    const char *names[6] = {"tokens", "input_ids", "token_type_ids", "spans", "unk_mask", "truncated"};
    for (int i = 0; i < 6; i++) {
        if (field_names[i] == NULL && (field_names[i] = PyUnicode_InternFromString(names[i])) == NULL) return NULL;
    }
    PyObject *module = PyModule_Create(&module_def);
    if (module != NULL && PyModule_AddIntConstant(module, "VERSION", SPEEDUPS_VERSION) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
