"""tensorrt_llm on CPU: TensorRT-LLM's tensor interface over the CPU engine the build installed.

This is not TensorRT-LLM. It is a decoupled Python model with the inputs and outputs of TensorRT-LLM's
``tensorrt_llm`` model (inflight_batcher_llm layout), so the same ensemble and clients work on both targets.
Requests run on the engine and scheduler of ``tritonfleet.pipelines.llm.engines``: OpenVINO's paged-attention
model under continuous batching (chunked prefill, prefix caching, a KV cache of ``kv_cache_mb``), or the
onnxruntime-genai build option in waves. A request whose prompt and ``max_tokens`` could never fit the KV
cache is INVALID_ARG; one that cannot fit now waits; beyond ``max_queue`` waiting sequences a request is
UNAVAILABLE (retry). The request parameter ``priority_level`` (Triton's priority, which a Python model
cannot read; batch jobs send both) orders the waiting sequences and pauses worse levels while better ones
generate.
Streaming responses carry the new tokens, grouped so that no UTF-8 character is split across responses.
A request of batch B is B sequences, each validated and sampled with its own row of every input, as in
TensorRT-LLM v0.14: each row sends its own responses (batch dim 1), tagged with ``batch_index`` when B > 1,
and the request's final flag comes with the last row to finish. Output data types come from the config.
When asked (``return_num_input_tokens`` / ``return_num_output_tokens``, TensorRT-LLM 1.x's names), responses
carry ``num_input_tokens`` (the prompt) and ``num_output_tokens`` (tokens generated so far), as
TensorRT-LLM 1.2.1's backend does on GPU.

A request with ``stop`` true is TensorRT-LLM's stop request: it ends the running requests that carry its
request id (an ensemble's steps carry the ensemble request's id), which finish with what they generated, and
gets an empty final response itself. Triton 24.10 does not pass a cancelled ensemble request on to this
running step, so each request also has a request id of its own, ``stop_request_id``, sent with every
``STOP_ID_EVERY``-th response of each row when asked: the CPU ensemble hands it to postprocessing, which stops
the request (all its rows) when Triton gives it a cancelled step (see postprocessing).

The request parameter ``priority_level`` (batch jobs send 2) is the sequence's priority on the scheduler:
waves of a worse level pause while a better one runs (``tritonfleet.pipelines.llm.scheduler``).

``passthrough_in`` (optional, strings) comes back unchanged as ``passthrough_out`` on each row's first
response (how the ``rag`` ensemble returns its sources beside the streamed text).

Guided decoding (CPU only): ``guided_decoding_guide_type`` ("json", "json_schema", "regex",
"ebnf_grammar") and ``guided_decoding_guide``, tensorrtllm_backend v0.19's inputs, constrain each row's
sampler with llguidance (``tritonfleet.pipelines.llm.guided``); an invalid guide is the request's INVALID_ARG
error.
"""

import gc
import itertools
import json
import math
import os
import threading
import time
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer

from tritonfleet.errors import ClientError, Unavailable
from tritonfleet.pipelines.llm import interface as llm
from tritonfleet.pipelines.llm.engines import open_scheduler
from tritonfleet.pipelines.llm.errors import ENGINE_FAILURE
from tritonfleet.pipelines.llm.guided import GuideCompiler
from tritonfleet.pipelines.llm.sampling import SamplingParams
from tritonfleet.pipelines.llm.sequence import Sequence
from tritonfleet.python_backend import FINAL, check_required, required_inputs, send_each
from tritonfleet.spec import PRIORITY_PARAMETER


def _rows(request, name, batch):
    """An input as ``[batch, n]`` (one flat row per sequence of the request), or None when absent."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    value = tensor.as_numpy()
    if value.ndim == 0 or len(value) != batch:
        raise ClientError(f"{name} has {len(value) if value.ndim else 0} rows, the request {batch}")
    return value.reshape(batch, -1) if value.size else value.reshape(batch, 0)


def _value(rows, i, default):
    """Row ``i``'s scalar of an input read with :func:`_rows`; ``default`` when absent or empty."""
    return default if rows is None or rows[i].size == 0 else rows[i][0].item()


def _word_lists(rows, i, vocab):
    """Row ``i`` of TensorRT-LLM's ``[batch, 2, N]`` word lists (flat ids, end offsets padded with -1) as
    lists of ids."""
    if rows is None or rows[i].size == 0:
        return []
    ids, offsets = rows[i].reshape(2, -1)
    words, start = [], 0
    for end in offsets:
        if end < 0:
            break
        words.append([int(t) for t in ids[start:end]])
        start = max(start, int(end))
    words = [w for w in words if w]
    if any(not 0 <= t < vocab for w in words for t in w):
        raise ClientError(f"word list ids must lie in [0, {vocab})")
    return words


def _text(rows, i):
    """Row ``i``'s string of a TYPE_STRING input read with :func:`_rows`; None when absent or empty."""
    if rows is None or rows[i].size == 0:
        return None
    value = rows[i][0]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _batch_size(request):
    """The request's rows: the batch dim of its inputs (Triton checks that they agree)."""
    for name in (llm.INPUT_IDS.name, llm.INPUT_LENGTHS.name, llm.REQUEST_OUTPUT_LEN.name):
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor is not None and tensor.as_numpy().ndim:
            return len(tensor.as_numpy())
    return 1


STOP_ID_EVERY = 4
KV_REPORT_S = 0.25  # the KV-cache and prefix-cache metrics are set at most this often while sequences run


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.dtypes = {t["name"]: pb_utils.triton_string_to_numpy(t["data_type"]) for t in config["output"]}
        self.required = required_inputs(config)
        version_dir = Path(args["model_repository"]) / args["model_version"]
        engine_dir = version_dir / params.get("engine_dir", "cpu_engine")
        self.max_seq_len = int(params.get("max_seq_len", "2048"))
        self.max_tokens = int(params.get("max_tokens", "1024"))
        self.max_queue = int(params.get("max_queue", "256"))
        self.exclude_input = params.get("exclude_input_in_output", "true") == "true"
        tokenizer = Tokenizer.from_file(str(engine_dir / "tokenizer.json"))

        labels = {"model": args["model_name"], "version": args["model_version"]}
        # The families must outlive their metrics: keep them on the model.
        hist, counter, gauge = (
            pb_utils.MetricFamily.HISTOGRAM,
            pb_utils.MetricFamily.COUNTER,
            pb_utils.MetricFamily.GAUGE,
        )
        family = pb_utils.MetricFamily
        self.families = {
            "ttft": family("tritonfleet_llm_time_to_first_token_seconds", "Arrival to first token", hist),
            "itl": family("tritonfleet_llm_inter_token_latency_seconds", "Time between tokens", hist),
            "tokens": family("tritonfleet_llm_generated_tokens_total", "Tokens generated", counter),
            "prompt": family(
                "tritonfleet_llm_prompt_tokens_total", "Prompt tokens of the sequences submitted", counter
            ),
            "waited": family(
                "tritonfleet_llm_queue_duration_seconds", "Arrival to the sequence's first step", hist
            ),
            "slots": family("tritonfleet_llm_max_sequences", "Sequences the engine may run at once", gauge),
            "kv": family(
                "tritonfleet_llm_kv_cache_used_tokens",
                "KV-cache positions held by the running sequences (used blocks x tokens per block)",
                gauge,
            ),
            "kv_capacity": family(
                "tritonfleet_llm_kv_cache_capacity_tokens",
                "KV-cache positions the engine can hold (its blocks x tokens per block)",
                gauge,
            ),
            "prefix_hits": family(
                "tritonfleet_llm_prefix_cache_hit_tokens_total",
                "Prompt tokens whose KV blocks the prefix cache had",
                counter,
            ),
            "prefix_misses": family(
                "tritonfleet_llm_prefix_cache_miss_tokens_total",
                "Prompt tokens the prefix cache did not have (computed)",
                counter,
            ),
            "queue": family("tritonfleet_llm_queue_size", "Sequences waiting to start", gauge),
            "active": family("tritonfleet_llm_active_sequences", "Sequences started and not finished", gauge),
            "rows": family("tritonfleet_llm_rows_per_step", "Sequences fed by one engine step", hist),
        }
        f = self.families
        self.ttft = f["ttft"].Metric(labels=labels, buckets=[0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16])
        self.itl = f["itl"].Metric(labels=labels, buckets=[0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32])
        self.tokens = f["tokens"].Metric(labels=labels)
        self.prompt_tokens = f["prompt"].Metric(labels=labels)
        self.waited = f["waited"].Metric(
            labels=labels, buckets=[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16]
        )
        self.slots = f["slots"].Metric(labels=labels)
        self.kv = f["kv"].Metric(labels=labels)
        self.kv_capacity = f["kv_capacity"].Metric(labels=labels)
        self.prefix_hits = f["prefix_hits"].Metric(labels=labels)
        self.prefix_misses = f["prefix_misses"].Metric(labels=labels)
        self.queue = f["queue"].Metric(labels=labels)
        self.active = f["active"].Metric(labels=labels)
        self.rows = f["rows"].Metric(labels=labels, buckets=[1, 2, 4, 8, 16, 32])
        self.gauges = (-1, -1)  # (queued, active) last set: the gauges are set when they change
        self.kv_state = (-1, 0, 0)  # (KV positions, prefix tokens looked up, hit) last reported
        self.kv_time = 0.0

        self.scheduler = open_scheduler(engine_dir, params, tokenizer, on_step=self._on_step)
        self.info = info = self.scheduler.engine.info
        self.slots.set(self.scheduler.max_sequences)
        self.kv_capacity.set(self.scheduler.capacity_tokens)
        self.guides = GuideCompiler(engine_dir / "tokenizer.json", info.end_ids, info.vocab_size)
        self.running = {}  # request id or stop_request_id -> its sequences not yet finished
        self.running_lock = threading.Lock()
        self.stop_ids = (f"tritonfleet-{os.getpid()}-{n}" for n in itertools.count())

    def _on_step(self, queued, active, rows):
        """The scheduler's report after a step (from its thread). Each metric call is an IPC round trip, so
        gauges are set when they change, and the KV and prefix figures at most every KV_REPORT_S."""
        if rows:
            self.rows.observe(rows)
        if (queued, active) != self.gauges:
            self.gauges = (queued, active)
            self.queue.set(queued)
            self.active.set(active)
        now = time.monotonic()
        if now - self.kv_time < KV_REPORT_S and active:
            return
        sched, (kv, looked, hit) = self.scheduler, self.kv_state
        prefix = sched.prefix
        if sched.kv_tokens != kv:
            self.kv.set(sched.kv_tokens)
        if prefix.hit_tokens > hit:
            self.prefix_hits.increment(prefix.hit_tokens - hit)
        if prefix.lookup_tokens - prefix.hit_tokens > looked - hit:
            self.prefix_misses.increment(prefix.lookup_tokens - prefix.hit_tokens - (looked - hit))
        self.kv_state, self.kv_time = (sched.kv_tokens, prefix.lookup_tokens, prefix.hit_tokens), now

    def execute(self, requests):
        name = llm.TENSORRT_LLM.name
        send_each(name, requests, self._start, prefix=f"{name}: ")

    def _start(self, request, sender):
        """Validate every row of ``request``, then give its sequences to the scheduler, which sends their
        responses; a stop request is answered at once."""
        check_required(request, self.required)
        batch = _batch_size(request)
        stop = _rows(request, llm.STOP.name, batch)
        if stop is not None and stop.any():
            self._stop(request.request_id())
            sender.send(pb_utils.InferenceResponse([]), flags=FINAL)
            return
        rows = [self._row(request, i, batch) for i in range(batch)]
        if self.scheduler.queue_size + batch > self.max_queue:
            raise Unavailable(
                f"{self.scheduler.queue_size} sequences are waiting for the engine (max_queue "
                f"{self.max_queue}); retry"
            )
        for seq in self._sequences(request, sender, rows):
            self.scheduler.submit(seq)

    def _stop(self, request_id):
        """End the running requests with this id (none running is no error: they may have finished)."""
        if not request_id:
            raise ClientError("a stop request needs the request id of the request to stop")
        with self.running_lock:
            seqs = list(self.running.get(request_id, ()))
        for seq in seqs:
            self.scheduler.halt(seq)

    def _row(self, request, i, batch):
        """Validate row ``i`` of a request: what its sequence needs."""
        try:
            return self._validated(request, i, batch)
        except ClientError as exc:
            raise ClientError(f"row {i}: {exc.message}" if batch > 1 else exc.message) from None

    def _validated(self, request, i, batch):
        def value(name, default):
            return _value(_rows(request, name, batch), i, default)

        ids = _rows(request, llm.INPUT_IDS.name, batch)
        if ids is None or ids[i].size == 0:
            raise ClientError("empty prompt: input_ids has no tokens")
        length = int(value(llm.INPUT_LENGTHS.name, ids[i].size))
        prompt = [int(t) for t in ids[i][: max(length, 1)]]
        vocab = self.info.vocab_size
        if min(prompt) < 0 or max(prompt) >= vocab:
            raise ClientError(f"input_ids must lie in [0, {vocab})")
        max_tokens = int(value(llm.REQUEST_OUTPUT_LEN.name, 0))
        if not 0 < max_tokens <= self.max_tokens:
            raise ClientError(f"max_tokens must be in [1, {self.max_tokens}], got {max_tokens}")
        if len(prompt) + max_tokens > self.max_seq_len:
            raise ClientError(
                f"prompt ({len(prompt)} tokens) + max_tokens ({max_tokens}) exceeds the context of "
                f"{self.max_seq_len} tokens"
            )
        self.scheduler.check_fits(len(prompt), max_tokens)
        for name in (llm.BEAM_WIDTH.name, llm.NUM_RETURN_SEQUENCES.name):
            count = int(value(name, 1))
            if count != 1:
                raise ClientError(f"{name} {count} is not supported on the CPU engine (only 1)")
        end_id = int(value(llm.END_ID.name, -1))
        if end_id >= vocab:
            raise ClientError(f"end_id must be below the vocabulary size {vocab} (or negative: the model's)")
        params = SamplingParams(
            max_tokens=max_tokens,
            end_ids=(end_id,) if end_id >= 0 else self.info.end_ids,
            temperature=float(value(llm.TEMPERATURE.name, 1.0)),
            top_k=int(value(llm.RUNTIME_TOP_K.name, 0)),
            top_p=float(value(llm.RUNTIME_TOP_P.name, 0.0)),
            repetition_penalty=float(value(llm.REPETITION_PENALTY.name, 1.0)),
            presence_penalty=float(value(llm.PRESENCE_PENALTY.name, 0.0)),
            frequency_penalty=float(value(llm.FREQUENCY_PENALTY.name, 0.0)),
            min_tokens=int(value(llm.MIN_TOKENS.name, 0)),
            seed=int(value(llm.SEED.name, 0)),
            stop_words=_word_lists(_rows(request, llm.STOP_WORDS_LIST.name, batch), i, vocab),
            bad_words=_word_lists(_rows(request, llm.BAD_WORDS_LIST.name, batch), i, vocab),
        )
        floats = (params.temperature, params.top_p, params.repetition_penalty, params.presence_penalty,
                  params.frequency_penalty)  # fmt: skip
        if not all(math.isfinite(f) for f in floats):
            raise ClientError("temperature, top_p and the penalties must be finite numbers")
        if params.temperature < 0 or not 0 <= params.top_p <= 1 or params.top_k < 0:
            raise ClientError("temperature must be >= 0, top_p in [0, 1], top_k >= 0")
        if params.repetition_penalty <= 0:
            raise ClientError("repetition_penalty must be > 0")
        stream = bool(value(llm.STREAMING.name, False))
        exclude = bool(value(llm.EXCLUDE_INPUT_IN_OUTPUT.name, self.exclude_input))
        # TensorRT-LLM 1.x's token counts, when asked: the prompt length and the tokens generated so far.
        counts = {
            name: count
            for name, count, asked in (
                (llm.NUM_INPUT_TOKENS.name, len(prompt), value(llm.RETURN_NUM_INPUT_TOKENS.name, False)),
                (llm.NUM_OUTPUT_TOKENS.name, 0, value(llm.RETURN_NUM_OUTPUT_TOKENS.name, False)),
            )
            if asked
        }
        guide_type = _text(_rows(request, llm.GUIDE_TYPE.name, batch), i)
        guide = None
        if guide_type:  # absent or "": this row is not guided (other rows of its batch may be)
            text = _text(_rows(request, llm.GUIDE.name, batch), i) or ""
            guide = self.guides.compile(guide_type, text)  # this row's own grammar state
        return prompt, params, stream, [] if exclude or stream else prompt, counts, guide

    def _sequences(self, request, sender, rows):
        """One scheduler sequence per row. Each row streams its own responses, tagged with ``batch_index``
        when the request has several rows (as TensorRT-LLM's model does); the last row to finish sends the
        request's final flag."""
        requested = request.requested_output_names()
        tag = len(rows) > 1 and llm.BATCH_INDEX.name in requested
        stop_id = next(self.stop_ids)  # stops every row: a cancelled ensemble may pass only one row's on
        want_stop_id = llm.STOP_REQUEST_ID.name in requested
        ids = [i for i in (request.request_id(), stop_id) if i]
        left = [len(rows)]  # rows still generating
        passthrough = _rows(request, llm.PASSTHROUGH_IN.name, len(rows))
        priority = _priority(request)
        seqs = []
        for index, (prompt, params, stream, prefix, counts, guide) in enumerate(rows):
            seq = Sequence(prompt, params, emit=None, cancelled=sender.is_cancelled, stream=stream)
            seq.guide = guide
            seq.priority = priority
            self.prompt_tokens.increment(len(prompt))
            with self.running_lock:
                for i in ids:
                    self.running.setdefault(i, set()).add(seq)
            seq.emit = self._emitter(
                seq,
                sender,
                ids,
                left,
                prefix,
                counts,
                stop_id if want_stop_id else None,
                index if tag else None,
                None if passthrough is None else passthrough[index],
            )
            seqs.append(seq)
        return seqs

    def _emitter(self, seq, sender, ids, left, prefix, counts, stop_id, batch_index, passthrough):
        state = {"last": None, "responses": 0, "passthrough": passthrough, "waited": False}

        def emit(tokens, logprobs, reason):
            now = time.monotonic()
            if not state["waited"] and seq.started is not None:  # its first call since it started
                state["waited"] = True
                self.waited.observe(seq.started - seq.arrival)
            if tokens and state["last"] is None:
                self.ttft.observe(now - seq.arrival)
            elif tokens:
                self.itl.observe((now - state["last"]) / len(tokens))
            if tokens:
                state["last"] = now
                self.tokens.increment(len(tokens))
            if llm.NUM_OUTPUT_TOKENS.name in counts:
                counts[llm.NUM_OUTPUT_TOKENS.name] += len(tokens)
            last_row = False
            if reason is not None:
                with self.running_lock:
                    for i in ids:
                        same_id = self.running.get(i, set())
                        same_id.discard(seq)
                        if not same_id:
                            self.running.pop(i, None)
                    left[0] -= 1
                    last_row = left[0] == 0
            flags = FINAL if last_row else 0
            if reason is not None and reason.startswith("error"):
                message = f"{ENGINE_FAILURE}: {reason.removeprefix('error: ')}"
                error = pb_utils.TritonError(message, pb_utils.TritonError.INTERNAL)
                sender.send(pb_utils.InferenceResponse(error=error), flags=flags)
            elif reason == "cancelled":
                if last_row:
                    sender.send(flags=FINAL)
            else:
                # stop_request_id on every STOP_ID_EVERY-th response only: postprocessing checks for a cancel
                # (an IPC round trip, ~0.5 ms) when it comes, so a dropped stream stops within that many.
                every = stop_id is not None and state["responses"] % STOP_ID_EVERY == 0
                state["responses"] += 1
                response = self._response(
                    prefix + tokens,
                    logprobs,
                    counts,
                    stop_id if every else None,
                    batch_index,
                    state["passthrough"],
                )
                state["passthrough"] = None  # on the first response only
                sender.send(response, flags=flags)

        return emit

    def _response(self, tokens, logprobs, counts, stop_id, batch_index, passthrough=None):
        """One response: batch dim 1, one beam."""
        values = {
            llm.OUTPUT_IDS.name: [[tokens]],
            llm.SEQUENCE_LENGTH.name: [[len(tokens)]],
            llm.CUM_LOG_PROBS.name: [[sum(logprobs)]],
            llm.OUTPUT_LOG_PROBS.name: [[logprobs]],
            **{name: [[count]] for name, count in counts.items()},
        }
        if batch_index is not None:
            values[llm.BATCH_INDEX.name] = [[batch_index]]
        if stop_id is not None:
            values[llm.STOP_REQUEST_ID.name] = [[stop_id.encode()]]
        if passthrough is not None:
            values[llm.PASSTHROUGH_OUT.name] = [list(passthrough)]
        return pb_utils.InferenceResponse(
            [pb_utils.Tensor(name, np.array(v, dtype=self.dtypes[name])) for name, v in values.items()]
        )

    def finalize(self):
        self.scheduler.stop()
        # Free the metrics and the finished requests' response senders (a sequence and its emit closure form a
        # cycle) now, while the stub still reaches Triton: left to interpreter exit, their destructors write
        # to shared memory already unmapped and the stub segfaults on shutdown (seen with gdb).
        del self.ttft, self.itl, self.tokens, self.queue, self.active, self.rows
        del self.prompt_tokens, self.waited, self.kv, self.slots, self.kv_capacity
        del self.prefix_hits, self.prefix_misses
        self.families.clear()
        gc.collect()


def _priority(request):
    """The request parameter ``priority_level``: Triton's priority level, which a Python model cannot read
    (batch jobs send both, ``tritonfleet.spec``); 0 when absent or not a number."""
    try:
        value = json.loads(request.parameters() or "{}").get(PRIORITY_PARAMETER, 0)
        return max(int(value), 0)
    except (ValueError, TypeError, AttributeError):
        return 0
