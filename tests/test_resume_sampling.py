"""Generation and evaluation resume at shard granularity: a killed stage draws only its missing shards, and
the files it ends with are the bytes an uninterrupted run writes. Bad shards and cut files fail naming the
file to delete; a write that fails (a full disk) leaves the previous file as it was."""

from __future__ import annotations

import errno
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from irpo.child import StageProcessError
from irpo.config import HFSamplerConfig, ModelConfig, SamplerConfig, VLLMSamplerConfig
from irpo.files import write_json, write_jsonl
from irpo.loop import REDO_REWARDS
from irpo.rundir import check_rows_match
from irpo.sampling import Completion, PromptShard, SamplingRequest, build_sampler, sample_all
from irpo.shards import ShardedFile, plan_shards
from irpo.tasks.answer_line import AnswerLine

PROMPTS = [f"Question: What is {a} + {a + 3}?\nSolution:" for a in range(10)]
IDS = [f"q{i}" for i in range(len(PROMPTS))]
REQUEST = SamplingRequest(2, 1.0, 1.0, max_new_tokens=6, seed=3, stop_rule=AnswerLine("Final answer:"))


def hf_sampler(batch_size: int = 8):
    """The hf sampler at 4 prompts per batch (batch_size=8 sequences, 2 samples each)."""
    return build_sampler(
        OmegaConf.structured(SamplerConfig(name="hf", hf=HFSamplerConfig(batch_size=batch_size, device="cpu"))),
        OmegaConf.structured(ModelConfig(name="tiny", max_length=512)),
    )


class CountingSampler:
    """The hf sampler, recording which shards (by first prompt index) each call was asked to draw."""

    def __init__(self):
        self.inner, self.drawn = hf_sampler(), []

    def sample(self, model_dir, shards, requests):
        self.drawn.append([s.first_index for s in shards])
        return self.inner.sample(model_dir, shards, requests)


def texts(samples) -> list[list[str]]:
    return [[c.text for c in row] for row in samples.completions]


def make_rows(shard, results) -> list[dict]:
    return [
        {"id": i, "samples": [c.text for c in row]} for i, row in zip(shard.ids, results[0].completions, strict=True)
    ]


def draw(stage: ShardedFile, model_dir, sampler=None) -> list[dict]:
    return stage.draw(
        dict(zip(IDS, PROMPTS, strict=True)),
        sampler or hf_sampler(),
        model_dir,
        [REQUEST],
        make_rows,
        what="test",
    )


def test_shards_are_consecutive_runs_of_prompts_with_their_first_index():
    shards = plan_shards(IDS, 4)
    assert [(s.number, s.first_index, s.ids) for s in shards] == [
        (0, 0, ("q0", "q1", "q2", "q3")),
        (1, 4, ("q4", "q5", "q6", "q7")),
        (2, 8, ("q8", "q9")),
    ]
    assert [len(s.ids) for s in plan_shards(IDS, 10)] == [10] and plan_shards([], 4) == []
    with pytest.raises(ValueError, match="shard_prompts must be >= 1"):
        plan_shards(IDS, 0)


def test_hf_samples_do_not_depend_on_how_the_prompts_are_split_into_calls(untrained_tiny):
    sampler = hf_sampler()
    (whole,) = sampler.sample(untrained_tiny, [PromptShard(0, PROMPTS[:8])], [REQUEST])
    halves = list(
        sampler.sample(untrained_tiny, [PromptShard(0, PROMPTS[:4]), PromptShard(4, PROMPTS[4:8])], [REQUEST])
    )
    (separate,) = sample_all(sampler, untrained_tiny, PROMPTS[4:8], [REQUEST])  # the second half as its own call...
    assert texts(whole[0]) == texts(halves[0][0]) + texts(halves[1][0])
    assert len({t for row in texts(whole[0]) for t in row}) > 4  # samples, not one repeated text
    assert texts(separate) != texts(whole[0])[4:]  # ... seeded as prompts 0-3 would be: other samples


def test_a_resumed_stage_draws_only_missing_shards_and_writes_the_same_bytes(untrained_tiny, tmp_path):
    uninterrupted = ShardedFile(tmp_path / "a" / "generations.jsonl", IDS, 4)
    uninterrupted.final.parent.mkdir()
    rows = draw(uninterrupted, untrained_tiny)
    assert [r["id"] for r in rows] == IDS and not uninterrupted.folder.exists()

    resumed = ShardedFile(tmp_path / "b" / "generations.jsonl", IDS, 4)
    resumed.folder.mkdir(parents=True)
    for shard, start in ((0, 0), (2, 8)):  # shards 0 and 2 done before a kill; shard 1 deleted by hand
        write_jsonl(resumed.path(resumed.shards[shard]), rows[start : start + 4])
    (resumed.folder / "00001.jsonl.tmp").write_text('{"id": "q4", "sam')  # a write the kill cut short
    sampler = CountingSampler()
    assert draw(resumed, untrained_tiny, sampler) == rows
    assert sampler.drawn == [[4]]
    assert resumed.final.read_bytes() == uninterrupted.final.read_bytes() and not resumed.folder.exists()
    assert draw(resumed, untrained_tiny, sampler) == rows and sampler.drawn == [[4]]  # done: nothing drawn


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda text: text[:-9], r"00001\.jsonl: line 4 is not valid JSON \(.*cut off\?\); delete that file and rerun"),
        (lambda text: text[: text.rindex("{")], r"00001\.jsonl: 3 rows where 4 were expected .*; delete that file"),
        (lambda text: text.replace('"q5"', '"q9"'), r"00001\.jsonl: line 2 is for id 'q9' where 'q5' was expected"),
        (lambda text: "not json\n" + text, r"00001\.jsonl: line 1 is not valid JSON"),
    ],
)
def test_a_bad_shard_fails_before_sampling_naming_the_file_to_delete(tmp_path, damage, message):
    stage = ShardedFile(tmp_path / "generations.jsonl", IDS, 4)
    stage.folder.mkdir()
    for shard in stage.shards[:2]:
        write_jsonl(stage.path(shard), [{"id": i, "samples": ["x"]} for i in shard.ids])
    bad = stage.path(stage.shards[1])
    bad.write_text(damage(bad.read_text()))
    with pytest.raises(ValueError, match=message):
        stage.missing()


def test_a_shard_beyond_the_plan_or_a_cut_stage_file_fails_naming_what_to_delete(tmp_path):
    stage = ShardedFile(tmp_path / "generations.jsonl", IDS, 4)
    stage.folder.mkdir()
    write_jsonl(stage.folder / "00007.jsonl", [{"id": "q0"}])  # written with another shard size
    with pytest.raises(ValueError, match=r"00007\.jsonl: the stage has 3 shards .*delete .*generations\.shards"):
        stage.missing()
    write_jsonl(stage.final, [{"id": i} for i in IDS])
    stage.final.write_text(stage.final.read_text()[:-4])
    with pytest.raises(ValueError, match=r"generations\.jsonl: line 10 is not valid JSON .*delete that file"):
        draw(stage, model_dir=None)
    write_jsonl(stage.final, [{"id": i} for i in IDS[:-1]])  # cut at a line's end: a row short
    with pytest.raises(ValueError, match=r"generations\.jsonl: 9 rows where 10 were expected"):
        draw(stage, model_dir=None)


def test_rewards_that_do_not_line_up_with_the_generations_name_the_files_to_delete(tmp_path):
    rewards = tmp_path / "rewards.jsonl"
    with pytest.raises(
        ValueError,
        match=r"rewards\.jsonl: line 2 is for id 'q2' where 'q1' .*delete it and the "
        r"files made from it \(pairs\.jsonl, pairs_stats\.json\)",
    ):
        check_rows_match(rewards, [{"id": "q0"}, {"id": "q2"}], ["q0", "q1"], REDO_REWARDS)


class FullDisk:
    """A file whose second write raises ENOSPC, as a write to a full disk does."""

    def __init__(self, f):
        self.f, self.writes = f, 0

    def write(self, text):
        self.writes += 1
        if self.writes > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.f.write(text)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_a_full_disk_leaves_the_previous_file_and_no_temporary_file(tmp_path, monkeypatch):
    jsonl, json_file = tmp_path / "generations.jsonl", tmp_path / "eval.json"
    write_jsonl(jsonl, [{"id": "q0"}])
    write_json(json_file, {"greedy_accuracy": 0.5})
    before = {p: p.read_bytes() for p in (jsonl, json_file)}
    real_open = Path.open
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: FullDisk(real_open(self, *a, **k)))
    with pytest.raises(OSError, match=r"writing .*generations\.jsonl failed \(No space left on device\)") as caught:
        write_jsonl(jsonl, [{"id": "q1"}, {"id": "q2"}])
    assert caught.value.errno == errno.ENOSPC

    def half_then_full(self, data):
        real_open(self, "wb").write(data[:3])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", half_then_full)
    with pytest.raises(OSError, match=r"writing .*eval\.json failed"):
        write_json(json_file, {"greedy_accuracy": 0.75})
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in (jsonl, json_file)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.json", "generations.jsonl"]


# --- kill -9 during the smoke run's sampling stages, then rerun: every artifact as an uninterrupted run's ---

ARTIFACTS = [
    "iter_0/eval.jsonl",
    "iter_0/eval.json",
    "iter_1/generations.jsonl",
    "iter_1/rewards.jsonl",
    "iter_1/pairs.jsonl",
    "iter_1/eval.jsonl",
    "iter_1/eval.json",
    "results.json",
]
REPO = Path(__file__).resolve().parents[1]


def start_run(run_dir: Path, cache: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "IRPO_CACHE": str(cache)}
    command = [
        sys.executable,
        "-m",
        "irpo",
        "experiment=smoke",
        "iterations=1",
        "sampler.shard_prompts=4",
        f"hydra.run.dir={run_dir}",
    ]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish_run(run_dir: Path, cache: Path) -> str:
    process = start_run(run_dir, cache)
    output, _ = process.communicate(timeout=900)
    assert process.returncode == 0, output[-3000:]
    return output


def artifacts(run_dir: Path) -> dict[str, bytes]:
    # results.json's title names the run directory; everything else must match byte for byte.
    return {name: (run_dir / name).read_bytes().replace(str(run_dir).encode(), b"<run>") for name in ARTIFACTS}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, model_cache) -> dict[str, bytes]:
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    finish_run(run_dir, model_cache)
    return artifacts(run_dir)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stage", "trial"), [("iter_1/generations", 0), ("iter_1/generations", 1), ("iter_0/eval", 0), ("iter_1/eval", 1)]
)
def test_kill_9_while_sampling_then_rerun_gives_the_uninterrupted_bytes(
    stage, trial, tmp_path, model_cache, uninterrupted
):
    run_dir = tmp_path / "run"
    shards = run_dir / f"{stage}.shards"
    process = start_run(run_dir, model_cache)
    while not (shards / "00000.jsonl").exists():  # the stage has written its first shard
        assert process.poll() is None, f"the run ended before writing {shards}/00000.jsonl:\n" + process.stdout.read()
        time.sleep(0.02)
    time.sleep(random.Random(f"{stage}-{trial}").uniform(0.0, 2.5))  # then a seeded random moment
    process.send_signal(signal.SIGKILL)
    process.communicate()
    done_before = sorted(p.name for p in shards.glob("*.jsonl")) if shards.is_dir() else []

    output = finish_run(run_dir, model_cache)
    total = {"iter_1/generations": 6, "iter_0/eval": 4, "iter_1/eval": 4}[stage]
    if 0 < len(done_before) < total:  # killed mid-stage: the rerun kept the shards drawn
        assert f"{len(done_before)} of {total} shards already drawn" in output
    assert artifacts(run_dir) == uninterrupted
    assert not shards.exists()


# --- sampler=vllm: one engine start for all shards, each shard handed back as the worker writes it ---

STAND_IN_VLLM = '''
import os, random

class SamplingParams:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)

class _Sample:
    def __init__(self, text):
        self.text, self.token_ids, self.finish_reason = text, [0] * len(text), "stop"

class _Output:
    def __init__(self, samples):
        self.outputs = samples

class LLM:
    """Draws, for each prompt, n texts from a generator seeded with that prompt's seed, as vLLM does."""

    def __init__(self, **engine):
        with open(os.environ["STAND_IN_LOG"], "a") as log:
            log.write("engine started\\n")
    def generate(self, prompts, params, use_tqdm=True):
        fail = os.environ["STAND_IN_LOG"] + ".fail"  # a file, read at each call: the engine outlives a test's setenv
        if os.path.exists(fail) and len(prompts) == int(open(fail).read()):
            raise RuntimeError("stand-in engine failed")
        return [_Output([_Sample(f"{len(prompt['prompt_token_ids'])}:{rng.random():.9f}") for _ in range(p.n)])
                for prompt, p in zip(prompts, params) for rng in [random.Random(p.seed)]]
'''


@pytest.fixture
def stand_in_vllm(tmp_path, monkeypatch):
    """The vLLM sampler's parent and worker, run for real, with a stand-in `vllm` module (vLLM is not
    installed here): it checks what irpo does around the engine, not vLLM's sampling."""
    (tmp_path / "vllm").mkdir()
    (tmp_path / "vllm" / "__init__.py").write_text(STAND_IN_VLLM)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("STAND_IN_LOG", str(tmp_path / "engine.log"))
    # chunked_prefill=False: the worker imports no torch.
    sampler_cfg = SamplerConfig(name="vllm", vllm=VLLMSamplerConfig(python=sys.executable, chunked_prefill=False))
    model_cfg = ModelConfig(name="tiny", max_length=60)
    sampler = build_sampler(OmegaConf.structured(sampler_cfg), OmegaConf.structured(model_cfg))
    return sampler, tmp_path / "engine.log"


def test_vllm_sampler_draws_all_shards_from_one_engine_seeded_by_prompt_index(stand_in_vllm, untrained_tiny):
    sampler, engine_log = stand_in_vllm
    prompts = [*PROMPTS[:6], "9" * 80]  # the last prompt does not fit max_length=60
    (whole,) = sampler.sample(untrained_tiny, [PromptShard(0, prompts)], [REQUEST])
    shards = list(sampler.sample(untrained_tiny, [PromptShard(0, prompts[:4]), PromptShard(4, prompts[4:])], [REQUEST]))
    # One engine for both calls on the same model directory, and for every shard of a call.
    assert engine_log.read_text() == "engine started\n"
    assert [whole[0].stats.engine_starts, shards[0][0].stats.engine_starts] == [1, 0]
    assert texts(shards[0][0]) + texts(shards[1][0]) == texts(whole[0])
    assert len({t for row in texts(whole[0])[:6] for t in row}) == 12
    assert whole[0].completions[6] == [Completion("", True)] * 2

    fail = Path(str(engine_log) + ".fail")
    fail.write_text("2")  # the engine fails on a batch of 2 prompts: this call's second shard
    drawn = sampler.sample(untrained_tiny, [PromptShard(0, prompts[:4]), PromptShard(4, prompts[4:])], [REQUEST])
    assert texts(next(drawn)[0]) == texts(whole[0])[:4]  # the first shard comes back before the failure
    with pytest.raises(StageProcessError, match="stand-in engine failed"):
        next(drawn)
    fail.unlink()
    (again,) = sampler.sample(untrained_tiny, [PromptShard(0, prompts)], [REQUEST])  # a fresh engine after a failure
    assert texts(again[0]) == texts(whole[0]) and again[0].stats.engine_starts == 1
    sampler.close()
    assert engine_log.read_text() == "engine started\n" * 2


def test_vllm_sampler_restarts_its_engine_only_for_another_model_and_stops_it_on_close(
    stand_in_vllm, untrained_tiny, tmp_path
):
    sampler, engine_log = stand_in_vllm
    other_model = tmp_path / "other"
    shutil.copytree(untrained_tiny, other_model)
    with sampler:
        for model_dir in (untrained_tiny, untrained_tiny, other_model, other_model):  # eval M_t, then sample M_t
            sample_all(sampler, model_dir, PROMPTS[:2], [REQUEST])
        worker = sampler._worker
        assert sampler.engine_starts == 2 and worker is not None and worker.thread.is_alive()
    assert sampler._worker is None and not worker.thread.is_alive() and not worker.work.exists()
    assert engine_log.read_text() == "engine started\n" * 2
