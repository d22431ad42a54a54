"""The training stage's files (irpo/train.py): what a retrain after checkpoint selection leaves on disk."""

from pathlib import Path

from irpo.config import LossConfig
from irpo.files import write_json
from irpo.rundir import RunDir

SHARDS = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"]


class ShardedWeightsTrainer:
    """Writes what save_pretrained writes for a model above its shard size: weights in two files and an index."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int | None]] = []

    def train(self, init_model_dir, pairs, output_dir: Path, loss_cfg, seed, desc="train", scorer=None, max_steps=None):
        self.calls.append((output_dir.name, max_steps))
        output_dir.mkdir(parents=True)
        for name in [*SHARDS, "config.json"]:
            (output_dir / name).write_text("weights")
        write_json(output_dir / "train_summary.json", {"steps": max_steps or 8, "selected_step": 3})
        return {}


def test_retraining_deletes_the_selection_runs_sharded_weights(tmp_path):
    from irpo.train import train

    it = RunDir(tmp_path / "run").iteration(1).create()
    pairs = [{"prompt": "p", "chosen": "c", "rejected": "r", "split": split} for split in ("train", "valid")]
    trainer = ShardedWeightsTrainer()
    model = train(it, "m0", pairs, trainer, LossConfig(), seed=0, scorer=object(), retrain_with_heldout=True)
    assert trainer.calls == [("model_selection", None), ("model", 3)]  # retrained for the selected steps
    assert model == str(it.model) and all((it.model / name).exists() for name in SHARDS)
    selection = it.path / "model_selection"
    assert sorted(p.name for p in selection.iterdir()) == ["config.json", "train_summary.json"]  # no model copy
