"""tensorrt_llm on CPU: TensorRT-LLM's tensor interface over the onnxruntime-genai CPU engine.

This is not TensorRT-LLM. It is a decoupled Python model with the inputs and outputs of TensorRT-LLM's
``tensorrt_llm`` model (inflight_batcher_llm layout), so the same ensemble and clients work on both targets.
Requests run on the wave scheduler of ``tritonfleet.pipelines.llm`` (concurrent requests share decode steps).
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

from tritonfleet.errors import ClientError
from tritonfleet.pipelines.llm import interface as llm
from tritonfleet.pipelines.llm.engine import CpuEngine
from tritonfleet.pipelines.llm.errors import ENGINE_FAILURE
from tritonfleet.pipelines.llm.guided import GuideCompiler
from tritonfleet.pipelines.llm.sampling import SamplingParams
from tritonfleet.pipelines.llm.scheduler import Sequence, WaveScheduler
from tritonfleet.python_backend import FINAL, check_required, required_inputs, send_each


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


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.dtypes = {t["name"]: pb_utils.triton_string_to_numpy(t["data_type"]) for t in config["output"]}
        self.required = required_inputs(config)
        version_dir = Path(args["model_repository"]) / args["model_version"]
        engine_dir = version_dir / params.get("engine_dir", "cpu_engine")
        self.engine = CpuEngine(engine_dir, int(params.get("intra_op_threads", "2")))
        self.max_seq_len = int(params.get("max_seq_len", "2048"))
        self.max_tokens = int(params.get("max_tokens", "1024"))
        self.exclude_input = params.get("exclude_input_in_output", "true") == "true"
        tokenizer = Tokenizer.from_file(str(engine_dir / "tokenizer.json"))
        info = self.engine.info
        self.guides = GuideCompiler(engine_dir / "tokenizer.json", info.end_ids, info.vocab_size)

        labels = {"model": args["model_name"], "version": args["model_version"]}
        # The families must outlive their metrics: keep them on the model.
        hist, counter, gauge = (
            pb_utils.MetricFamily.HISTOGRAM,
            pb_utils.MetricFamily.COUNTER,
            pb_utils.MetricFamily.GAUGE,
        )
        self.families = {
            "ttft": pb_utils.MetricFamily(
                "tritonfleet_llm_time_to_first_token_seconds", "Arrival to first token", hist
            ),
            "itl": pb_utils.MetricFamily(
                "tritonfleet_llm_inter_token_latency_seconds", "Time between tokens", hist
            ),
            "tokens": pb_utils.MetricFamily(
                "tritonfleet_llm_generated_tokens_total", "Tokens generated", counter
            ),
            "prompt": pb_utils.MetricFamily(
                "tritonfleet_llm_prompt_tokens_total", "Prompt tokens of the sequences submitted", counter
            ),
            "waited": pb_utils.MetricFamily(
                "tritonfleet_llm_queue_duration_seconds", "Arrival to the start of the sequence's wave", hist
            ),
            "slots": pb_utils.MetricFamily(
                "tritonfleet_llm_max_sequences", "Sequences the running waves may hold at once", gauge
            ),
            "kv": pb_utils.MetricFamily(
                "tritonfleet_llm_kv_cache_used_tokens",
                "KV-cache positions held by the running sequences",
                gauge,
            ),
            "kv_capacity": pb_utils.MetricFamily(
                "tritonfleet_llm_kv_cache_capacity_tokens", "KV-cache positions the engine can hold", gauge
            ),
            "queue": pb_utils.MetricFamily(
                "tritonfleet_llm_queue_size", "Requests waiting for a wave", gauge
            ),
            "active": pb_utils.MetricFamily(
                "tritonfleet_llm_active_sequences", "Sequences in the running waves", gauge
            ),
            "rows": pb_utils.MetricFamily(
                "tritonfleet_llm_rows_per_step", "Live sequences decoded by one step of a wave", hist
            ),
        }
        self.ttft = self.families["ttft"].Metric(
            labels=labels, buckets=[0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16]
        )
        self.itl = self.families["itl"].Metric(
            labels=labels, buckets=[0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32]
        )
        self.tokens = self.families["tokens"].Metric(labels=labels)
        self.prompt_tokens = self.families["prompt"].Metric(labels=labels)
        self.waited = self.families["waited"].Metric(
            labels=labels, buckets=[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16]
        )
        self.kv = self.families["kv"].Metric(labels=labels)
        # No KV pool here: each wave's rows hold a cache of the wave's max length (the wave scheduler), so the
        # most the waves hold is max_rows rows of max_seq_len; a paged engine reports its blocks instead.
        max_rows = int(params.get("max_rows", "16"))
        self.slots = self.families["slots"].Metric(labels=labels)
        self.slots.set(max_rows)
        self.kv_capacity = self.families["kv_capacity"].Metric(labels=labels)
        self.kv_capacity.set(max_rows * self.max_seq_len)
        self.queue = self.families["queue"].Metric(labels=labels)
        self.active = self.families["active"].Metric(labels=labels)
        self.rows = self.families["rows"].Metric(labels=labels, buckets=[1, 2, 4, 8, 16])
        self.gauges = (-1, -1, -1)  # (queued, active, KV positions) last set: set when they change

        self.scheduler = WaveScheduler(
            self.engine,
            tokenizer,
            max_batch=int(params.get("max_batch", "8")),
            bucket_tokens=int(params.get("bucket_tokens", "64")),
            max_wait_ms=float(params.get("max_wait_ms", "100")),
            gather_ms=float(params.get("gather_ms", "20")),
            max_waves=int(params.get("max_waves", "4")),
            max_rows=max_rows,
            on_step=self._on_step,
        )
        self.running = {}  # request id or stop_request_id -> its sequences not yet finished
        self.running_lock = threading.Lock()
        self.stop_ids = (f"tritonfleet-{os.getpid()}-{n}" for n in itertools.count())

    def _on_step(self, queued, active, rows):
        if rows:
            self.rows.observe(rows)
        kv = self.scheduler.kv_tokens  # changes only when a wave starts or ends
        if (queued, active, kv) != self.gauges:
            if kv != self.gauges[2]:
                self.kv.set(kv)
            self.gauges = (queued, active, kv)
            self.queue.set(queued)
            self.active.set(active)

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
        vocab = self.engine.info.vocab_size
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
        for name in (llm.BEAM_WIDTH.name, llm.NUM_RETURN_SEQUENCES.name):
            count = int(value(name, 1))
            if count != 1:
                raise ClientError(f"{name} {count} is not supported on the CPU engine (only 1)")
        end_id = int(value(llm.END_ID.name, -1))
        if end_id >= vocab:
            raise ClientError(f"end_id must be below the vocabulary size {vocab} (or negative: the model's)")
        params = SamplingParams(
            max_tokens=max_tokens,
            end_ids=(end_id,) if end_id >= 0 else self.engine.info.end_ids,
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
        seqs = []
        for index, (prompt, params, stream, prefix, counts, guide) in enumerate(rows):
            seq = Sequence(prompt, params, emit=None, cancelled=sender.is_cancelled, stream=stream)
            self.prompt_tokens.increment(len(prompt))
            seq.guide = guide
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
            if not state["waited"] and seq.started is not None:  # its first call after its wave started
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
        self.families.clear()
        gc.collect()
