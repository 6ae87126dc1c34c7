"""ListOps: generator grammar and values (checked by an independent evaluator), files, loader."""
import statistics

import numpy as np
import pytest

from ssm_jax import data
from ssm_jax.data.lra import listops


def _evaluate_source(source: str) -> int:
    """Independent evaluator of an LRA Source string (stack machine over the symbols)."""
    stack = [[]]
    for tok in source.replace("(", " ").replace(")", " ").split():
        if tok.startswith("["):
            stack.append([tok])
        elif tok == "]":
            op, *args = stack.pop()
            value = {"[MIN": min, "[MAX": max, "[MED": lambda a: int(statistics.median(a)),
                     "[SM": lambda a: sum(a) % 10}[op](args)
            stack[-1].append(value)
        else:
            stack[-1].append(int(tok))
    assert len(stack) == 1 and len(stack[0]) == 1
    return stack[0][0]


def _depth(source: str) -> int:
    d = best = 0
    for tok in source.split():
        if tok.startswith("["):
            d += 1
            best = max(best, d)
        elif tok == "]":
            d -= 1
    return best


def test_source_format_matches_lra_writer():
    assert listops.to_source(("[MAX", [2, 9])) == "( ( ( [MAX 2 ) 9 ) ] )"
    assert listops.to_source(("[SM", [1, ("[MIN", [3, 4]), 5])) == \
        "( ( ( ( [SM 1 ) ( ( ( [MIN 3 ) 4 ) ] ) ) 5 ) ] )"


def test_generated_expressions_evaluate_to_labels_and_respect_limits():
    rows = listops.generate(num_examples=300, min_length=20, max_length=120, max_depth=4, max_args=5, seed=3)
    assert len({s for s, _ in rows}) == 300  # unique
    for src, value in rows:
        assert _evaluate_source(src) == value
        n = len(listops.tokenize(src))
        assert 20 < n < 120
        assert _depth(src) <= 3  # root at depth 1; operators only above max_depth (LRA)
        assert src.count("(") == src.count(")")
    ops = " ".join(s for s, _ in rows)
    assert all(op in ops for op in listops.OPERATORS)
    labels = np.array([v for _, v in rows])
    assert len(np.unique(labels)) == 10


def test_generation_is_deterministic_by_seed():
    a = listops.generate(num_examples=20, min_length=10, max_length=60, seed=0)
    b = listops.generate(num_examples=20, min_length=10, max_length=60, seed=0)
    c = listops.generate(num_examples=20, min_length=10, max_length=60, seed=1)
    assert a == b and a != c


def test_tokenize_round_trip():
    src = "( ( ( [MED 2 ) ( ( ( [SM 9 ) 4 ) ] ) ) ] )"
    ids = listops.tokenize(src)
    assert ids.dtype == np.uint8
    assert listops.detokenize(ids) == "[MED 2 [SM 9 4 ] ]"
    assert ids[0] == 13 and ids[-1] == 15 and ids[1] == 3  # [MED, ], digit 2 -> 3
    with pytest.raises(ValueError, match="unknown symbol"):
        listops.tokenize("( [FOO 1 ] )")


def test_get_task_generates_caches_and_loads(tmp_path):
    kw = dict(num_train=60, num_val=10, num_test=10, min_length=10, max_length=50, seed=2)
    task = data.get_task("listops", cache_dir=tmp_path, **kw)
    assert task.info["seq_len"] == 50 and task.info["vocab_size"] == 16 and task.info["pad_id"] == 0
    assert task.train.inputs.shape == (60, 50) and task.train.inputs.dtype == np.uint8
    assert {k: len(v) for k, v in task.splits.items()} == {"train": 60, "val": 10, "test": 10}
    folder = tmp_path / task.info["files"].split("/")[-1]
    assert sorted(p.name for p in folder.iterdir()) == ["basic_test.tsv", "basic_train.tsv", "basic_val.tsv"]
    lines = (folder / "basic_train.tsv").read_text().splitlines()
    assert lines[0] == "Source\tTarget"
    src, target = lines[1].split("\t")
    assert _evaluate_source(src) == int(target) == task.train.labels[0]
    np.testing.assert_array_equal(task.train.inputs[0][: len(listops.tokenize(src))], listops.tokenize(src))
    # loading the written files as "official" files gives the same data
    files = data.get_task("listops", data_dir=folder, seq_len=50)
    np.testing.assert_array_equal(files.train.inputs, task.train.inputs)
    np.testing.assert_array_equal(files.test.labels, task.test.labels)
    # cached: a second call reads the files instead of regenerating
    (folder / "basic_val.tsv").write_text("Source\tTarget\n( ( [MAX 1 ) 7 ] )\t7\n")
    assert len(data.get_task("listops", cache_dir=tmp_path, **kw).val) == 1


def test_official_layout_fixture_and_missing_files(tmp_path):
    root = tmp_path / "lra_release" / "listops-1000"
    root.mkdir(parents=True)
    rows = {"train": [("( ( ( [MAX 2 ) 9 ) ] )", 9), ("( ( ( [SM 5 ) 7 ) ] )", 2)],
            "val": [("( ( ( [MIN 2 ) 9 ) ] )", 2)], "test": [("( ( ( [MED 1 ) 4 ) ] )", 2)]}
    for split, name in listops.SPLIT_FILES.items():
        listops.write_tsv(root / name, rows[split])
    task = data.get_task("listops", data_dir=tmp_path)
    assert task.train.inputs.shape == (2, 2000) and task.info["source"] == "files"
    np.testing.assert_array_equal(task.train.labels, [9, 2])
    assert listops.detokenize(task.train.inputs[1]) == "[SM 5 7 ]"
    with pytest.raises(FileNotFoundError, match=r"basic_train\.tsv[\s\S]*lra_release\.gz"):
        data.get_task("listops", data_dir=tmp_path / "empty")


def test_loader_names_the_line_of_a_bad_symbol(tmp_path):
    path = tmp_path / "basic_train.tsv"
    path.write_text("Source\tTarget\n( ( [MAX 1 ) 7 ] )\t7\n\n( ( [MIX 1 ) 7 ] )\t7\n")
    with pytest.raises(ValueError, match=r"basic_train\.tsv:4: unknown symbol"):
        listops.read_tsv(path, 10)
    path.write_text("Source\tTarget\n( ( [MAX 1 ) 7 ] )\t7\n( ( [MAXX 1 ) 7 ] )\t7\n")
    with pytest.raises(ValueError, match=r"basic_train\.tsv:3: unknown symbol"):
        listops.read_tsv(path, 10)
    path.write_text("Source\tTarget\n( ( [MAX 1 ) 7 ] )\tseven\n")
    with pytest.raises(ValueError, match=r"basic_train\.tsv:2: expected 'Source<TAB>Target'"):
        listops.read_tsv(path, 10)
    path.write_text("( ( [MAX 1 ) 7 ] )\t7\n")
    with pytest.raises(ValueError, match="header row"):
        listops.read_tsv(path, 10)


def test_truncation_to_seq_len(tmp_path):
    rows = listops.generate(num_examples=5, min_length=30, max_length=40, seed=0)
    listops.write_tsv(tmp_path / "basic_test.tsv", rows)
    split = listops.read_tsv(tmp_path / "basic_test.tsv", 12)
    assert split.inputs.shape == (5, 12) and (split.inputs > 0).all()
    for (src, _), row in zip(rows, split.inputs):
        np.testing.assert_array_equal(row, listops.tokenize(src)[:12])
