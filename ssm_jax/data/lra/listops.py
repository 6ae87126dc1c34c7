"""ListOps (LRA): nested MIN / MAX / MED / SM expressions over digits, 10 classes.

Grammar (as LRA's ``lra_benchmarks/data/listops.py``): an expression is a digit 0-9 or
``[OP e1 e2 ... ek ]`` with OP in MIN, MAX, MED (median, rounded down), SM (sum mod 10)
and 2 <= k <= ``max_args`` arguments, nested up to ``max_depth``. The label is the value
of the expression (0-9). LRA keeps expressions whose length (tokens, brackets excluded)
lies strictly between ``min_length`` and ``max_length`` (500 and 2000), unique, and
splits them 96000 / 2000 / 2000.

Files: ``basic_train.tsv``, ``basic_val.tsv``, ``basic_test.tsv`` with a header row
``Source<TAB>Target``; Source is the expression written as LRA's generator writes it,
with grouping parentheses, e.g. ``( ( ( [MAX 2 ) 9 ) ] )``. The official files are in
``lra_release/listops-1000/`` of https://storage.googleapis.com/long-range-arena/lra_release.gz.
Our generator writes the same layout, so the loader reads both.

Tokenizer (fixed vocabulary of 16; parentheses are dropped as in LRA's input pipeline):
pad 0, digits "0".."9" -> 1..10, "[MIN" 11, "[MAX" 12, "[MED" 13, "[SM" 14, "]" 15.
Inputs are uint8 (n, seq_len), padded with 0 at the end; seq_len is 2000 for files (LRA's
max_length) and ``max_length`` for generated sets.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from ssm_jax.data import core

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
END = "]"
VALUE_P = 0.25  # probability that a node (below max_depth) is an operator, as in LRA
VOCAB = ("<pad>",) + tuple(str(d) for d in range(10)) + OPERATORS + (END,)
TOKEN_ID = {tok: i for i, tok in enumerate(VOCAB)}
PAD_ID = 0
NUM_CLASSES = 10
SPLIT_FILES = {"train": "basic_train.tsv", "val": "basic_val.tsv", "test": "basic_test.tsv"}
OFFICIAL_SOURCE = ("lra_release/listops-1000/ in "
                   "https://storage.googleapis.com/long-range-arena/lra_release.gz (Long Range Arena)")

# Vectorized tokenizer: digits and "]" map through a byte table; each "[" takes the id
# of the operator spelled by the letters after it (the letters are then dropped).
_BYTE_ID = np.full(256, 255, dtype=np.uint8)
for _d in range(10):
    _BYTE_ID[ord(str(_d))] = TOKEN_ID[str(_d)]
_BYTE_ID[ord(END)] = TOKEN_ID[END]


# ----------------------------------------------------------------------------- generator

class _TooLong(Exception):
    pass


def evaluate(tree) -> int:
    """The value (0-9) of an expression tree (an int, or (op, [children]))."""
    if isinstance(tree, int):
        return tree
    op, children = tree
    args = [evaluate(c) for c in children]
    if op == "[MIN":
        return min(args)
    if op == "[MAX":
        return max(args)
    if op == "[MED":  # int(np.median(args)), as LRA: the mean of the middle two, rounded down
        s, m = sorted(args), len(args) // 2
        return s[m] if len(args) % 2 else (s[m - 1] + s[m]) // 2
    return sum(args) % 10


def _random_tree(rnd: random.Random, depth: int, max_depth: int, max_args: int, budget: list,
                 force_op: bool = False):
    """A random expression tree and its length; raise _TooLong once past the budget.

    The tree is an int or (op, [children]); length counts tokens without parentheses.
    A node below ``max_depth`` is an operator with probability VALUE_P (as in LRA).
    """
    if not force_op and (depth >= max_depth or rnd.random() > VALUE_P):
        budget[0] -= 1
        if budget[0] < 0:
            raise _TooLong
        return int(rnd.random() * 10), 1
    budget[0] -= 2
    num_args = rnd.randint(2, max_args)
    children, length = [], 2
    for _ in range(num_args):
        t, n = _random_tree(rnd, depth + 1, max_depth, max_args, budget)
        children.append(t)
        length += n
    return (OPERATORS[int(rnd.random() * 4)], children), length


def to_source(tree) -> str:
    """The expression as LRA writes it in the Source column (with grouping parentheses)."""
    if isinstance(tree, int):
        return str(tree)
    op, children = tree
    s = "( " + op + " " + to_source(children[0]) + " )"
    for child in children[1:]:
        s = "( " + s + " " + to_source(child) + " )"
    return "( " + s + " " + END + " )"


def generate(*, num_examples: int, min_length: int = 500, max_length: int = 2000,
             max_depth: int = 10, max_args: int = 10, seed: int = 0) -> list[tuple[str, int]]:
    """``num_examples`` unique random expressions as (Source string, value) pairs.

    Lengths (tokens without parentheses) satisfy min_length < length < max_length, as
    in LRA's generator. Deterministic given the arguments.
    """
    for name, v in (("num_examples", num_examples), ("max_depth", max_depth), ("max_args", max_args),
                    ("max_length", max_length)):
        core.check_positive_int(v, name)
    if max_args < 2:
        raise ValueError(f"max_args must be >= 2 (operators take 2..max_args arguments), got {max_args}")
    if not 0 <= min_length < max_length - 1:
        raise ValueError(f"need 0 <= min_length < max_length - 1 (lengths are strictly between), "
                         f"got min_length={min_length}, max_length={max_length}")
    rnd = random.Random(f"listops-{seed}")
    seen: set[str] = set()
    out: list[tuple[str, int]] = []
    attempts = 0
    while len(out) < num_examples:
        attempts += 1
        if attempts > 1000 * num_examples + 100000:
            raise RuntimeError(f"ListOps generator found only {len(out)} of {num_examples} expressions "
                               f"with {min_length} < length < {max_length} (max_depth={max_depth}, "
                               f"max_args={max_args}); widen the length range")
        try:  # a root digit (length 1) is kept only when min_length == 0
            tree, length = _random_tree(rnd, 1, max_depth, max_args, [max_length - 1],
                                        force_op=min_length >= 1 and max_depth > 1)
        except _TooLong:
            continue
        if not min_length < length < max_length:
            continue
        src = to_source(tree)
        if src in seen:
            continue
        seen.add(src)
        out.append((src, evaluate(tree)))
    return out


def write_tsv(path: Path, rows: list[tuple[str, int]]) -> None:
    """Write (Source, Target) rows as LRA's TSV with a ``Source<TAB>Target`` header."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        f.write("Source\tTarget\n")
        for src, target in rows:
            f.write(f"{src}\t{target}\n")
    tmp.replace(path)


def generate_files(out_dir, *, num_train: int = 96000, num_val: int = 2000, num_test: int = 2000,
                   min_length: int = 500, max_length: int = 2000, max_depth: int = 10,
                   max_args: int = 10, seed: int = 0) -> Path:
    """Generate a ListOps set and write basic_{train,val,test}.tsv into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = generate(num_examples=num_train + num_val + num_test, min_length=min_length,
                    max_length=max_length, max_depth=max_depth, max_args=max_args, seed=seed)
    parts = {"train": rows[:num_train], "val": rows[num_train:num_train + num_val],
             "test": rows[num_train + num_val:]}
    for split, name in SPLIT_FILES.items():
        write_tsv(out_dir / name, parts[split])
    return out_dir


# ----------------------------------------------------------------------------- tokenizer / loader

def tokenize(source: str) -> np.ndarray:
    """Token ids (uint8 (length,)) of one Source string; parentheses are dropped."""
    ids, _ = _tokenize_many([source.encode()], where="source", linenos=[1])
    return ids


def detokenize(ids) -> str:
    """The space-separated symbols of token ids (padding dropped); inverse of `tokenize`."""
    return " ".join(VOCAB[int(i)] for i in np.asarray(ids) if int(i) != PAD_ID)


def _tokenize_many(sources: list, *, where: str, linenos=None) -> tuple[np.ndarray, np.ndarray]:
    """Tokenize many Source strings (bytes) at once: (ids uint8 (T,), source index int64 (T,)).

    One vectorized pass over all sources joined by newlines. Raises ValueError naming
    ``where`` and the line (``linenos[i]``, default i + 1) of the first source i with an
    unknown symbol.
    """
    buf = b"\n".join(sources).translate(None, b"() ")
    a = np.frombuffer(buf + b"\0\0\0", np.uint8)          # zeros: look-ahead past the end
    body = a[: len(buf)]
    newline = body == ord("\n")
    line = np.cumsum(newline)
    ids = _BYTE_ID[body]
    opens = np.flatnonzero(body == ord("["))
    c1, c2, c3 = (a[opens + k] for k in (1, 2, 3))
    spelled = {"[MIN": (c1 == ord("M")) & (c2 == ord("I")) & (c3 == ord("N")),
               "[MAX": (c1 == ord("M")) & (c2 == ord("A")) & (c3 == ord("X")),
               "[MED": (c1 == ord("M")) & (c2 == ord("E")) & (c3 == ord("D")),
               "[SM": (c1 == ord("S")) & (c2 == ord("M"))}
    op_letters = np.zeros(len(opens), np.int64)
    for op, hit in spelled.items():
        ids[opens[hit]] = TOKEN_ID[op]
        op_letters[hit] = len(op) - 1
    letters = (body >= ord("A")) & (body <= ord("Z"))
    is_token = ~letters & ~newline
    n = len(sources)
    bad = np.bincount(line[is_token & (ids == 255)], minlength=n) > 0
    bad |= np.bincount(line[letters], minlength=n) != np.bincount(line[opens], weights=op_letters, minlength=n)
    if bad.any():
        i = int(np.argmax(bad))
        lineno = linenos[i] if linenos is not None else i + 1
        raise ValueError(f"ListOps {where}:{lineno}: unknown symbol in {sources[i][:120]!r}; "
                         f"expected digits, {', '.join(OPERATORS)}, {END!r} and parentheses")
    pos = np.flatnonzero(is_token)
    return ids[pos], line[pos]


def _pad_rows(ids: np.ndarray, rows: np.ndarray, n: int, seq_len: int) -> np.ndarray:
    """Scatter tokens (T,) with row indices (T,) (sorted) into (n, seq_len), truncating, pad 0."""
    lengths = np.bincount(rows, minlength=n)
    offset = np.arange(len(ids)) - (np.cumsum(lengths) - lengths)[rows]
    keep = offset < seq_len
    out = np.full((n, seq_len), PAD_ID, np.uint8)
    out[rows[keep], offset[keep]] = ids[keep]
    return out


def read_tsv(path, seq_len: int, *, block: int = 4096) -> core.Split:
    """Load one LRA ListOps TSV (``Source<TAB>Target`` header) into a Split.

    inputs uint8 (n, seq_len) token ids (truncated / padded with 0), labels int32 (n,).
    Tokenizes ``block`` lines at a time in one vectorized pass.
    """
    path = Path(path)
    lines = path.read_bytes().split(b"\n")
    if lines[0].rstrip(b"\r").split(b"\t")[:2] != [b"Source", b"Target"]:
        raise ValueError(f"{path}: expected a header row 'Source<TAB>Target', got {lines[0][:80]!r}")
    sources, labels, linenos = [], [], []
    for lineno, line in enumerate(lines[1:], start=2):
        line = line.rstrip(b"\r")
        if not line.strip():
            continue
        fields = line.split(b"\t")
        if len(fields) < 2 or not fields[1].strip().isdigit():
            raise ValueError(f"{path}:{lineno}: expected 'Source<TAB>Target' with an integer Target, "
                             f"got {line[:80]!r}")
        sources.append(fields[0])
        labels.append(int(fields[1]))
        linenos.append(lineno)
    labels = np.asarray(labels, dtype=np.int32)
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(f"{path}: Target must be in 0..9, got values in {labels.min()}..{labels.max()}")
    inputs = np.full((len(sources), seq_len), PAD_ID, np.uint8)
    for start in range(0, len(sources), block):  # blocks bound the temporaries (LRA train: 640 MB)
        stop = start + block
        ids, rows = _tokenize_many(sources[start:stop], where=str(path), linenos=linenos[start:stop])
        inputs[start:stop] = _pad_rows(ids, rows, len(sources[start:stop]), seq_len)
    return core.Split(inputs, labels)


def find_files(data_dir) -> Path:
    """The folder holding basic_{train,val,test}.tsv under ``data_dir`` (a few usual places)."""
    data_dir = Path(data_dir).expanduser()
    candidates = [data_dir, data_dir / "listops-1000", data_dir / "lra_release" / "listops-1000",
                  data_dir / "listops"]
    for c in candidates:
        if all((c / f).is_file() for f in SPLIT_FILES.values()):
            return c
    missing = [data_dir / f for f in SPLIT_FILES.values() if not (data_dir / f).is_file()]
    raise core.missing_files_error(
        "listops", missing,
        where=f"{data_dir}/basic_{{train,val,test}}.tsv (also searched {data_dir}/listops-1000/ "
              f"and {data_dir}/lra_release/listops-1000/); or pass generate=True to generate them",
        source=OFFICIAL_SOURCE)


def load(*, data_dir=None, seed: int = 0, generate: bool | None = None, cache_dir=None,
         num_train: int = 96000, num_val: int = 2000, num_test: int = 2000, min_length: int = 500,
         max_length: int = 2000, max_depth: int = 10, max_args: int = 10,
         seq_len: int | None = None) -> core.Task:
    """ListOps task: the official files under ``data_dir``, or a generated set.

    ``generate`` defaults to True when ``data_dir`` is None. Generated sets are cached in
    ``cache_dir`` (default: ``data_dir`` if given, else ~/.cache/ssm_jax) in a folder keyed
    by the generation options and ``seed``. ``seq_len`` defaults to 2000 for files and to
    ``max_length`` for generated sets.
    """
    if generate is None:
        generate = data_dir is None
    if generate:
        opts = dict(num_train=num_train, num_val=num_val, num_test=num_test, min_length=min_length,
                    max_length=max_length, max_depth=max_depth, max_args=max_args, seed=seed)
        root = Path(cache_dir or data_dir or core.default_cache_dir()).expanduser()
        folder = root / core.options_key("listops", opts)
        core.build_once(folder, lambda tmp: generate_files(tmp, **opts))
        seq_len = max_length if seq_len is None else seq_len
        source = "generated"
    else:
        folder = find_files(data_dir)
        seq_len = 2000 if seq_len is None else seq_len
        source = "files"
    core.check_positive_int(seq_len, "seq_len")
    splits = {s: read_tsv(folder / f, seq_len) for s, f in SPLIT_FILES.items()}
    return core.make_task("listops", splits, num_classes=NUM_CLASSES, seq_len=seq_len,
                          vocab_size=len(VOCAB), pad_id=PAD_ID, vocab=VOCAB, source=source,
                          files=str(folder))
