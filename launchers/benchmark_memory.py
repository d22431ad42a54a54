"""Training memory and speed of response log-probs: full logits (trainer.logprob_chunk_size=0) against chunked.

    python launchers/benchmark_memory.py [--models smollm2 vocab152k] [--micro-batches 4 8 16] [--repeats 2]
        [--steps 1] [--chunk-size 1024] [--threads 1] [--max-rss-gb 12] [--liger-path DIR] [--only REGEX]

Every arm runs in a child process of its own, one at a time, each repeat in a rotating order:
- train arms: DPO+NLL training steps of the trainer (irpo/training/step.py's micro_batch_loss, backward, gradient
  clipping, AdamW; trainer.torch.mixed_precision=auto, so bf16 autocast on a CPU with bf16 instructions;
  trainer.packing=shared_prompt), one micro-batch a step, under each gradient checkpointing policy (off, full,
  matmuls: trainer.checkpoint_policy, irpo/training/checkpointing.py): a warm-up step of one pair, then --steps
  steps of a micro-batch. The reference log-probs are zeros (constants of the loss, they change neither memory
  nor speed). Peak RSS is the child's ru_maxrss (model, AdamW state, Python runtime included); tokens/s counts
  the tokens of both sequences of each pair over the wall seconds of the steps after the warm-up, tokens/CPU-s
  over their CPU seconds (steadier than wall time on a shared machine). The parent polls each child's RSS and
  stops it above --max-rss-gb (the machine is shared),
  reporting the arm as stopped.
  The path `chunked+released` is `chunked` with trainer.release_freed_memory=true (glibc's trim threshold fixed:
  irpo/training/malloc.py); the other train arms leave glibc's thresholds dynamic, the trainer's default.
- log-prob arms: the log-prob computation's own peak. The same micro-batch and loss through the same model with
  its decoder layers removed (embedding, final norm, output layer, log-probs, loss, backward), with gradient
  buffers allocated beforehand and glibc returning freed blocks at once (MALLOC_MMAP_THRESHOLD_), so the rise of
  the resident set over one step (VmHWM after it minus VmRSS before it; the second of two steps) is what that
  computation holds at its peak. With the output weight frozen: the logits, their log-softmax and what backward
  keeps and makes of them; with it trained, also its V x H gradient (tied to the embedding, it waits in autograd's
  buffer for the embedding's), which both paths make.
- liger: Liger Kernel's chunked DPO loss (LigerFusedLinearDPOLoss, NLL on, no reference model: it takes a live
  reference model's hidden states or none, not precomputed log-probs) on the same pairs, right-padded as it
  expects, when `liger_kernel` imports (pip install liger-kernel, or --liger-path DIR with it installed there).

Models: `smollm2`, SmolLM2-135M-Instruct (49k vocabulary, tied embeddings) on GSM8K-shaped pairs as
launchers/benchmark_speed.py builds them (needs IRPO_SHARED_DIR); `vocab152k`, a Llama with Qwen2.5-0.5B's
vocabulary and width (151,936 x 896, tied) and 4 decoder layers, random weights built here, on pairs of random
tokens: a 256-token prompt and two 768-token responses (1k-token sequences).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30
BETA, ALPHA, LR = 0.1, 1.0, 1e-5
VOCAB152K = {
    "vocab_size": 151936,
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 4,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": True,
}
PROMPT_TOKENS, RESPONSE_TOKENS = 256, 768  # vocab152k pairs: two 1k-token sequences
# chunked, with trainer.release_freed_memory=true: glibc's trim threshold fixed (the other arms leave it dynamic)
RELEASED = "chunked+released"


# ---- the child: one arm ----


def load_arm_model(arm: dict):
    """(model, pair data) of the arm: the model in float32, its pairs encoded as the trainer encodes them."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig

    from irpo.models.loading import load_model, load_tokenizer
    from irpo.models.tokens import EncodedSequence
    from irpo.training.logps import PairData, encode_pairs

    chunk, count = arm["chunk_size"], arm["micro_batch"] * arm["steps"]
    if arm["model"] == "smollm2":
        model_dir, pairs = smollm2_model_and_pairs(count)
        if arm["kind"] == "logprobs":  # the same model without its decoder layers
            config = AutoConfig.from_pretrained(model_dir)
            config.num_hidden_layers = 0
            model = AutoModelForCausalLM.from_config(config)
        else:
            model = load_model(model_dir)
        data = encode_pairs(load_tokenizer(model_dir), pairs, "dpo_nll", "shared_prompt", chunk)
        return model, data, load_tokenizer(model_dir).pad_token_id
    layers = 0 if arm["kind"] == "logprobs" else 4
    config = LlamaConfig(**VOCAB152K, num_hidden_layers=layers)  # type: ignore[arg-type]  # ints, by design
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    tokens = torch.randint(3, config.vocab_size, (count, PROMPT_TOKENS + 2 * RESPONSE_TOKENS), generator=None)
    chosen, rejected = [], []
    for row in tokens.tolist():
        prompt, first, second = row[:PROMPT_TOKENS], row[PROMPT_TOKENS:-RESPONSE_TOKENS], row[-RESPONSE_TOKENS:]
        chosen.append(EncodedSequence(prompt + first, PROMPT_TOKENS))
        rejected.append(EncodedSequence(prompt + second, PROMPT_TOKENS))
    return model, PairData(chosen, rejected, True, packing="shared_prompt", logprob_chunk_size=chunk), 0


def smollm2_model_and_pairs(count: int):
    import importlib.util

    spec = importlib.util.spec_from_file_location("benchmark_speed", ROOT / "launchers" / "benchmark_speed.py")
    assert spec is not None and spec.loader is not None
    speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speed)
    return speed.smollm2_model_and_pairs(count)


def train_arm(arm: dict) -> dict:
    """Peak RSS and tokens/s of `steps` + 1 training steps of one micro-batch each (the first untimed)."""
    import torch
    from omegaconf import OmegaConf

    from irpo.config import LossConfig
    from irpo.models.precision import autocast, autocast_dtype
    from irpo.training.checkpointing import enable_checkpointing
    from irpo.training.step import micro_batch_loss

    if arm["path"] == RELEASED:
        from irpo.training.malloc import release_freed_memory

        release_freed_memory()
    cpu = torch.device("cpu")
    mixed = autocast_dtype("auto", cpu)
    model, data, pad_id = load_arm_model(arm)
    if arm["gradient_checkpointing"] != "off":
        enable_checkpointing(model, arm["gradient_checkpointing"])
    if arm["kind"] == "liger":  # it scores no reference (see the module's docstring)
        return liger_arm(arm, model, data, pad_id, mixed)
    # the reference log-probs are constants of the loss: their values change neither memory nor speed
    data.reference = {side: torch.zeros(len(data.chosen)) for side in ("chosen", "rejected")}
    loss_cfg = OmegaConf.structured(LossConfig(name="dpo_nll", alpha=ALPHA, beta=BETA))

    def loss_and_tokens(idx: list[int]):
        with autocast(mixed, cpu):
            losses, _, count = micro_batch_loss(model, idx, data, loss_cfg, pad_id, "cpu")
        return losses.sum() / len(idx), count

    return {**timed_steps(arm, model, loss_and_tokens), "mixed_precision": str(mixed)}


def timed_steps(arm: dict, model, loss_and_tokens) -> dict:
    """Peak RSS, tokens/s and tokens per CPU-second of the arm's training steps (AdamW, gradients clipped), each
    step's loss and token count from `loss_and_tokens(pair indices)`; the warm-up step is not timed."""
    import resource

    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    model.train()
    seconds, cpu_seconds, tokens = [], [], []
    for idx in warm_up_then_steps(arm):
        started, cpu_started = time.perf_counter(), time.process_time()
        loss, count = loss_and_tokens(idx)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        seconds.append(time.perf_counter() - started)
        cpu_seconds.append(time.process_time() - cpu_started)
        tokens.append(count)
    return {
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB,
        "tokens_per_s": sum(tokens[1:]) / sum(seconds[1:]),
        "tokens_per_cpu_s": sum(tokens[1:]) / sum(cpu_seconds[1:]),
    }


def warm_up_then_steps(arm: dict) -> list[list[int]]:
    """A warm-up step of one pair (one-time costs: allocations, kernel choices), then `steps` micro-batches."""
    size = arm["micro_batch"]
    return [[0]] + [list(range(i * size, (i + 1) * size)) for i in range(arm["steps"])]


def liger_arm(arm: dict, model, data, pad_id: int, mixed) -> dict:
    """Liger's LigerFusedLinearDPOLoss over the decoder's hidden states of [chosen; rejected], right-padded."""
    import torch
    from liger_kernel.chunked_loss import LigerFusedLinearDPOLoss

    from irpo.models.precision import autocast
    from irpo.training.data import collate

    cpu = torch.device("cpu")
    loss_fn = LigerFusedLinearDPOLoss(
        beta=BETA, alpha=ALPHA, compute_nll_loss=True, compiled=False, use_ref_model=False
    )

    def loss_and_tokens(idx: list[int]):
        sequences = [data.chosen[i] for i in idx] + [data.rejected[i] for i in idx]
        batch = collate(sequences, pad_id)
        with autocast(mixed, cpu):
            hidden = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            target = batch["input_ids"][:, 1:].masked_fill(~batch["response_mask"][:, 1:], -100)
            return loss_fn(model.lm_head.weight, hidden[:, :-1], target)[0], sum(len(s.input_ids) for s in sequences)

    return {**timed_steps(arm, model, loss_and_tokens), "mixed_precision": str(mixed)}


def logprob_arm(arm: dict) -> dict:
    """The rise of the resident set over one DPO+NLL step of the decoder-less model (the second of two): with the
    output weight trained (its V x H gradient, which both paths make, included), then with it frozen (the logits
    and what backward keeps and makes of them, the hidden states' gradients)."""
    import torch
    from omegaconf import OmegaConf

    from irpo.config import LossConfig
    from irpo.models.precision import autocast, autocast_dtype
    from irpo.training.step import micro_batch_loss

    cpu = torch.device("cpu")
    mixed = autocast_dtype("auto", cpu)
    model, data, pad_id = load_arm_model(arm)
    idx = list(range(arm["micro_batch"]))
    data.reference = {side: torch.zeros(len(data.chosen)) for side in ("chosen", "rejected")}
    loss_cfg = OmegaConf.structured(LossConfig(name="dpo_nll", alpha=ALPHA, beta=BETA))
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    rises = {}
    for frozen in (False, True):
        model.get_output_embeddings().weight.requires_grad_(not frozen)  # tied: the embedding's too
        for _ in range(2):
            before = resident_kib("VmRSS")
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
            with autocast(mixed, cpu):
                losses, _, _ = micro_batch_loss(model, idx, data, loss_cfg, pad_id, "cpu")
            (losses.sum() / len(idx)).backward()
            del losses
            rises[frozen] = (resident_kib("VmHWM") - before) / 2**20
    positions = sum(data.chosen[i].response_length + data.rejected[i].response_length for i in idx)
    return {"logprob_peak_gib": rises[True], "with_weight_gradient_gib": rises[False], "response_tokens": positions}


def resident_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    assert match is not None
    return int(match.group(1))


def child(arm: dict) -> None:
    import torch

    torch.set_num_threads(arm["threads"])
    result = logprob_arm(arm) if arm["kind"] == "logprobs" else train_arm(arm)
    print("RESULT " + json.dumps(result), flush=True)


# ---- the parent: arms one at a time, tables ----


def run_arm(arm: dict, max_rss_gib: float, liger_path: str | None) -> dict:
    """The child's result, or {"stopped": ...} when its RSS passed max_rss_gib or it failed."""
    env = {**os.environ, "OMP_NUM_THREADS": str(arm["threads"]), "PYTHONPATH": str(ROOT)}
    if liger_path:
        env["PYTHONPATH"] += os.pathsep + liger_path
    if arm["kind"] == "logprobs":
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"  # freed tensors leave the resident set at once
    command = [sys.executable, __file__, "--child", json.dumps(arm)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    highest = 0.0
    while process.poll() is None:
        try:
            rss = int(re.findall(r"VmRSS:\s+(\d+)", Path(f"/proc/{process.pid}/status").read_text())[0]) / 2**20
        except (OSError, IndexError):
            rss = 0.0
        highest = max(highest, rss)
        if rss > max_rss_gib:
            process.kill()
            process.wait()
            return {"stopped": f"> {max_rss_gib:g} GiB"}
        time.sleep(0.2)
    out, err = process.communicate()
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    if process.returncode < 0:  # the kernel's out-of-memory killer sends SIGKILL
        return {"stopped": f"killed by signal {-process.returncode} at {highest:.1f} GiB"}
    if process.returncode != 0 or not lines:
        return {"stopped": f"failed: {err.strip().splitlines()[-1] if err.strip() else process.returncode}"}
    return json.loads(lines[-1].removeprefix("RESULT "))


def liger_runs(liger_path: str | None) -> str | None:
    """None where liger_kernel's chunked DPO loss imports, else why not."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), liger_path) if p)}
    check = "from liger_kernel.chunked_loss import LigerFusedLinearDPOLoss"
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=env)
    return None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["?"])[-1]


def arms_of(args) -> list[dict]:
    arms = []
    for model in args.models:
        batches = args.micro_batches if model == "smollm2" else args.micro_batches_152k
        for micro_batch in batches:
            for path, chunk in (("full", 0), ("chunked", args.chunk_size)):
                arms.append(arm(model, "logprobs", path, chunk, micro_batch, False, args))
        for checkpointing in ("full", "matmuls", "off"):
            for micro_batch in batches:
                liger = [("liger", 0)] if args.liger and checkpointing != "matmuls" else []
                full = [("full", 0)] if checkpointing != "matmuls" else []
                for path, chunk in (*full, ("chunked", args.chunk_size), (RELEASED, args.chunk_size), *liger):
                    kind = "liger" if path == "liger" else "train"
                    arms.append(arm(model, kind, path, chunk, micro_batch, checkpointing, args))
    return arms


def arm(model, kind, path, chunk, micro_batch, checkpointing, args) -> dict:
    return {
        "model": model,
        "kind": kind,
        "path": path,
        "chunk_size": chunk,
        "micro_batch": micro_batch,
        "gradient_checkpointing": checkpointing,
        "steps": args.steps,
        "threads": args.threads,
    }


def cell(results: list[dict], key: str, digits: int) -> str:
    values = [r[key] for r in results if key in r]
    stopped = [r["stopped"] for r in results if "stopped" in r]
    text = " / ".join(f"{v:.{digits}f}" for v in values)
    return text + (f" (stopped: {stopped[0]})" if stopped else "")


def median(results: list[dict], key: str) -> float | None:
    values = [r[key] for r in results if key in r]
    return statistics.median(values) if values else None


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def tables(results: dict[str, list[dict]], arms: list[dict]) -> str:
    key = arm_key
    lines = []
    for model in dict.fromkeys(a["model"] for a in arms):
        lines += [
            f"\n{model}: training steps (DPO+NLL, one micro-batch a step; each run's value, run 1 / run 2 ...)",
            "| micro-batch | grad. ckpt | path | peak RSS GiB | tokens/s | tokens/CPU-s | peak: full / this "
            "| tokens/s: this / full |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for a in arms:
            if a["model"] != model or a["kind"] == "logprobs":
                continue
            full = results.get(key({**a, "path": "full", "kind": "train", "chunk_size": 0}), [])
            mine = results[key(a)]
            lines.append(
                f"| {a['micro_batch']} | {a['gradient_checkpointing']} | {a['path']} | "
                f"{cell(mine, 'peak_rss_gib', 2)} | {cell(mine, 'tokens_per_s', 0)} | "
                f"{cell(mine, 'tokens_per_cpu_s', 0)} | "
                f"{ratio(median(full, 'peak_rss_gib'), median(mine, 'peak_rss_gib'))} | "
                f"{ratio(median(mine, 'tokens_per_s'), median(full, 'tokens_per_s'))} |"
            )
        lines += [
            f"\n{model}: the log-prob computation's own peak (GiB; decoder layers removed, one step's rise): the logits"
            " and what backward keeps of them (output weight frozen); then with the output weight's gradient too",
            "| micro-batch | response tokens | full | chunked | full / chunked | full, with weight gradient | chunked, "
            "with weight gradient | full / chunked |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for a in arms:
            if a["model"] != model or a["kind"] != "logprobs" or a["path"] != "full":
                continue
            full, chunked = results[key(a)], results.get(key({**a, "path": "chunked"}), [])
            tokens = next((r["response_tokens"] for r in full + chunked if "response_tokens" in r), "-")
            lines.append(
                f"| {a['micro_batch']} | {tokens} | {cell(full, 'logprob_peak_gib', 3)} | "
                f"{cell(chunked, 'logprob_peak_gib', 3)} | "
                f"{ratio(median(full, 'logprob_peak_gib'), median(chunked, 'logprob_peak_gib'))} | "
                f"{cell(full, 'with_weight_gradient_gib', 3)} | {cell(chunked, 'with_weight_gradient_gib', 3)} | "
                f"{ratio(median(full, 'with_weight_gradient_gib'), median(chunked, 'with_weight_gradient_gib'))} |"
            )
    return "\n".join(lines)


def arm_key(a: dict) -> str:
    return f"{a['model']}|{a['kind']}|{a['path']}|{a['micro_batch']}|{a['gradient_checkpointing']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--models", nargs="+", choices=("smollm2", "vocab152k"), default=["smollm2", "vocab152k"])
    parser.add_argument("--micro-batches", nargs="+", type=int, default=[4, 8, 16], help="pairs, smollm2")
    parser.add_argument("--micro-batches-152k", nargs="+", type=int, default=[1, 2], help="pairs, vocab152k")
    parser.add_argument("--chunk-size", type=int, default=1024, help="trainer.logprob_chunk_size of the chunked arms")
    parser.add_argument("--steps", type=int, default=1, help="timed steps per train arm, after a warm-up step")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per arm (1: the cores are shared)")
    parser.add_argument("--max-rss-gb", type=float, default=12.0, help="stop an arm whose RSS passes this (GiB)")
    parser.add_argument("--liger-path", default=None, help="a directory with liger_kernel installed (pip --target)")
    parser.add_argument("--only", default=None, help="regex over arm keys (model|kind|path|micro-batch|ckpt)")
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    why_not = liger_runs(args.liger_path)
    args.liger = why_not is None
    print(f"Liger Kernel: {'runs' if why_not is None else f'skipped: {why_not}'}")
    arms = [a for a in arms_of(args) if not args.only or re.search(args.only, arm_key(a))]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    print(
        f"commit {commit.stdout.strip()}; {time.strftime('%Y-%m-%d %H:%M')}; {args.threads} threads; load "
        f"{os.getloadavg()[0]:.2f}; {len(arms)} arms x {args.repeats} repeats",
        flush=True,
    )
    results: dict[str, list[dict]] = {arm_key(a): [] for a in arms}
    for repeat in range(args.repeats):
        order = arms[::-1] if repeat % 2 else arms  # each pair of arms runs in both orders
        for a in order:
            started = time.perf_counter()
            result = run_arm(a, args.max_rss_gb, args.liger_path)
            results[arm_key(a)].append(result)
            print(
                f"  repeat {repeat + 1}: {arm_key(a)}: {json.dumps(result)} ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    print(f"load after: {os.getloadavg()[0]:.2f}")
    print(tables(results, arms))


if __name__ == "__main__":
    main()
