"""Structured configs: the schema under `conf/`, so a typo fails when the config is composed.

The YAML files in `conf/` hold values; these dataclasses hold the fields, their types and what
they mean. Task configs are per task (see `irpo.tasks`), checked by `validate` before any work.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from irpo.models.loading import check_seed_source
from irpo.tasks import TASKS, task_config

# Field metadata for the keys whose change cannot change results: where and how fast a run goes (ranks,
# memory, dashboards, the cluster), never what it computes. A tagged section tags every key under it. From
# these tags come both the keys a resumed run may change (`resumable`) and the keys left out of a sweep
# job's directory name (`sweep_dir_exclude_keys`, read by conf/config.yaml).
RUNTIME_ONLY_TAG = "runtime_only"
RUNTIME_ONLY = {RUNTIME_ONLY_TAG: True}
# Keys a resumed run may change, because finished work stays valid, whose value can still change what is
# left to compute (so, unlike RUNTIME_ONLY, they name sweep dirs): `iterations` extends or stops a run; a
# device or the hf sampler's batch size changes floating-point results, so later samples may differ.
RESUME_MAY_CHANGE_TAG = "resume_may_change"
RESUME_MAY_CHANGE = {RESUME_MAY_CHANGE_TAG: True}
# Keys whose values come from the machine's environment (where M0 is cached), not from the experiment.
MACHINE_LOCAL_KEYS = ("model.tiny.cache_dir",)
# Keys that only seed random draws: runs that differ in these alone repeat one experiment (the report
# summarises such runs across seeds: `experiment_key`).
SEEDING_TAG = "seeding"
SEEDING = {SEEDING_TAG: True}


@dataclass
class TinyModelConfig:
    """Architecture of the embedded tiny Llama and the short SFT that makes it the seed model M0."""

    hidden_size: int = 128
    intermediate_size: int = 512
    num_layers: int = 4
    num_heads: int = 2  # head_dim = hidden_size / num_heads = 64, which vLLM's CPU build accepts
    max_position_embeddings: int = 512
    init_seed: int = 0
    # A short SFT that stops mid-learning (constant lr, no decay): M0 then has room the iterations can use.
    seed_sft_steps: int = 200
    seed_sft_lr: float = 2e-3
    seed_sft_batch_size: int = 32
    seed_sft_schedule: str = "constant"
    cache_dir: str = "${oc.env:IRPO_CACHE,${oc.env:HOME}/.cache/irpo}"


@dataclass
class ModelConfig:
    name: str = MISSING
    # Local directory or hub id; null builds the tiny model from `tiny` (cached by its settings).
    name_or_path: Optional[str] = None
    # A GGUF checkpoint to start from instead: a path, or <package>:<file> inside an installed package.
    # Imported once into a safetensors directory in the M0 cache (irpo/models/gguf.py).
    gguf_file: Optional[str] = None
    tiny: Optional[TinyModelConfig] = None
    dtype: str = "float32"  # float32 | bfloat16 | float16
    max_length: int = 512  # prompt + response tokens; longer pairs are dropped
    use_chat_template: bool = False  # wrap prompts with the tokenizer's chat template


@dataclass
class LossConfig:
    name: str = "dpo_nll"  # dpo_nll | sft
    alpha: float = 1.0  # weight of the length-normalised NLL term; 0 = standard DPO
    beta: float = 0.1  # DPO temperature
    nll_normalization: str = "sequence"  # NLL over each winner's length (paper) | token: over the step's (TRL)


@dataclass
class GenerationConfig:
    """How samples are drawn; every sampler backend reads these same values."""

    num_samples: int = 30  # N samples per training prompt
    temperatures: list[float] = field(default_factory=lambda: [0.8, 0.8, 1.3, 1.3])  # per iteration; last repeats
    top_p: float = 1.0
    max_new_tokens: int = 512
    stop: list[str] = field(default_factory=list)  # stop strings (kept in the text), for every sampler


@dataclass
class HFSamplerConfig:
    """sampler.hf: the model in this process, through transformers (irpo/sampling/hf.py)."""

    batch_size: int = field(default=256, metadata=RESUME_MAY_CHANGE)  # sequences per batch
    device: str = field(default="auto", metadata=RESUME_MAY_CHANGE)
    # loop: irpo/sampling/decode.py (each prompt prefilled once for its N samples, the KV cache grown in place,
    # finished rows leave the batch; a sample is seeded per prompt, so it never depends on its batch): several
    # times generate's speed on a CPU (README, "Speed"). generate: transformers' generate, the reference.
    decoder: str = "loop"
    # decoder=generate: run each prompt once and copy its KV cache to its N samples, not N times. Off by
    # default, so decoder=generate stays the reference path: the random stream is the same, but the prompts' logits
    # come from another batch shape, which may move a sample's floating-point detail (README, "Speed").
    shared_prefill: bool = False
    # The weights' dtype while sampling (irpo/models/precision.py): auto = bfloat16 where the device multiplies it
    # natively and the model is large enough to gain (SmolLM2-135M: 1.8x on this CPU), else model.dtype;
    # model = model.dtype; or float32 | bfloat16 | float16. Logged per stage; README, "Speed".
    dtype: str = "auto"


@dataclass
class VLLMSamplerConfig:
    """sampler.vllm: vLLM's offline engine in a child process (irpo/sampling/vllm_sampler.py). One engine
    serves every stage on the same model directory (M_t's evaluation, then iteration t+1's samples); it is
    stopped before training, so its GPU memory is free again then."""

    tensor_parallel_size: int = 1
    # On vLLM's CPU build: the share of RAM for the KV cache.
    gpu_memory_utilization: float = field(default=0.9, metadata=RUNTIME_ONLY)
    max_model_len: Optional[int] = None  # null = model.max_length
    dtype: Optional[str] = None  # null = as sampler.hf.dtype=auto picks (bfloat16 where it pays), else model.dtype
    enforce_eager: bool = False
    # null = vLLM's default on GPUs, off on CPUs: vLLM 0.32's CPU build fails on seeded requests whose
    # prefill is chunked ("CPU Generator does not use offset").
    chunked_prefill: Optional[bool] = None
    # The N samples of a prompt, and prompts with a common head, share their prefill's KV cache.
    prefix_caching: bool = True
    # The interpreter that runs vLLM; null = this one. vLLM pins its own torch/transformers, so it often
    # lives in a venv of its own: sampler.vllm.python=/path/to/vllm-venv/bin/python.
    python: Optional[str] = field(default=None, metadata=RUNTIME_ONLY)


@dataclass
class SamplerConfig:
    # auto: vllm on a GPU where vLLM is installed (here or at sampler.vllm.python), else hf (irpo/sampling/auto.py);
    # hf: the model in this process (irpo's sampling loop, or generate); vllm: vLLM's engine in a child process.
    name: str = "auto"
    # Generation and evaluation write their rows in shards of this many prompts as they are drawn, so a killed
    # stage resumes at its first missing shard (irpo/shards.py). At the paper's scale 256 prompts x 30 samples
    # are minutes of a 70B model on 8 GPUs; the embedded default makes 2 shards of samples and 1 of test
    # questions. Batches never cross a shard's end, so it is part of what the samples are (not resumable).
    shard_prompts: int = 256
    hf: HFSamplerConfig = field(default_factory=HFSamplerConfig)
    vllm: VLLMSamplerConfig = field(default_factory=VLLMSamplerConfig)


@dataclass
class LoraConfig:
    """trainer.lora: train low-rank adapters on the frozen M_{t-1} instead of every weight (README, "LoRA on
    one GPU"). Each iteration merges them into the weights, so M_t is a plain model directory."""

    rank: int = 0  # r; 0 = LoRA off (full fine-tuning)
    alpha: float = 16.0  # the update is (alpha / rank) * B A
    dropout: float = 0.0  # on the adapters' input, in training only
    # Last component of the linear layers' names; an unknown name fails listing the model's linear layers.
    # The default is every linear layer of a Llama-style block (Llama, Qwen2, Mistral, SmolLM2, the tiny model).
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    save_adapter: bool = False  # also keep the adapter alone in iter_t/model/adapter/ (M_t is always merged)


@dataclass
class TorchTrainerConfig:
    """trainer.torch: the plain PyTorch trainer (irpo/training/torch_trainer.py), in this process."""

    device: str = field(default="auto", metadata=RESUME_MAY_CHANGE)  # auto (cuda where there is one) | cpu | cuda:N
    # Forward passes (training and the reference log-probs) under torch.autocast: bf16 = matmuls and attention
    # in bfloat16, weights, optimizer and loss in float32; none = float32 throughout; auto = bf16 where the
    # device multiplies bfloat16 natively (a bf16 GPU; a CPU with avx512_bf16 or AMX), else none. The resolved
    # choice is in train_summary.json. Speed and the accuracy it gives: README, "Speed".
    mixed_precision: str = "auto"


@dataclass
class DeepSpeedTrainerConfig:
    """trainer.deepspeed: ZeRO ranks under torchrun (irpo/training/deepspeed_trainer.py)."""

    # Ranks per node (GPUs, or CPU processes; 0 = one per visible GPU, or 1 without GPUs); nodes come from
    # cluster.nodes. The effective batch stays trainer.batch_size whatever the number of ranks:
    # accumulation steps = batch_size / (micro_batch_size x ranks).
    num_processes: int = field(default=0, metadata=RUNTIME_ONLY)
    zero_stage: int = 3  # 2: shard optimizer state and gradients; 3: also the parameters
    bf16: str = "auto"  # auto (where the GPU supports it) | true | false
    deepspeed_config: Optional[str] = None  # a JSON file merged over the generated DeepSpeed config (offload, ...)
    # Rendezvous port across nodes; null = 29500 (one node: a free port).
    master_port: Optional[int] = field(default=None, metadata=RUNTIME_ONLY)


@dataclass
class TrainerConfig:
    name: str = "torch"
    lr: float = 7e-7
    batch_size: int = 16  # pairs per optimizer step
    micro_batch_size: int = 16  # pairs per forward pass; gradients accumulate up to batch_size
    # The step budget (paper: up to 5000 steps on GSM8K and MATH, 4000 on ARC). Training makes as many
    # seeded passes over the pairs as the budget needs; checkpoint selection picks a step inside it.
    max_steps: int = 5000
    epochs: Optional[float] = None  # null = no epoch cap (the paper's protocol); n = also stop after n passes
    warmup_steps: int = 0
    lr_schedule: str = "constant"  # constant | cosine (decays to 0 at the last step), after linear warmup
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    # Checkpoint selection (paper, Section 3.1): every eval_every steps, greedy accuracy on the held-out
    # split (GSM8K/MATH: 1000 questions held out of train; ARC: the dev set); the best step's weights become
    # M_t. 0 = no selection, keep the last step. Each task's config turns it on with the paper's protocol.
    # trainer=deepspeed saves a checkpoint at each of those steps and scores them after training.
    eval_every: int = 0
    select_examples: Optional[int] = None  # null = the whole held-out split (the paper's 1k); n = its first n
    # Then retrain from M_{t-1} on the train + held-out pairs for the selected number of steps (the paper
    # does on GSM8K and MATH; on ARC it only trains on the training set).
    retrain_with_heldout: bool = False
    lora: LoraConfig = field(default_factory=LoraConfig)
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~30% more compute
    # How forward passes lay out a micro-batch (irpo/training/packing.py): shared_prompt = each pair's prompt
    # once, then its chosen and rejected responses under a block attention mask, sequences packed without
    # padding; padded = each sequence in its own right-padded row. Same loss and gradients (tested); speed:
    # README, "Speed".
    packing: str = "shared_prompt"
    # Output-layer positions per chunk of the response log-probs, logits recomputed in backward (0 = full logits)
    logprob_chunk_size: int = field(default=1024, metadata=RESUME_MAY_CHANGE)  # irpo/training/logprobs.py
    # Mid-training checkpoint (weights, optimizer, lr schedule, data position, RNG) every save_every steps, so
    # a killed or requeued stage continues from it; 0 = off. Cost per checkpoint: README, "Run directories".
    save_every: int = field(default=250, metadata=RUNTIME_ONLY)
    # Each backend's own settings; the backend checks them (`check`, asked by `validate`).
    torch: TorchTrainerConfig = field(default_factory=TorchTrainerConfig)
    deepspeed: DeepSpeedTrainerConfig = field(default_factory=DeepSpeedTrainerConfig)


@dataclass
class PairsConfig:
    builder: str = "preference"  # preference | gold_sft | self_sft
    pairs_per_prompt: int = 10  # K
    data_multiplier: int = 1  # K x this and max_pairs x this: the paper's "twice as much data" rows use 2
    include_gold: bool = True  # the task's gold CoT joins the winners
    dedupe: bool = True  # identical sampled texts count once in the winner/loser sets
    # The paper walks winners and losers together, restarting a list at its end; where that walk would
    # make a (winner, loser) pair it already made, true takes the next unused combination instead (so K
    # pairs are K distinct pairs where #winners x #losers >= K, and doubling K doubles the distinct data).
    # false repeats pairs exactly as the literal walk does.
    distinct_pairs: bool = True
    max_pairs: Optional[int] = None  # cap on the total (x data_multiplier), by seeded random subsample
    # Train on another run's pairs instead of sampling: run:<name> (the run dir <name> beside this one, as in
    # a sweep) or a run dir. Iteration t's pairs.jsonl is copied byte for byte from that run's iter_t.
    # The paper's DPO and SFT-on-chosen rows train on Iterative RPO's iteration-1 pairs D0 (run:irpo).
    from_run: Optional[str] = None
    seed: int = field(default="${seed}", metadata=SEEDING)  # type: ignore[assignment]


@dataclass
class EvalConfig:
    split: str = "test"
    majority_k: int = 32  # samples per question for the majority vote; 0 turns it off
    temperature: float = 0.8
    max_examples: Optional[int] = None  # evaluate on the first n examples of the split


@dataclass
class ClusterConfig:
    """Where jobs run. A single run (`python -m irpo`) runs here. A multirun's (`-m`) jobs run one after
    another in this process (`local`), as submitit processes on this machine, all at once
    (`submitit_local`), or as one Slurm job each through the submitit launcher (`slurm`)."""

    name: str = "local"
    nodes: int = 1  # per job; trainer=deepspeed spans them with srun + torchrun
    gpus_per_node: int = 0
    cpus_per_task: int = 2
    mem_gb: Optional[int] = None
    timeout_min: int = 60 * 24
    max_num_timeout: int = 3  # requeues after a timeout or preemption; the job resumes from its run dir
    max_parallel_jobs: int = 64  # slurm: array tasks running at once (cluster=local runs one at a time)
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    setup: list[str] = field(default_factory=list)  # shell lines run before each job: module loads, venv
    additional_parameters: dict[str, Any] = field(default_factory=dict)  # any other sbatch option


@dataclass
class LoggerConfig:
    """Dashboards. The run directory is always the full record; a logger mirrors it as the run goes."""

    name: str = "none"  # none | wandb
    mode: str = "offline"  # wandb: online | offline | disabled
    project: str = "irpo"
    entity: Optional[str] = None
    group: Optional[str] = None  # null = the sweep directory's name (one group per sweep), or the method
    tags: list[str] = field(default_factory=list)
    sample_generations: int = 4  # sample generations shown per iteration


@dataclass
class Config:
    task: Any = MISSING
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    pairs: PairsConfig = field(default_factory=PairsConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig, metadata=RUNTIME_ONLY)
    logger: LoggerConfig = field(default_factory=LoggerConfig, metadata=RUNTIME_ONLY)
    # A preset's name (what it sets is compared key by key); picked on the command line, it names no job dir.
    experiment: Optional[str] = field(default=None, metadata=RUNTIME_ONLY)
    method: str = "irpo"  # the method's name (conf/method/<name>.yaml); the behaviour comes from the fields above
    # The method's rows in report tables (null = the method's name) and where they go, lowest first.
    label: Optional[str] = field(default=None, metadata=RUNTIME_ONLY)
    report_order: int = field(default=0, metadata=RUNTIME_ONLY)
    # The run every other row is tested against (paired tests, the alpha/beta grid): Iterative RPO's.
    report_reference: bool = field(default=False, metadata=RUNTIME_ONLY)
    # A figure of this run's chosen and rejected log-probs over training beside the reference run's, so titled.
    logprob_figure: Optional[str] = field(default=None, metadata=RUNTIME_ONLY)
    # The model iteration 1 starts from: null = the seed model M0; a model dir; a run dir (its last
    # finished iteration); or run:<name>, the run dir <name> beside this one (e.g. a sweep's star job).
    init_from: Optional[str] = None
    iterations: int = field(default=3, metadata=RESUME_MAY_CHANGE)
    seed: int = field(default=0, metadata=SEEDING)
    run_dir: str = field(default="${hydra:runtime.output_dir}", metadata=RUNTIME_ONLY)
    log_level: str = field(default="INFO", metadata=RUNTIME_ONLY)


def tagged_keys(tag: str) -> list[str]:
    """The dotted keys whose field metadata holds `tag`; a tagged section is one key."""
    return [key for key, _ in _tagged_fields(tag, Config, "")]


def resumable(key: str) -> bool:
    """Whether a resumed run may change `key` (a dotted key of the resolved config)."""
    allowed = tagged_keys(RUNTIME_ONLY_TAG) + tagged_keys(RESUME_MAY_CHANGE_TAG)
    return any(key == k or key.startswith(k + ".") for k in allowed)


def flat_config(config: Any, prefix: str = "") -> dict[str, Any]:
    """A resolved config as {dotted key: value}; lists and empty sections are values."""
    if isinstance(config, dict) and config:
        flat: dict[str, Any] = {}
        for key, value in config.items():
            flat.update(flat_config(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): config} if prefix else {}


def changed_keys(before: Any, after: Any) -> list[str]:
    """The dotted keys whose values differ between two resolved configs. A key one of them lacks counts as
    None there, so a run recorded before an optional key existed still matches a config that leaves it unset."""
    a, b = flat_config(before), flat_config(after)
    return sorted(key for key in a.keys() | b.keys() if a.get(key) != b.get(key))


def experiment_identity(config: Any) -> dict[str, Any]:
    """What runs of one experiment share, as {dotted key: value}: the resolved config less its seeds, the keys
    a resumed run may change (where and how fast it runs, how many iterations) and unset keys (a key an older
    run did not record is unset, as in `changed_keys`)."""
    left_out = set(tagged_keys(SEEDING_TAG)) | set(MACHINE_LOCAL_KEYS)
    flat = flat_config(config).items()
    return {key: value for key, value in flat if value is not None and key not in left_out and not resumable(key)}


def experiment_key(config: Any) -> str:
    """`experiment_identity` as one string: runs with equal keys repeat one experiment over seeds."""
    return json.dumps(experiment_identity(config), sort_keys=True, default=str)


def sweep_dir_exclude_keys() -> list[str]:
    """Overrides that leave a sweep job's directory name alone: every runtime-only key, and each key under a
    runtime-only section (Hydra matches an override's key exactly: `cluster=slurm`, `cluster.nodes=2`)."""
    keys = []
    for key, tagged in _tagged_fields(RUNTIME_ONLY_TAG, Config, ""):
        keys += [key, *_keys_under(_section(tagged), key + ".")]
    return keys


def _tagged_fields(tag: str, schema: type, prefix: str) -> list[tuple[str, dataclasses.Field]]:
    found = []
    for f in dataclasses.fields(schema):
        section = _section(f)
        if f.metadata.get(tag):
            found.append((prefix + f.name, f))
        elif section is not None:
            found += _tagged_fields(tag, section, f"{prefix}{f.name}.")
    return found


def _section(f: dataclasses.Field) -> type | None:
    """The dataclass a field holds (a config section), or None for a value."""
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return type(default) if dataclasses.is_dataclass(default) else None


def _keys_under(schema: type | None, prefix: str) -> list[str]:
    keys: list[str] = []
    for f in dataclasses.fields(schema) if schema is not None else ():
        keys += [prefix + f.name, *_keys_under(_section(f), f"{prefix}{f.name}.")]
    return keys


def register_configs() -> None:
    """The root schema, each task's dataclass as `task_schema/<name>` for conf/task/<name>.yaml, and the
    resolver that gives conf/config.yaml the keys left out of sweep dir names."""

    if not OmegaConf.has_resolver("irpo_sweep_dir_exclude_keys"):
        OmegaConf.register_new_resolver("irpo_sweep_dir_exclude_keys", sweep_dir_exclude_keys)
    store = ConfigStore.instance()
    store.store(name="irpo_schema", node=Config)
    for name in TASKS.names():
        store.store(group="task_schema", name=name, node=TASKS.get(name).config_class)


def validate(cfg: DictConfig) -> None:
    """Checks that need more than types: registered names, consistent sizes, a seed model given. Each chosen
    part (task, loss, pair builder, sampler, trainer, logger) checks its own section (`ChecksConfig`)."""
    from irpo.loss import LOSSES
    from irpo.pairs import PAIR_BUILDERS
    from irpo.sampling import SAMPLERS
    from irpo.tracking import TRACKERS
    from irpo.training import TRAINERS, lora
    from irpo.training.step import lr_multiplier

    task_config(cfg.task)
    for registry, name in (
        (LOSSES, cfg.loss.name),
        (PAIR_BUILDERS, cfg.pairs.builder),
        (SAMPLERS, cfg.sampler.name),
        (TRAINERS, cfg.trainer.name),
        (TRACKERS, cfg.logger.name),
    ):
        registry.check(name, cfg)
    check_seed_source(cfg.model)
    if cfg.trainer.batch_size % cfg.trainer.micro_batch_size:
        raise ValueError(
            f"trainer.batch_size ({cfg.trainer.batch_size}) must be a multiple of "
            f"trainer.micro_batch_size ({cfg.trainer.micro_batch_size})"
        )
    if cfg.trainer.retrain_with_heldout and cfg.trainer.eval_every <= 0:
        raise ValueError("trainer.retrain_with_heldout needs checkpoint selection: set trainer.eval_every > 0")
    if cfg.trainer.epochs is not None and cfg.trainer.epochs <= 0:
        raise ValueError(f"trainer.epochs must be > 0 or null (no epoch cap), not {cfg.trainer.epochs}")
    if cfg.trainer.save_every < 0:
        raise ValueError(
            f"trainer.save_every must be >= 0 (0 = no mid-training checkpoints), not {cfg.trainer.save_every}"
        )
    if cfg.trainer.select_examples is not None and cfg.trainer.select_examples <= 0:
        raise ValueError("trainer.select_examples must be > 0 or null (the whole held-out split)")
    if cfg.pairs.data_multiplier < 1 or cfg.pairs.pairs_per_prompt < 1:
        raise ValueError("pairs.pairs_per_prompt and pairs.data_multiplier must be >= 1")
    lora.check_config(cfg.trainer.lora)
    if lora.enabled(cfg.trainer.lora):  # an unknown target module fails now, not after a generation stage
        lora.check_target_modules_of(cfg.model, cfg.trainer.lora)
    lr_multiplier(cfg.trainer, 1)  # an unknown trainer.lr_schedule fails here, not after a generation stage
    from irpo.training.packing import check_packing

    check_packing(cfg.trainer.packing)
    from irpo.training.logprobs import check_chunking

    check_chunking(cfg.trainer)
    if not cfg.generation.temperatures:
        raise ValueError("generation.temperatures needs at least one value")
    if cfg.iterations < 0:
        raise ValueError("iterations must be >= 0")
    if cfg.sampler.shard_prompts < 1:
        raise ValueError(f"sampler.shard_prompts must be >= 1, not {cfg.sampler.shard_prompts}")


def temperature_for(cfg: DictConfig, iteration: int) -> float:
    """Iteration t (1-based) samples at temperatures[t-1]; the last value repeats."""
    temperatures = list(cfg.generation.temperatures)
    return float(temperatures[min(iteration, len(temperatures)) - 1])
