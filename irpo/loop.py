"""Iterative RPO (Figure 1 of Pang et al., 2024), top to bottom.

For t = 1..T, starting from the seed model M0:
  1. generate  N chains of thought per training prompt from M_{t-1}
  2. reward    1 if a sample's final answer matches the gold answer, else 0
  3. pairs     (winner, loser) pairs per prompt
  4. train     M_t from M_{t-1} with DPO + α·NLL, M_{t-1} as the frozen reference
  5. evaluate  M_t on the test split (greedy and majority vote)

Baselines are the same loop with other settings (pair builder, loss, iterations); see conf/.
Each stage skips itself when its artifact exists in the run directory, so a rerun resumes.
"""

from __future__ import annotations

import logging
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from irpo.config import (
    MACHINE_LOCAL_KEYS,
    ConfigError,
    changed_keys,
    paper_departures,
    record_resolved,
    resolve_auto,
    resumable,
    selects_checkpoints,
    temperature_for,
    validate,
)
from irpo.evaluate import HeldOutScorer, evaluate
from irpo.files import read_json, write_json, write_text
from irpo.generate import generate
from irpo.models.loading import load_tokenizer
from irpo.models.tokens import encode, render_prompt
from irpo.pairs import PAIR_BUILDERS, ScoredQuestion, build_pairs, copy_pairs
from irpo.protocols import Tracker, Trainer
from irpo.results import write_results
from irpo.reward import reward, reward_stats
from irpo.rundir import IterationDir, RunDir, check_rows_match
from irpo.sampling import build_sampler
from irpo.seed_model import prepare_seed_model
from irpo.seeds import training_seed
from irpo.stage_context import StageContext
from irpo.tasks import Example, Task, build_task
from irpo.tracking import build_tracker
from irpo.train import iteration_train_summary, train, watched_train_log
from irpo.training import build_trainer

log = logging.getLogger("irpo")


def run(cfg: DictConfig) -> list[dict]:
    """Runs (or resumes) every iteration in cfg.run_dir and returns the results table's rows."""
    check_config(cfg)
    run_dir = RunDir(cfg.run_dir).create()
    record_config(run_dir, cfg)
    task = build_task(cfg.task)
    questions = Questions.of(task, cfg)
    sampler = build_sampler(cfg.sampler, cfg.model)
    trainer = build_trainer(cfg.trainer, cfg.model, cfg.cluster)
    model_dir = resolve_init_model(cfg, task, run_dir)  # M0, or the model a baseline starts from
    record_resolved(run_dir, resolve_auto(cfg, model_dir))  # what `auto` is on this machine
    tokenizer = load_tokenizer(model_dir)
    prompts = {e.id: render_prompt(task, e, tokenizer, cfg.model.use_chat_template) for e in questions.all()}

    def fits(prompt: str, response: str) -> bool:
        return len(encode(tokenizer, prompt, response).input_ids) <= cfg.model.max_length

    ctx = StageContext(task, prompts, sampler, cfg.generation, cfg.sampler.shard_prompts, cfg.seed, fits)

    # Dashboards mirror the run dir as it is written (logger=...); the sampler's engine stops at the end.
    with build_tracker(cfg, run_dir) as tracker, closing(sampler):
        m0 = run_dir.iteration(0).create()
        metrics = evaluate(m0, model_dir, questions.test, ctx, cfg.eval)
        write_json(m0.metrics, {"iteration": 0, "model": str(model_dir), "eval": metrics})
        tracker.log_iteration(m0)
        for t in range(1, cfg.iterations + 1):
            it = run_dir.iteration(t)
            if it.metrics.exists():
                model_dir = read_json(it.metrics)["model"]
            else:
                model_dir = run_iteration(cfg, it.create(), model_dir, ctx, questions, trainer, tracker)
            tracker.log_iteration(it)
    return write_results(run_dir, title=f"{cfg.method} on {cfg.task.name} ({run_dir.root})")


def run_iteration(
    cfg: DictConfig,
    it: IterationDir,
    model_dir,
    ctx: StageContext,
    questions: Questions,
    trainer: Trainer,
    tracker: Tracker,
) -> str:
    """Steps 1-5 of iteration t, from M_{t-1} in `model_dir`; writes iter_t/metrics.json, returns M_t's dir."""
    pairs = training_rows(cfg, it, model_dir, ctx, questions)  # 1-3
    scorer = HeldOutScorer(questions.held_out, ctx) if questions.held_out else None
    ctx.sampler.close()  # an engine kept for M_{t-1} (its evaluation, then these samples) frees its memory now
    seed, retrain = training_seed(cfg.seed, it.t), cfg.trainer.retrain_with_heldout
    with tracker.watch_training(it, watched_train_log(it)):
        model_dir = train(it, model_dir, pairs, trainer, cfg.loss, seed, scorer, retrain_with_heldout=retrain)  # 4
    metrics = evaluate(it, model_dir, questions.test, ctx, cfg.eval)  # 5
    write_json(
        it.metrics,
        {
            "iteration": it.t,
            "model": model_dir,
            "temperature": temperature_for(cfg.generation, it.t),
            "rewards": reward_stats(it),
            "pairs": read_json(it.pairs_stats),
            "train": iteration_train_summary(it),
            "eval": metrics,
        },
    )
    return model_dir


def training_rows(cfg: DictConfig, it: IterationDir, model_dir, ctx: StageContext, questions: Questions) -> list:
    """Steps 1-3: the iteration's pairs (or SFT rows), from M_{t-1}'s scored samples or another run's pairs."""
    if cfg.pairs.from_run:  # a baseline trained on another run's pairs (the paper's D0): steps 1-3 ran there
        source = resolve_run_path(cfg.pairs.from_run, it.path.parent)  # beside this run
        check_same_data(cfg, source)
        return copy_pairs(it, RunDir(source).iteration(it.t), cfg.pairs.from_run)
    examples = questions.for_pairs
    scored = [
        ScoredQuestion(e.id, ctx.prompts[e.id], e.gold_solution, [], [], split=questions.split_of(e.id))
        for e in examples.values()
    ]
    builder = PAIR_BUILDERS.get(cfg.pairs.builder)
    if builder.needs_samples:
        generations = generate(it, model_dir, [q.id for q in scored], ctx)  # 1
        rewards = reward(it, generations, examples, ctx.task)  # 2
        check_rows_match(it.rewards, rewards, [g["id"] for g in generations], REDO_REWARDS)
        for q, gen, rew in zip(scored, generations, rewards, strict=True):
            q.samples, q.rewards, q.truncated = gen["samples"], rew["rewards"], gen.get("truncated", [])
    pairs = build_pairs(it, builder, scored, cfg.pairs, ctx.fits)  # 3
    stray = next((p["id"] for p in pairs if p["id"] not in examples), None)
    if stray is not None:
        raise ValueError(
            f"{it.pairs}: holds a pair for id {stray!r}, which is not among this iteration's "
            f"prompts; delete it and {it.pairs_stats.name} and rerun to build the pairs again"
        )
    return pairs


@dataclass
class Questions:
    """The task's questions as the loop uses them."""

    train: dict[str, Example]  # by id
    held_out: list[Example]  # scores checkpoints (empty without checkpoint selection)
    test: list[Example]  # the eval split, cut to eval.max_examples
    for_pairs: dict[str, Example]  # sampled and paired: train, and the held-out ones when retrained with

    @classmethod
    def of(cls, task: Task, cfg: DictConfig) -> Questions:
        splits = task.load_splits()
        train = {e.id: e for e in splits.train}
        test = splits.get(cfg.eval.split)[: cfg.eval.max_examples]
        held_out = splits.valid[: cfg.trainer.select_examples] if selects_checkpoints(cfg.trainer) else []
        # Retraining with the held-out prompts needs their samples and pairs too.
        retrain = cfg.trainer.retrain_with_heldout
        for_pairs = dict(train, **{e.id: e for e in held_out}) if retrain else train
        return cls(train, held_out, test, for_pairs)

    def all(self) -> list[Example]:
        return list(self.train.values()) + self.held_out + self.test

    def split_of(self, question_id: str) -> str:
        return "train" if question_id in self.train else "valid"


# rewards.jsonl that does not line up with generations.jsonl was scored from other samples.
REDO_REWARDS = (
    "it was scored from other samples: delete it and the files made from it (pairs.jsonl, pairs_stats.json) and rerun"
)


def check_config(cfg: DictConfig) -> None:
    """`validate`, its failures as one `ConfigError` (`python -m irpo` prints it as one line); then the
    config's departures from the paper's hyper-parameters, logged."""
    try:
        validate(cfg)
    except (ValueError, KeyError, FileNotFoundError) as e:
        raise ConfigError(e.args[0] if e.args else str(e)) from e
    departures = paper_departures(cfg)
    if departures:
        log.info("departs from the paper: %s", ", ".join(departures))


def resolve_init_model(cfg: DictConfig, task, run_dir: RunDir) -> str:
    """The model iteration 1 starts from (see `init_from` in irpo/config/schema.py)."""
    if cfg.init_from is None:
        return prepare_seed_model(cfg, task)
    spec = str(cfg.init_from)
    path = resolve_run_path(spec, run_dir.root)
    if (path / "config.json").exists():
        return str(path)
    finished = [it for it in RunDir(path).iterations() if it.metrics.exists()] if path.is_dir() else []
    if finished:
        return read_json(finished[-1].metrics)["model"]
    raise FileNotFoundError(
        f"init_from={spec}: {path} is neither a model directory nor a run directory with a "
        "finished iteration (run that baseline first; in a sweep it must come earlier)"
    )


# A run whose pairs another run trains on must agree with it on what the pairs are made of and from.
SAME_DATA_KEYS = (
    "task",
    "model",
    "seed",
    "trainer.retrain_with_heldout",
    "trainer.select_examples",
    "trainer.eval_every",
)


def check_same_data(cfg: DictConfig, source: Path) -> None:
    """pairs.from_run: refuses a source run made with other data settings (other task, model, held-out...)."""
    if not (source / "config.yaml").exists():
        return  # not started yet: copy_pairs says which run to run first
    theirs = OmegaConf.to_container(OmegaConf.load(source / "config.yaml"))
    ours = OmegaConf.to_container(cfg, resolve=True)
    differ = [
        k
        for k in changed_keys(theirs, ours)
        if k not in MACHINE_LOCAL_KEYS and any(k == key or k.startswith(key + ".") for key in SAME_DATA_KEYS)
    ]
    if differ:
        raise ValueError(
            f"pairs.from_run={cfg.pairs.from_run}: {source} was run with other data settings "
            f"({', '.join(differ)} differ); its pairs are not this run's D0"
        )


def resolve_run_path(spec: str, run_root: Path) -> Path:
    """run:<name> is the run directory <name> beside the run at `run_root` (a sweep's sibling job); else a path."""
    return run_root.parent / spec[len("run:") :] if spec.startswith("run:") else Path(spec).expanduser()


def record_config(run_dir: RunDir, cfg: DictConfig) -> None:
    """Writes config.yaml; on resume, refuses a config that would make finished work inconsistent."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if run_dir.config.exists():
        previous = OmegaConf.to_container(OmegaConf.load(run_dir.config))
        # Runtime-only keys (tagged in irpo/config/schema.py, the same that name no sweep dir) may change.
        changed = [key for key in changed_keys(previous, resolved) if not resumable(key)]
        if changed:
            raise ConfigError(
                f"{run_dir.root} was started with a different config ({', '.join(changed)} changed); "
                "use a new run directory, or restore those values to resume"
            )
    write_text(run_dir.config, OmegaConf.to_yaml(resolved))
