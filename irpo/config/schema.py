"""The structured config: every key's type, default and meaning, so a typo fails when the config is composed.

The YAML files in `conf/` pick options and say only what differs from these defaults, which are the paper's
(Pang et al., 2024) where the paper gives one. Each task's section is its own dataclass (`irpo.tasks`).
Field order is the order of config.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from omegaconf import MISSING

from irpo.setting import setting


@dataclass
class TinyModelConfig:
    """Architecture of the embedded tiny Llama and the short SFT that makes it the seed model M0."""

    hidden_size: int = setting(128, help="Width of the tiny model's residual stream.")
    intermediate_size: int = setting(512, help="Width of the tiny model's MLP.")
    num_layers: int = setting(4, help="Transformer blocks in the tiny model.")
    num_heads: int = setting(
        2, help="Attention heads (head_dim = hidden_size / num_heads = 64, which vLLM's CPU build accepts)."
    )
    max_position_embeddings: int = setting(512, help="Longest sequence the tiny model has positions for.")
    init_seed: int = setting(0, help="Seeds the tiny model's initial weights and its seed SFT.")
    seed_sft_steps: int = setting(
        200,
        help="Optimizer steps of the SFT on gold solutions that makes M0. Short on purpose: M0 stops mid-learning "
        "(constant lr, no decay), so the iterations have room to improve it.",
    )
    seed_sft_lr: float = setting(2e-3, help="Learning rate of the seed SFT.")
    seed_sft_batch_size: int = setting(32, help="Sequences per optimizer step of the seed SFT.")
    seed_sft_schedule: str = setting("constant", help="lr schedule of the seed SFT: constant | cosine.")
    cache_dir: str = setting(
        "${oc.env:IRPO_CACHE,${oc.env:HOME}/.cache/irpo}",
        help="Where built M0s (and imported GGUF models) are cached, keyed by everything that makes them; "
        "$IRPO_CACHE, else ~/.cache/irpo.",
    )


@dataclass
class SeedSFTConfig:
    """model.seed_sft: M0 made from a pretrained model by a short SFT on the task's gold solutions, as the tiny
    model's M0 is made (the paper starts from a model that already answers in the task's format; a small one may
    not). The gold solutions are `task.seed_examples()`: the arithmetic task's own pool, disjoint from its
    splits. Cached, like the tiny model's M0, by everything that makes it."""

    steps: int = setting(0, help="Optimizer steps of the seed SFT; 0 = M0 is the pretrained model as given.")
    lr: float = setting(1e-5, help="Learning rate of the seed SFT (constant after a linear warmup).")
    batch_size: int = setting(16, help="Gold solutions per optimizer step of the seed SFT.")
    warmup_steps: int = setting(2, help="Linear warmup steps of the seed SFT's learning rate.")


@dataclass
class ModelConfig:
    name: str = setting(MISSING, help="The model option's name (conf/model/<name>.yaml), shown in logs and reports.")
    name_or_path: Optional[str] = setting(
        None, help="The seed model M0: a local save_pretrained directory or a hub id; null builds the tiny model."
    )
    gguf_file: Optional[str] = setting(
        None,
        help="Start from a GGUF checkpoint instead: a path, or <package>:<file> inside an installed package. "
        "Imported once into a safetensors directory in the M0 cache (irpo/models/gguf.py).",
    )
    tiny: Optional[TinyModelConfig] = setting(
        None, help="The embedded tiny model's settings (model=tiny); null for a pretrained model."
    )
    seed_sft: SeedSFTConfig = setting(
        help="A pretrained model's seed SFT (off at steps 0); the tiny model's own is model.tiny.seed_sft_*.",
        factory=SeedSFTConfig,
    )
    dtype: str = setting("float32", help="The weights' dtype: float32 | bfloat16 | float16.")
    max_length: int = setting(
        512, help="Prompt + response tokens a sequence may hold; longer pairs are dropped, longer prompts skipped."
    )
    use_chat_template: bool = setting(False, help="Wrap each prompt in the tokenizer's chat template.")


@dataclass
class LossConfig:
    name: str = setting(
        "dpo_nll", help="The objective: dpo_nll (Equation 1: DPO + alpha x NLL) | sft (the NLL term alone)."
    )
    alpha: float = setting(
        1.0, help="Weight of the length-normalised NLL term on the winner (the paper's 1); 0 is standard DPO."
    )
    beta: float = setting(0.1, help="DPO's temperature (the paper's 0.1).")
    nll_normalization: str = setting(
        "sequence",
        help="What the NLL term is divided by: sequence = each winner's own length, -log pi(w|x)/|w| averaged over "
        "the step's pairs (the paper's); token = all winner tokens of the optimizer step, sum -log pi(w|x) / sum |w| "
        "(TRL's and Liger Kernel's). Neither changes with the micro-batch size or the number of ranks.",
    )


@dataclass
class GenerationConfig:
    """How samples are drawn; every sampler backend reads these same values."""

    num_samples: int = setting(30, help="N: samples drawn per training prompt each iteration.")
    temperatures: list[float] = setting(
        factory=lambda: [0.8, 0.8, 1.3, 1.3],
        help="Sampling temperature of each iteration (iteration t uses the t-th; the last one repeats).",
    )
    top_p: float = setting(1.0, help="Nucleus sampling: keep the most likely tokens up to this much probability.")
    max_new_tokens: int = setting(512, help="Token budget of a sample; a sample cut there is dropped from pairs.")
    stop: list[str] = setting(
        factory=list, help="Stop strings (kept in the text) for every sampler, besides the task's answer line."
    )


@dataclass
class HFSamplerConfig:
    """sampler.hf: the model in this process, through transformers (irpo/sampling/hf.py)."""

    batch_size: int = setting(256, resume_may_change=True, help="Sequences per decoding batch.")
    device: str = setting(
        "auto", resume_may_change=True, help="auto (cuda where there is one, else cpu) | cpu | cuda:N."
    )
    decoder: str = setting(
        "loop",
        help="loop: irpo/sampling/decode.py (each prompt prefilled once for its N samples, the KV cache grown in "
        "place, finished rows leave the batch, each sample seeded per prompt so it never depends on its batch), "
        "several times generate's speed on a CPU; generate: transformers' generate, the reference.",
    )
    shared_prefill: bool = setting(
        False,
        help="decoder=generate: run each prompt once and copy its KV cache to its N samples. Off by default so "
        "decoder=generate stays the reference: the random stream is the same, but the prompts' logits come "
        "from another batch shape, which may move a sample's floating-point detail.",
    )
    dtype: str = setting(
        "auto",
        help="The weights' dtype while sampling (irpo/models/precision.py): auto = bfloat16 where the device "
        "multiplies it natively and the model is large enough to gain, else model.dtype; model = model.dtype; "
        "or float32 | bfloat16 | float16. Resolved on the machine: resolved.json.",
    )


@dataclass
class VLLMSamplerConfig:
    """sampler.vllm: vLLM's offline engine in a child process (irpo/sampling/vllm_sampler.py). One engine
    serves every stage on the same model directory (M_t's evaluation, then iteration t+1's samples); it is
    stopped before training, so its GPU memory is free again then."""

    tensor_parallel_size: int = setting(1, help="GPUs one engine shards the model over.")
    gpu_memory_utilization: float = setting(
        0.9, runtime_only=True, help="Share of GPU memory the engine may take (on vLLM's CPU build: of RAM)."
    )
    max_model_len: Optional[int] = setting(None, help="The engine's context length; null = model.max_length.")
    dtype: Optional[str] = setting(
        None, help="Weights' dtype in the engine; null = as sampler.hf.dtype=auto picks, else model.dtype."
    )
    enforce_eager: bool = setting(False, help="No CUDA graphs (slower; less memory and start-up time).")
    chunked_prefill: Optional[bool] = setting(
        None,
        help="null = vLLM's default on GPUs, off on CPUs (vLLM 0.32's CPU build fails on seeded requests whose "
        "prefill is chunked).",
    )
    prefix_caching: bool = setting(
        True, help="A prompt's N samples, and prompts with a common head, share their prefill's KV cache."
    )
    python: Optional[str] = setting(
        None,
        runtime_only=True,
        help="The interpreter that runs vLLM; null = this one. vLLM pins its own torch and transformers, so it "
        "often lives in a venv of its own: sampler.vllm.python=/path/to/vllm-venv/bin/python.",
    )


@dataclass
class SamplerConfig:
    name: str = setting(
        "auto",
        help="auto: vllm on a GPU where vLLM is installed (here or at sampler.vllm.python), else hf (resolved on "
        "the machine: resolved.json); hf: the model in this process; vllm: vLLM's engine in a child process.",
    )
    shard_prompts: int = setting(
        256,
        help="Sampling stages write their rows in shards of this many prompts as they are drawn, so a killed stage "
        "resumes at its first missing shard (irpo/shards.py). Batches never cross a shard's end, so it is part "
        "of what the samples are (a resumed run may not change it).",
    )
    hf: HFSamplerConfig = setting(factory=HFSamplerConfig, help="The hf sampler's own settings.")
    vllm: VLLMSamplerConfig = setting(factory=VLLMSamplerConfig, help="The vLLM sampler's own settings.")


@dataclass
class LoraConfig:
    """trainer.lora: train low-rank adapters on the frozen M_{t-1} instead of every weight. Each iteration
    merges them into the weights, so M_t is a plain model directory."""

    rank: int = setting(0, help="r, the adapters' rank; 0 = LoRA off (full fine-tuning).")
    alpha: float = setting(16.0, help="The adapters' scale: the update is (alpha / rank) x B A.")
    dropout: float = setting(0.0, help="Dropout on the adapters' input, in training only.")
    target_modules: list[str] = setting(
        factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        help="Last component of the linear layers' names to adapt (default: every linear layer of a Llama-style "
        "block); an unknown name fails listing the model's linear layers.",
    )
    save_adapter: bool = setting(
        False, help="Also keep the adapter alone in iter_t/model/adapter/ (M_t is always merged)."
    )


@dataclass
class TorchTrainerConfig:
    """trainer.torch: the plain PyTorch trainer (irpo/training/torch_trainer.py), in this process."""

    device: str = setting(
        "auto", resume_may_change=True, help="auto (cuda where there is one, else cpu) | cpu | cuda:N."
    )
    mixed_precision: str = setting(
        "auto",
        help="Forward passes (training and the reference log-probs, M0's SFT too) under torch.autocast: bf16 = "
        "matmuls and attention in bfloat16, weights, optimizer and loss in float32; none = float32 throughout; "
        "auto = bf16 where the device multiplies bfloat16 natively, else none. Resolved on the machine: "
        "resolved.json and train_summary.json.",
    )


@dataclass
class DeepSpeedTrainerConfig:
    """trainer.deepspeed: ZeRO ranks under torchrun (irpo/training/deepspeed_trainer.py)."""

    num_processes: int = setting(
        0,
        runtime_only=True,
        help="Ranks per node (GPUs, or CPU processes; 0 = one per visible GPU, or 1 without); nodes come from "
        "cluster.nodes. The effective batch stays trainer.batch_size whatever the number of ranks.",
    )
    zero_stage: int = setting(3, help="2: shard optimizer state and gradients; 3: also the parameters.")
    bf16: str = setting("auto", help="auto (where the GPU supports it) | true | false.")
    deepspeed_config: Optional[str] = setting(
        None, help="A JSON file merged over the generated DeepSpeed config (offload, ...)."
    )
    master_port: Optional[int] = setting(
        None, runtime_only=True, help="Rendezvous port across nodes; null = 29500 (one node: a free port)."
    )


@dataclass
class TrainerConfig:
    name: str = setting("torch", help="The training backend: torch (this process) | deepspeed (ZeRO ranks).")
    lr: float = setting(7e-7, help="AdamW's learning rate (the paper's 7e-7).")
    batch_size: int = setting(16, help="Pairs per optimizer step (the paper's 16).")
    micro_batch_size: int = setting(
        16, help="Pairs per forward pass; gradients accumulate up to batch_size (same update, less memory)."
    )
    max_steps: int = setting(
        5000,
        help="The step budget of an iteration (paper: up to 5000 on GSM8K and MATH, 4000 on ARC): as many seeded "
        "passes over the pairs as it needs; checkpoint selection picks a step inside it.",
    )
    epochs: Optional[float] = setting(
        None, help="null = no epoch cap (the paper's protocol); n = also stop after n passes over the pairs."
    )
    warmup_steps: int = setting(0, help="Steps of linear lr warmup.")
    lr_schedule: str = setting("constant", help="After warmup: constant | cosine (decays to 0 at the last step).")
    weight_decay: float = setting(0.0, help="AdamW's weight decay.")
    max_grad_norm: float = setting(1.0, help="Gradients are clipped to this global norm.")
    eval_every: int = setting(
        0,
        help="Checkpoint selection (paper, Section 3.1): every eval_every steps, greedy accuracy on the held-out "
        "split; the best step's weights become M_t. 0 = no selection, keep the last step.",
    )
    select_examples: Optional[int] = setting(
        None, help="Held-out questions that score a checkpoint: null = the whole held-out split; n = its first n."
    )
    retrain_with_heldout: bool = setting(
        False,
        help="After selection, retrain from M_{t-1} on the train + held-out pairs for the selected number of steps "
        "(the paper does on GSM8K and MATH; on ARC it trains on the training set only).",
    )
    lora: LoraConfig = setting(factory=LoraConfig, help="LoRA adapters instead of full fine-tuning.")
    gradient_checkpointing: bool = setting(
        False, help="Recompute activations in backward: less memory, more compute (checkpoint_policy says how much)."
    )
    checkpoint_policy: str = setting(
        "full",
        runtime_only=True,
        help="What gradient checkpointing recomputes (irpo/training/checkpointing.py): full = each decoder layer "
        "whole, keeping only its input (least memory, one more forward of every layer); matmuls = only the "
        "elementwise ops between the matmuls and the attention, keeping their outputs (under half the activations "
        "of no checkpointing; not under ZeRO-3). The same gradients, bit for bit (docs/performance_memory.md).",
    )
    packing: str = setting(
        "shared_prompt",
        help="How forward passes lay out a micro-batch (irpo/training/packing.py): shared_prompt = each pair's "
        "prompt once, then its chosen and rejected responses under a block attention mask, packed without "
        "padding; padded = each sequence in its own right-padded row. Same losses and gradients.",
    )
    logprob_chunk_size: int = setting(
        1024,
        resume_may_change=True,
        help="Response positions whose output-layer logits exist at once (irpo/training/logprobs.py): the log-probs "
        "are taken a chunk at a time and the chunk's logits recomputed in backward, so the [positions x vocabulary] "
        "matrix never exists whole (docs/performance.md); 0 = the full logits (the plain path). Same values to "
        "float rounding.",
    )
    release_freed_memory: bool = setting(
        False,
        runtime_only=True,
        help="On Linux with glibc, fix malloc's trim threshold (irpo/training/malloc.py), so memory a training step "
        "frees goes back to the OS instead of staying resident: SmolLM2's DPO+NLL step at micro-batch 16 with "
        "gradient checkpointing peaks at 3.2 GiB instead of 6.1, at about 0.8x the tokens/s "
        "(docs/performance_memory.md). For a CPU run short of memory; same results.",
    )
    save_every: int = setting(
        250,
        runtime_only=True,
        help="A mid-training checkpoint (weights, optimizer, lr schedule, data position, RNG) every save_every "
        "steps, so a killed or requeued stage continues from it; 0 = off.",
    )
    torch: TorchTrainerConfig = setting(factory=TorchTrainerConfig, help="The torch trainer's own settings.")
    deepspeed: DeepSpeedTrainerConfig = setting(
        factory=DeepSpeedTrainerConfig, help="The DeepSpeed trainer's own settings."
    )


@dataclass
class PairsConfig:
    builder: str = setting(
        "preference",
        help="How training rows are made: preference (winner, loser) pairs | gold_sft (the task's gold CoT) | "
        "self_sft (the model's own correct samples).",
    )
    pairs_per_prompt: int = setting(10, help="K: pairs per question (the paper's 10 on GSM8K).")
    data_multiplier: int = setting(
        1, help="K x this and max_pairs x this: the paper's 'twice as much data' rows use 2."
    )
    include_gold: bool = setting(True, help="The task's gold CoT joins the winners.")
    dedupe: bool = setting(True, help="Identical sampled texts count once among the winners and the losers.")
    distinct_pairs: bool = setting(
        True,
        help="Where the paper's walk over winners and losers would repeat a pair, take the next unused combination "
        "instead, so K pairs are distinct where #winners x #losers >= K; false repeats them as the walk does.",
    )
    max_pairs: Optional[int] = setting(
        None, help="Cap on the pairs of an iteration (x data_multiplier), by seeded random subsample."
    )
    from_run: Optional[str] = setting(
        None,
        help="Train on another run's pairs instead of sampling: run:<name> (the run dir <name> beside this one) or "
        "a run dir; iteration t's pairs.jsonl is copied byte for byte from its iter_t (the paper's D0).",
    )
    seed: int = setting("${seed}", seeding=True, help="Seeds the pairs' random subsample (default: the run's seed).")


@dataclass
class EvalConfig:
    split: str = setting("test", help="The split M_t is evaluated on: test | valid | train.")
    majority_k: int = setting(32, help="Samples per question for the majority vote; 0 turns it off.")
    temperature: float = setting(0.8, help="Sampling temperature of the majority-vote samples.")
    max_examples: Optional[int] = setting(None, help="Evaluate on the split's first n questions; null = all.")


@dataclass
class ClusterConfig:
    """Where jobs run. A single run (`python -m irpo`) runs here. A multirun's (`-m`) jobs run one after
    another in this process (`local`), as submitit processes on this machine, all at once
    (`submitit_local`), or as one Slurm job each through the submitit launcher (`slurm`)."""

    name: str = setting("local", help="local | submitit_local | slurm.")
    nodes: int = setting(1, help="Nodes per job; trainer=deepspeed spans them with srun + torchrun.")
    gpus_per_node: int = setting(0, help="GPUs a job asks for on each node.")
    cpus_per_task: int = setting(2, help="CPUs a job asks for.")
    mem_gb: Optional[int] = setting(None, help="Memory a job asks for; null = the partition's default.")
    timeout_min: int = setting(60 * 24, help="A job's time limit in minutes.")
    max_num_timeout: int = setting(3, help="Requeues after a timeout or preemption; the job resumes from its run dir.")
    max_parallel_jobs: int = setting(64, help="slurm: array tasks running at once (cluster=local runs one at a time).")
    partition: Optional[str] = setting(None, help="Slurm partition.")
    account: Optional[str] = setting(None, help="Slurm account.")
    qos: Optional[str] = setting(None, help="Slurm quality of service.")
    constraint: Optional[str] = setting(None, help="Slurm node constraint.")
    setup: list[str] = setting(factory=list, help="Shell lines run before each job: module loads, a venv.")
    additional_parameters: dict[str, Any] = setting(factory=dict, help="Any other sbatch option, by name.")


@dataclass
class LoggerConfig:
    """Dashboards. The run directory is always the full record; a logger mirrors it as the run goes."""

    name: str = setting("none", help="none | wandb.")
    mode: str = setting("offline", help="wandb: online | offline | disabled.")
    project: str = setting("irpo", help="wandb project.")
    entity: Optional[str] = setting(None, help="wandb entity (user or team); null = your default.")
    group: Optional[str] = setting(
        None, help="wandb group; null = the sweep directory's name (one group per sweep), or the method."
    )
    tags: list[str] = setting(factory=list, help="wandb tags, beside the task's and the method's names.")
    sample_generations: int = setting(4, help="Test questions shown with M_t's greedy output per iteration.")


@dataclass
class Config:
    task: Any = setting(MISSING, help="The task's section: its dataclass in irpo/tasks/ (task=<name>).")
    model: ModelConfig = setting(factory=ModelConfig, help="The seed model M0 and how sequences are encoded.")
    loss: LossConfig = setting(factory=LossConfig, help="The training objective.")
    generation: GenerationConfig = setting(factory=GenerationConfig, help="How training samples are drawn.")
    sampler: SamplerConfig = setting(factory=SamplerConfig, help="The backend that draws samples.")
    trainer: TrainerConfig = setting(factory=TrainerConfig, help="How M_t is trained from M_{t-1}.")
    pairs: PairsConfig = setting(factory=PairsConfig, help="How training rows are made from scored samples.")
    eval: EvalConfig = setting(factory=EvalConfig, help="How each M_t is evaluated.")
    cluster: ClusterConfig = setting(factory=ClusterConfig, runtime_only=True, help="Where jobs run.")
    logger: LoggerConfig = setting(factory=LoggerConfig, runtime_only=True, help="A dashboard mirroring the run.")
    experiment: Optional[str] = setting(
        None, runtime_only=True, help="The preset's name (what it sets is compared key by key); names no job dir."
    )
    method: str = setting(
        "irpo", help="The method's name (conf/method/<name>.yaml); its behaviour comes from the other keys."
    )
    label: Optional[str] = setting(
        None, runtime_only=True, help="The method's rows in report tables; null = the method's name."
    )
    report_order: int = setting(0, runtime_only=True, help="Where the method's rows go in report tables, lowest first.")
    report_reference: bool = setting(
        False,
        runtime_only=True,
        help="The run every other row is tested against (paired tests, the alpha/beta grid): Iterative RPO's.",
    )
    logprob_figure: Optional[str] = setting(
        None,
        runtime_only=True,
        help="A figure of this run's chosen and rejected log-probs over training beside the reference run's, so "
        "titled.",
    )
    init_from: Optional[str] = setting(
        None,
        help="The model iteration 1 starts from: null = the seed model M0; a model dir; a run dir (its last "
        "finished iteration); or run:<name>, the run dir <name> beside this one.",
    )
    skip_seed_sft: bool = setting(
        False,
        help="M0 is the pretrained model as published, without model.seed_sft: the zero_shot_pretrained row. A "
        "method's key, so a preset that sets model.seed_sft cannot switch it back on.",
    )
    iterations: int = setting(3, resume_may_change=True, help="T: iterations of Figure 1's loop.")
    seed: int = setting(
        0, seeding=True, help="Seeds sampling, training and evaluation (each stage derives its own: irpo/seeds.py)."
    )
    run_dir: str = setting(
        "${hydra:runtime.output_dir}",
        runtime_only=True,
        help="Where the run's record goes (the stages resume from it).",
    )
    log_level: str = setting("INFO", runtime_only=True, help="Python logging level of the run's log.")
