"""The paper's tasks on the real release files in ../shared/datasets (skipped where absent).

Answer checking decides every reward and accuracy, so the gold solutions, rewritten into the
prompt's format, must be judged correct by the task's own reward, and perturbed answers wrong.
"""

import json
import random

import pytest

from irpo.tasks import build_task

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def gsm8k(shared_dir):
    return build_task({"name": "gsm8k", "data_dir": str(shared_dir / "datasets/gsm8k")})


@pytest.fixture(scope="module")
def math_task(shared_dir):
    return build_task({"name": "math", "data_dir": str(shared_dir / "datasets/math")})


@pytest.fixture(scope="module")
def arc(shared_dir):
    return build_task({"name": "arc_challenge", "data_dir": str(shared_dir / "datasets/arc")})


def test_gsm8k_splits_and_every_gold_solution_is_rewarded(gsm8k):
    splits = gsm8k.load_splits()
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (7473 - 1000, 1000, 1319)
    assert not {e.id for e in splits.train} & {e.id for e in splits.valid}
    for e in splits.train + splits.valid + splits.test:
        assert "<<" not in e.gold_solution and "####" not in e.gold_solution
        assert gsm8k.reward(e, e.gold_solution) == (e.gold_answer, 1.0), e.id


def test_gsm8k_perturbed_answers_are_wrong(gsm8k):
    for e in gsm8k.load_splits().test:
        changed = e.gold_solution.rsplit("Final answer:", 1)[0] + f"Final answer: {e.gold_answer}1"
        assert gsm8k.reward(e, changed)[1] == 0.0, e.id


def test_gsm8k_number_formats(gsm8k):
    e = next(x for x in gsm8k.load_splits().test if x.gold_answer == "18")
    for text in [
        "Final answer: 18",
        "Final answer: $18",
        "Final answer: 18.00",
        "Final answer: 18 dollars",
        "Final answer: $18 per day.",
        "Final answer: 18.",
        "x\nFinal answer: 5\nFinal answer: 18",
    ]:
        assert gsm8k.reward(e, text)[1] == 1.0, text
    for text in ["Final answer: 17", "Final answer: -18", "The answer is 18", "Final answer: eighteen"]:
        assert gsm8k.reward(e, text)[1] == 0.0, text
    big = type(e)(id="b", question="q", gold_answer="1,000")
    assert gsm8k.reward(big, "Final answer: 1000.00")[1] == 1.0 and gsm8k.reward(big, "Final answer: 1,000")[1] == 1.0
    negative = type(e)(id="n", question="q", gold_answer="-3")
    assert gsm8k.reward(negative, "Final answer: -3")[1] == 1.0 and gsm8k.reward(negative, "Final answer: 3")[1] == 0


def test_gsm8k_last_number_fallback_only_when_configured(shared_dir):
    e = type(build_task({"name": "gsm8k", "data_dir": str(shared_dir / "datasets/gsm8k")}).load_splits().test[0])
    ex = e(id="x", question="q", gold_answer="42")
    strict = build_task({"name": "gsm8k", "data_dir": str(shared_dir / "datasets/gsm8k")})
    lenient = build_task(
        {"name": "gsm8k", "data_dir": str(shared_dir / "datasets/gsm8k"), "answer_fallback_last_number": True}
    )
    assert strict.reward(ex, "so she has 42 left")[1] == 0.0
    assert lenient.reward(ex, "so she has 42 left")[1] == 1.0


def test_math_splits_fewshot_and_every_gold_solution_is_rewarded(math_task):
    splits = math_task.load_splits()
    assert splits.skipped == {"no_gold_answer": 2}  # two train solutions have no \boxed answer
    assert len(splits.train) + len(splits.valid) == 7500 - 2 - 4 and len(splits.test) == 5000
    fewshot_ids = {e.id for e in math_task.fewshot}
    assert len(fewshot_ids) == 4 and not fewshot_ids & {e.id for e in splits.train + splits.valid}
    wrong = [e.id for e in splits.train + splits.valid + splits.test if math_task.reward(e, e.gold_solution)[1] != 1.0]
    assert wrong == []


def test_math500_test_set(shared_dir):
    task = build_task({"name": "math", "data_dir": str(shared_dir / "datasets/math"), "test_set": "math500"})
    test = task.load_splits().test
    assert len(test) == 500 and all(task.reward(e, e.gold_solution)[1] == 1.0 for e in test)


def test_math_perturbed_answers_are_wrong(math_task):
    sample = random.Random(0).sample(math_task.load_splits().test, 150)
    for e in sample:
        perturbed = f"{e.gold_answer}+1"
        assert math_task.reward(e, f"Final answer: \\boxed{{{perturbed}}}")[1] == 0.0, e.id


def test_math_equivalent_forms_and_extraction(math_task):
    e = type(math_task.load_splits().test[0])
    half = e(id="h", question="q", gold_answer="\\frac{1}{2}")
    for text in [
        "Final answer: \\boxed{\\frac12}",
        "Final answer: \\boxed{0.5}",
        "so \\boxed{\\dfrac{1}{2}}.",
        "Final answer: $\\frac{1}{2}$",
        "Final answer: \\boxed{\\frac{1}{2}}",
    ]:
        assert math_task.reward(half, text)[1] == 1.0, text
    assert math_task.reward(half, "Final answer: \\boxed{\\frac{1}{3}}")[1] == 0.0
    assert math_task.reward(half, "no answer here")[1] == 0.0
    nested = e(id="n", question="q", gold_answer="\\sqrt{\\frac{3}{4}}")
    assert math_task.extract_answer(nested, "x \\boxed{\\sqrt{\\frac{3}{4}}} y") == "\\sqrt{\\frac{3}{4}}"
    assert math_task.reward(nested, "Final answer: \\boxed{\\frac{\\sqrt{3}}{2}}")[1] == 1.0
    complex_answer = e(id="c", question="q", gold_answer="-1 + i")
    assert math_task.reward(complex_answer, "Final answer: \\boxed{i - 1}")[1] == 1.0


def test_math_prompt_holds_exactly_four_examples(math_task):
    e = math_task.load_splits().test[0]
    prompt = math_task.prompt(e)
    assert prompt.startswith(math_task.instruction)
    shots = prompt[len(math_task.instruction) :]
    assert shots.count("Question:") == 5 and shots.count("\nFinal answer: ") == 4
    assert prompt.endswith(f"Question: {e.question}\nSolution:") and "\\boxed" in math_task.instruction


def test_arc_splits_and_every_answer_key_maps_to_a_choice(arc, shared_dir):
    splits = arc.load_splits()
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (1119 + 2251, 299, 1172)
    assert splits.skipped == {}
    for e in splits.train + splits.valid + splits.test:
        letters = [letter for letter, _ in e.meta["options"]]
        assert e.gold_answer in letters and e.gold_solution is None
        assert arc.reward(e, f"Reasoning.\nFinal answer: ({e.gold_answer})")[1] == 1.0
        wrong = next(letter for letter in letters if letter != e.gold_answer)
        assert arc.reward(e, f"Final answer: ({wrong})")[1] == 0.0
    # Digit keys ("1"-"4") are shown and judged as letters.
    raw = [json.loads(line) for line in (shared_dir / "datasets/arc/ARC-Challenge/ARC-Challenge-Test.jsonl").open()]
    digit = next(r for r in raw if r["answerKey"].isdigit())
    example = next(e for e in splits.test if e.id == digit["id"])
    assert example.gold_answer == "ABCDE"[int(digit["answerKey"]) - 1]
    assert "(A) " in arc.prompt(example) and "(1) " not in arc.prompt(example)


@pytest.mark.parametrize(
    "form",
    [
        "({g})",
        "{g}",
        "{l}",
        "{g}.",
        "**({g})**",
        "({g}) {t}",
        "{g}. {t}",
        "{g}: {t}",
        "Option {g}",
        "The answer is ({g}).",
        "({l}) {t}",
    ],
)
def test_arc_every_gold_letter_is_read_in_the_forms_models_write(arc, form):
    splits = arc.load_splits()
    for e in splits.train + splits.valid + splits.test:
        line = form.format(g=e.gold_answer, l=e.gold_answer.lower(), t=dict(e.meta["options"])[e.gold_answer])
        assert arc.reward(e, f"Reasoning.\nFinal answer: {line}") == (e.gold_answer, 1.0), (e.id, line)


def test_arc_prompts_with_three_and_five_options(arc):
    splits = arc.load_splits()
    for n in (3, 5):
        e = next(x for x in splits.train + splits.valid + splits.test if len(x.meta["options"]) == n)
        prompt = arc.prompt(e)
        assert [f"({letter})" in prompt for letter in "ABCDE"] == [True] * n + [False] * (5 - n)
        assert prompt.endswith("\nSolution:")


@pytest.mark.parametrize(
    "text, letter",
    [
        ("Final answer: (B)", "B"),
        ("Final answer: B", "B"),
        ("Final answer: B)", "B"),
        ("Final answer: (B) mitochondria", "B"),
        ("Final answer: Because of heat", None),
        ("no final line (B)", None),
    ],
)
def test_arc_letter_extraction(arc, text, letter):
    e = arc.load_splits().test[0]
    assert arc.extract_answer(e, text) == letter


def test_arc_letters_outside_the_options_are_wrong(arc):
    e = next(x for x in arc.load_splits().test if len(x.meta["options"]) == 4)
    assert arc.reward(e, "Final answer: (E)") == ("E", 0.0)


def test_malformed_rows_and_missing_files_name_the_place(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"question": "q", "answer": "x\\n#### 3"}\n{not json\n')
    (tmp_path / "test.jsonl").write_text('{"question": "q", "answer": "x\\n#### 3"}\n')
    with pytest.raises(ValueError, match=r"train.jsonl: line 2 is not valid JSON"):
        build_task({"name": "gsm8k", "data_dir": str(tmp_path), "num_valid": 0}).load_splits()
    (tmp_path / "train.jsonl").write_text('{"question": "q", "answer": "no final line"}\n{"question": "q2"}\n')
    with pytest.raises(ValueError, match=r"train.jsonl:2: row lacks field\(s\) answer"):
        build_task({"name": "gsm8k", "data_dir": str(tmp_path), "num_valid": 0}).load_splits()
    (tmp_path / "train.jsonl").write_text('{"question": "q", "answer": "no final line"}\n')
    splits = build_task({"name": "gsm8k", "data_dir": str(tmp_path), "num_valid": 0}).load_splits()
    assert splits.train == [] and splits.skipped == {"no_gold_answer": 1}
    with pytest.raises(FileNotFoundError, match="nowhere/train.jsonl does not exist"):
        build_task({"name": "gsm8k", "data_dir": str(tmp_path / "nowhere"), "num_valid": 0}).load_splits()


def test_math_without_fewshot_examples_reads_the_data_once(tmp_path, monkeypatch):
    """fewshot_ids=[] is a zero-shot prompt, not "not loaded yet": prompts must not reload the data."""
    import irpo.tasks.math as math_module

    rows = [{"problem": f"What is {n} + 1?", "solution": f"It is \\boxed{{{n + 1}}}."} for n in range(3)]
    for split in ("train", "test"):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setattr(math_module, "RELEASE_SIZES", {"train": 3, "test": 3})
    task = build_task({"name": "math", "data_dir": str(tmp_path), "fewshot_ids": [], "num_valid": 0})
    reads = []
    original = task._rows
    monkeypatch.setattr(task, "_rows", lambda split: reads.append(split) or original(split))
    splits = task.load_splits()
    prompts = [task.prompt(e) for e in splits.train + splits.test]
    assert reads == ["train", "test"]
    assert prompts == [task.instruction + task.prompt_body(e) for e in splits.train + splits.test]  # no shots


def write_math_hub_copy(root, rows: dict[tuple[str, str], list[dict]]) -> None:
    """MATH in the hub's layout (EleutherAI/hendrycks_math): <subject>/<split>-00000-of-00001.parquet per
    subject config, named in README.md, with the hub's columns (no unique_id)."""
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    columns = ("problem", "level", "type", "solution")
    card = ["---", "configs:"]
    for subject in sorted({subject for subject, _ in rows}):
        card += [f"- config_name: {subject}", "  data_files:"]
        for split in ("train", "test"):
            (root / subject).mkdir(parents=True, exist_ok=True)
            table = pa.table({c: [r[c] for r in rows.get((subject, split), [])] for c in columns})
            pq.write_table(table, root / subject / f"{split}-00000-of-00001.parquet")
            card += [f"  - split: {split}", f"    path: {subject}/{split}-*"]
    (root / "README.md").write_text("\n".join([*card, "---", ""]))


@pytest.fixture
def math_sample(shared_dir, tmp_path):
    """A few release rows of every subject and split, the four in-context examples among them, as
    release files (data_dir) and as a hub copy that stores them in another order."""
    fewshot_ids = set(build_task({"name": "math"}).cfg.fewshot_ids)
    release = tmp_path / "release"
    release.mkdir()
    by_place: dict[tuple[str, str], list[dict]] = {}
    for split in ("train", "test"):
        rows = [json.loads(line) for line in (shared_dir / f"datasets/math/{split}.jsonl").open()]
        kept = []
        for row in rows:
            split_name, subject, _ = row["unique_id"].split("/")
            place = by_place.setdefault((subject, split_name), [])
            if row["unique_id"] in fewshot_ids or len(place) < (6 if split == "train" else 2):
                place.append(row)
                kept.append(row)
        (release / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    hub = tmp_path / "hub"
    write_math_hub_copy(hub, {place: rows[::-1] for place, rows in by_place.items()})
    sizes = {split: sum(len(rows) for (_, s), rows in by_place.items() if s == split) for split in ("train", "test")}
    # MATH-500 on the hub (HuggingFaceH4/MATH-500) is one test.jsonl with the release's fields.
    math500 = (shared_dir / "datasets/math/math500_test.jsonl").read_text().splitlines(keepends=True)[:5]
    (release / "math500_test.jsonl").write_text("".join(math500))
    (tmp_path / "math500_hub").mkdir()
    (tmp_path / "math500_hub" / "test.jsonl").write_text("".join(math500[::-1]))
    return release, hub, {**sizes, "math500_test": len(math500)}


def test_math_from_the_hub_layout_gives_the_release_split_and_fewshot(math_sample, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    release_dir, hub_dir, sizes = math_sample
    import irpo.tasks.math as math_module

    # At the real sizes the small copy is not the release's split, and says so.
    with pytest.raises(ValueError, match=rf"has {sizes['train']} train rows, the release 7500.*task.data_dir"):
        build_task({"name": "math", "hub_id": str(hub_dir), "num_valid": 3}).load_splits()

    monkeypatch.setattr(math_module, "RELEASE_SIZES", {**math_module.RELEASE_SIZES, **sizes})
    from_files = build_task({"name": "math", "data_dir": str(release_dir), "num_valid": 3})
    from_hub = build_task({"name": "math", "hub_id": str(hub_dir), "num_valid": 3})
    files, hub = from_files.load_splits(), from_hub.load_splits()
    assert len(hub.train) + len(hub.valid) == sizes["train"] - 4 and len(hub.test) == sizes["test"]
    for split in ("train", "valid"):  # the same questions, held out the same way, in the same order
        assert [e.question for e in hub.get(split)] == [e.question for e in files.get(split)]
        assert [e.gold_answer for e in hub.get(split)] == [e.gold_answer for e in files.get(split)]
    assert sorted(e.question for e in hub.test) == sorted(e.question for e in files.test)
    assert [e.id for e in from_hub.fewshot] == [e.id for e in from_files.fewshot] == from_files.cfg.fewshot_ids
    question = files.test[0]
    same = next(e for e in hub.test if e.question == question.question)
    assert from_hub.prompt(same) == from_files.prompt(question)

    on_hub = (
        build_task(
            {
                "name": "math",
                "hub_id": str(hub_dir),
                "math500_hub_id": str(tmp_path / "math500_hub"),
                "test_set": "math500",
                "num_valid": 3,
            }
        )
        .load_splits()
        .test
    )
    in_files = (
        build_task({"name": "math", "data_dir": str(release_dir), "test_set": "math500", "num_valid": 3})
        .load_splits()
        .test
    )
    assert sorted(e.id for e in on_hub) == sorted(e.id for e in in_files) and len(on_hub) == 5

    # Other in-context examples cannot be found in a copy without unique_id.
    other = build_task(
        {
            "name": "math",
            "hub_id": str(hub_dir),
            "num_valid": 3,
            "fewshot_ids": ["train/algebra/0.json", *from_files.cfg.fewshot_ids[1:]],
        }
    )
    with pytest.raises(ValueError, match=r"train/algebra/0.json.*without unique_id.*task.data_dir"):
        other.load_splits()


def test_math_hub_rows_in_another_order_hold_out_the_same_1000(shared_dir, monkeypatch):
    """All 12500 release rows served as the hub serves them (per subject config, no unique_id, another
    order): the real sizes pass, the default in-context examples are found, and the held-out 1000 and
    the training questions are the release files' own. Runs without `datasets`, unlike the test above."""
    import irpo.tasks.math as math_module

    by_config: dict[tuple[str, str], list[dict]] = {}
    for split in ("train", "test"):
        for line in (shared_dir / f"datasets/math/{split}.jsonl").open():
            row = json.loads(line)
            subject = row.pop("unique_id").split("/")[1]
            by_config.setdefault((subject, split), []).append(row)
    served = []

    def hub_split(hub_id, config, split):
        served.append((hub_id, config, split))
        rows = by_config[(config, split)][::-1]
        return [(n, dict(row)) for n, row in enumerate(rows, start=1)]

    monkeypatch.setattr(math_module, "load_hub_split", hub_split)
    from_hub = build_task({"name": "math"})
    from_files = build_task({"name": "math", "data_dir": str(shared_dir / "datasets/math")})
    hub, files = from_hub.load_splits(), from_files.load_splits()
    assert {config for _, config, _ in served} == set(math_module.HUB_SUBJECTS)
    assert [e.question for e in hub.valid] == [e.question for e in files.valid] and len(hub.valid) == 1000
    assert [e.question for e in hub.train] == [e.question for e in files.train]
    assert sorted(e.question for e in hub.test) == sorted(e.question for e in files.test)
    assert [(e.id, e.question) for e in from_hub.fewshot] == [(e.id, e.question) for e in from_files.fewshot]
    assert hub.skipped == files.skipped == {"no_gold_answer": 2}

    # A copy missing rows is not the release's split, and says so.
    by_config[("algebra", "train")].pop()
    with pytest.raises(ValueError, match="has 7499 train rows, the release 7500"):
        build_task({"name": "math"}).load_splits()
