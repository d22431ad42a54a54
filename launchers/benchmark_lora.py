"""Peak memory and tokens/s of LoRA vs full fine-tuning (trainer=torch), and the memory this implies for
8B and 70B models, computed from their shapes.

    OMP_NUM_THREADS=1 python launchers/benchmark_lora.py [--model-dir DIR ...] [--steps 8] [--rank 16]
                                                         [--micro-batch 8]

Measured: each (model, mode) trains `--steps` DPO+NLL steps (batch 8, `--micro-batch` pairs a forward pass)
on the embedded task's gold CoT vs the same CoT with a wrong answer, in a process of its own; peak RSS is
that process's ru_maxrss (the final merge and save included), tokens/s the median over the steps after the
first. The default model is the embedded default's M0; --model-dir adds
any other plain model directory (e.g. SmolLM2-135M-Instruct). "state" is what the shapes predict for
weights + gradients + AdamW's two moments in float32 (full: 16 bytes a parameter; LoRA: 4 bytes a frozen
parameter + 16 an adapter parameter); the rest of the peak is the runtime and the activations.

Computed: bf16 weights and mixed-precision AdamW as DeepSpeed runs it (docs/lora.md).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GB = 1e9
# Llama-3.1-8B and Llama-2-70B (the paper's model): hidden, intermediate, layers, heads, kv heads, vocab.
SHAPES = {"8B (Llama-3.1-8B)": (4096, 14336, 32, 32, 8, 128256), "70B (Llama-2-70B)": (8192, 28672, 80, 64, 8, 32000)}


def parameter_counts(model, rank: int, targets: list[str]) -> tuple[int, int]:
    """(all parameters, LoRA parameters at `rank`): each targeted Linear(in, out) adds rank x (in + out)."""
    import torch

    total = sum(p.numel() for p in model.parameters())
    adapters = sum(
        rank * (m.in_features + m.out_features)
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and name.rsplit(".", 1)[-1] in targets
    )
    return total, adapters


def train_once(model_dir: str, pairs_file: Path, mode: str, steps: int, rank: int, micro_batch: int, out: Path) -> None:
    """One measurement, in this (fresh) process."""
    from omegaconf import OmegaConf

    from irpo.config import ClusterConfig, LoraConfig, LossConfig, ModelConfig, TorchTrainerConfig, TrainerConfig
    from irpo.training import build_trainer

    lora = LoraConfig(rank=rank if mode == "lora" else 0, alpha=2.0 * rank)
    cfg = OmegaConf.structured(
        TrainerConfig(
            lr=1e-4,
            batch_size=8,
            micro_batch_size=micro_batch,
            max_steps=steps,
            torch=TorchTrainerConfig(device="cpu"),
            lora=lora,
        )
    )
    trainer = build_trainer(cfg, OmegaConf.structured(ModelConfig(name="bench")), OmegaConf.structured(ClusterConfig()))
    summary = trainer.train(model_dir, json.loads(pairs_file.read_text()), out / "model", LossConfig(), seed=0)
    log = [json.loads(line) for line in (out / "model" / "train_log.jsonl").read_text().splitlines()]
    adapters = summary["trainable_parameters"] if mode == "lora" else 0
    total = summary["parameters"] - adapters
    state = 16 * total if mode == "full" else 4 * total + 16 * adapters
    (out / "result.json").write_text(
        json.dumps(
            {
                "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB,
                "tokens_per_s": statistics.median(r["tokens_per_s"] for r in log[1:]),
                "trainable": summary["trainable_parameters"],
                "parameters": total,
                "state_gb": state / GB,
            }
        )
    )


def measure(model_dirs: list[str], steps: int, rank: int, micro_batch: int) -> list[str]:
    sys.path.insert(0, str(Path(__file__).parent))
    from benchmark_backends import prepare

    rows = [
        "| model | mode | trainable parameters | peak RSS | state (shapes) | tokens/s |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepare(work, num_pairs=64, num_prompts=1)
        named = [("embedded tiny M0", (work / "model_dir").read_text())] + [(Path(d).name, d) for d in model_dirs]
        for name, model_dir in named:
            for mode in ("full", "lora"):
                out = work / f"{len(rows)}"
                out.mkdir()
                subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--one",
                        model_dir,
                        str(work / "pairs.json"),
                        mode,
                        str(steps),
                        str(rank),
                        str(micro_batch),
                        str(out),
                    ],
                    check=True,
                    cwd=ROOT,
                )
                r = json.loads((out / "result.json").read_text())
                label = "full fine-tuning" if mode == "full" else f"LoRA r={rank}"
                rows.append(
                    f"| {name} ({r['parameters'] / 1e6:.1f}M) | {label} | {r['trainable'] / 1e6:.2f}M | "
                    f"{r['peak_rss_gb']:.2f} GB | {r['state_gb']:.2f} GB | {r['tokens_per_s']:.0f} |"
                )
    return rows


def estimate(rank: int, gpus: int = 8, gpu_gb: float = 80) -> list[str]:
    """Per-rank training state in bf16 with mixed-precision AdamW: full 16 bytes a parameter (bf16 weights and
    gradients, fp32 master weights and two moments), LoRA 2 bytes a frozen parameter + 16 an adapter one."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from irpo.config import LoraConfig

    header = (
        f"| model | parameters | LoRA r={rank} parameters | full, 1 GPU | full, ZeRO-3 over {gpus} | "
        f"LoRA, 1 GPU | LoRA, ZeRO-3 over {gpus} |"
    )
    rows = [header, "|---|---|---|---|---|---|---|"]
    for name, (hidden, intermediate, layers, heads, kv_heads, vocab) in SHAPES.items():
        config = LlamaConfig(
            hidden_size=hidden,
            intermediate_size=intermediate,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            vocab_size=vocab,
        )
        with torch.device("meta"):
            total, adapters = parameter_counts(LlamaForCausalLM(config), rank, LoraConfig().target_modules)
        full, lora = 16 * total / GB, (2 * total + 16 * adapters) / GB

        def cell(gb: float) -> str:
            return f"{gb:.1f} GB ({'fits' if gb < gpu_gb else 'does not fit'})"

        rows.append(
            f"| {name} | {total / 1e9:.2f}B | {adapters / 1e6:.0f}M | {cell(full)} | {cell(full / gpus)} | "
            f"{cell(lora)} | {cell(lora / gpus)} |"
        )
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        model_dir, pairs, mode, steps, rank, micro_batch, out = sys.argv[2:9]
        return train_once(model_dir, Path(pairs), mode, int(steps), int(rank), int(micro_batch), Path(out))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", action="append", default=[], help="another plain model directory to measure")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument(
        "--micro-batch", type=int, default=8, help="pairs a forward pass (fewer: less activation memory)"
    )
    parser.add_argument("--estimate-only", action="store_true", help="only the 8B/70B table (no training)")
    args = parser.parse_args()
    if not args.estimate_only:
        print("\n".join(measure(args.model_dir, args.steps, args.rank, args.micro_batch)) + "\n")
    print("\n".join(estimate(args.rank)))


if __name__ == "__main__":
    main()
