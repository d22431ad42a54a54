"""logger=wandb, offline: a tiny run's W&B record holds the expected keys, and never the API key."""

from __future__ import annotations

import importlib.util
import json
import struct

import pytest

from irpo.files import read_json
from irpo.loop import run
from irpo.tracking import WandbTracker, redact

# The tests that run W&B (offline); the redaction test below is a pure function's and runs in the fast tier.
needs_wandb = pytest.mark.skipif(
    importlib.util.find_spec("wandb") is None, reason="wandb is not installed (pip install -e '.[wandb]')"
)

FAKE_KEY = "0123456789abcdef0123456789abcdef01234567"


def wandb_records(path):
    """Records of an offline run's .wandb file: W&B's header, then a LevelDB-style log of protobufs."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    position, pending = 7, b""
    while position + 7 <= len(data):
        if 32768 - position % 32768 < 7:  # a block's tail too short for a header is padding
            position += 32768 - position % 32768
            continue
        length, kind = struct.unpack("<HB", data[position + 4 : position + 7])
        if length == 0 and kind == 0:
            break
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # FULL or LAST fragment
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


@pytest.mark.slow
@needs_wandb
def test_offline_run_logs_training_and_iteration_keys_without_the_key(make_config, tmp_path, monkeypatch):
    monkeypatch.setattr(WandbTracker, "poll_seconds", 0.01)  # the live train-log watch races the trainer
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = make_config("experiment=smoke", "iterations=2", "logger=wandb", "logger.mode=offline", "logger.tags=[test]")
    run(cfg)
    root = tmp_path / "run"
    (record_file,) = root.glob("wandb/offline-run-*/run-*.wandb")
    records = list(wandb_records(record_file))
    # A media value (the samples table) arrives as nested keys under its own name.
    history = [
        {item.key or item.nested_key[0]: item.value_json for item in r.history.item}
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]
    train_rows = [h for h in history if "train/loss" in h]
    iteration_rows = [h for h in history if "eval/greedy_accuracy" in h]

    steps = sum(read_json(root / f"iter_{t}" / "model" / "train_summary.json")["steps"] for t in (1, 2))
    # Every step once, in order, whether the live watch or the end-of-iteration pass sent it.
    assert [int(h["train/global_step"]) for h in train_rows] == list(range(1, steps + 1))
    assert {
        "train/loss",
        "train/dpo",
        "train/nll",
        "train/chosen_logps",
        "train/rejected_logps",
        "train/reward_accuracy",
        "train/reward_margin",
        "train/lr",
        "train/tokens_per_s",
    } <= set(train_rows[0])
    assert [int(h["iteration"]) for h in iteration_rows] == [0, 1, 2]
    assert {
        "eval/greedy_accuracy",
        "eval/majority_accuracy",
        "pairs/pairs_kept",
        "rewards/sample_accuracy",
        "generation/tokens_per_s",
        "eval/samples",
    } <= set(iteration_rows[1])
    for t, row in enumerate(iteration_rows):
        assert json.loads(row["eval/greedy_accuracy"]) == read_json(root / f"iter_{t}" / "eval.json")["greedy_accuracy"]

    tables = [json.loads(p.read_text()) for p in record_file.parent.glob("files/media/table/eval/samples_*.json")]
    assert len(tables) == 3 and all(len(t["data"]) == 4 for t in tables)
    assert tables[0]["columns"] == ["iteration", "id", "gold", "answer", "correct", "output"]

    (run_record,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert {"loss", "trainer", "task", "generation"} <= {item.key for item in run_record.config.update}
    assert set(run_record.tags) == {"test", "arithmetic", "irpo"}

    for path in root.rglob("*"):  # the key is in the environment only, never in the run dir
        if path.is_file():
            assert FAKE_KEY.encode() not in path.read_bytes(), path

    # A rerun resumes the same W&B run and logs nothing twice.
    state = read_json(root / "wandb_state.json")
    assert state["logged_iterations"] == [0, 1, 2]
    run(make_config("experiment=smoke", "iterations=2", "logger=wandb", "logger.mode=offline", "logger.tags=[test]"))
    assert read_json(root / "wandb_state.json") == state


def test_secret_looking_config_keys_are_redacted():
    config = {"logger": {"api_key": "k", "project": "p"}, "hub_token": "t", "list": [{"password": "x"}]}
    assert redact(config) == {
        "logger": {"api_key": "<redacted>", "project": "p"},
        "hub_token": "<redacted>",
        "list": [{"password": "<redacted>"}],
    }


@pytest.mark.slow
@needs_wandb
def test_training_steps_reach_the_dashboard_while_training_runs(make_config, tmp_path, monkeypatch):
    import time

    from irpo.rundir import RunDir
    from irpo.tracking import build_tracker

    monkeypatch.setattr(WandbTracker, "poll_seconds", 0.01)
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = RunDir(tmp_path / "run")
    it = run_dir.iteration(1)
    with build_tracker(make_config("experiment=smoke", "logger=wandb", "logger.mode=offline"), run_dir) as tracker:
        sent: list[int] = []  # the steps handed to W&B, as they are handed
        log_to_wandb = tracker.run.log
        monkeypatch.setattr(
            tracker.run, "log", lambda row, **kw: (sent.append(row["train/global_step"]), log_to_wandb(row, **kw))
        )
        live_log = tmp_path / "anywhere" / "steps.jsonl"  # the tracker follows the log it is told, wherever
        with tracker.watch_training(it, live_log):  # stands in for a trainer writing its log step by step
            live_log.parent.mkdir()
            with live_log.open("w") as log:
                for step in range(1, 6):
                    log.write(json.dumps({"step": step, "loss": 1 / step}) + "\n")
                    log.flush()
                    time.sleep(0.05)
                log.write('{"step": 6, "lo')  # a line still being written is not read
                log.flush()
                deadline = time.time() + 10
                while len(sent) < 5 and time.time() < deadline:
                    time.sleep(0.05)
                # Training is still running (inside the watch): its steps are already on their way.
                assert sent == [1, 2, 3, 4, 5]
        # No iteration finished, so every step below came from the live watch.
    (record_file,) = (tmp_path / "run").glob("wandb/offline-run-*/run-*.wandb")

    def recorded_steps() -> list[int]:
        return [
            json.loads(item.value_json)
            for r in wandb_records(record_file)
            if r.WhichOneof("record_type") == "history"
            for item in r.history.item
            if (item.key or item.nested_key[0]) == "train/global_step"
        ]

    # W&B's service process writes the record file on its own schedule; on a loaded machine (a full CI run)
    # it was read empty once right after the run closed, so wait for it (up to 60 s) before judging it.
    deadline = time.time() + 60
    while recorded_steps() != [1, 2, 3, 4, 5] and time.time() < deadline:
        time.sleep(0.5)
    assert recorded_steps() == [1, 2, 3, 4, 5]
