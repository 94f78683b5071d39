"""Guided decoding on the CPU engine: a token mask per row from llguidance, so that the output follows a
JSON schema, a JSON value, a regular expression or a grammar: TensorRT-LLM's guide types, as the inputs
``guided_decoding_guide_type`` / ``guided_decoding_guide`` of ``tensorrt_llm`` name them (tensorrtllm_backend
v0.19's names).

The sampler (:mod:`tritonfleet.pipelines.llm.sampling`) asks :meth:`Guide.allowed` for the tokens the grammar
allows next, masks the rest out of the logits before it samples, and feeds the chosen token back
(:meth:`Guide.advance`). Once the grammar is complete only the end ids are allowed, so a sequence ends there,
and ends only where the output is complete: the text parses whenever the sequence ends with its end id
rather than its token limit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tritonfleet.errors import ClientError

GUIDE_TYPES = ("json", "json_schema", "regex", "ebnf_grammar")
# Compact JSON: left free to indent, a small model may fill its budget with blank lines. A schema's own
# "x-guidance" options override these.
JSON_OPTIONS = {"whitespace_flexible": False}


class GuideCompiler:
    """Compiles guides for one tokenizer (loading it takes ~0.4 s: do it once per model)."""

    def __init__(self, tokenizer_json: Path, end_ids: Sequence[int], vocab_size: int) -> None:
        import llguidance

        self.llg = llguidance
        self.tokenizer = llguidance.LLTokenizer(
            str(tokenizer_json), n_vocab=vocab_size, eos_token=list(end_ids)
        )
        self.end_ids = tuple(end_ids)
        self.vocab_size = vocab_size

    def grammar(self, guide_type: str, guide: str) -> str:
        """llguidance's grammar for a TensorRT-LLM guide; :class:`ClientError` for a bad one."""
        matcher = self.llg.LLMatcher
        if guide_type == "json":
            return matcher.grammar_from_json_schema({}, defaults=JSON_OPTIONS)  # type: ignore[arg-type]
        if not guide:
            raise ClientError(f"guided_decoding_guide is required for guide type {guide_type!r}")
        if guide_type == "json_schema":
            try:
                schema: Any = json.loads(guide)
            except json.JSONDecodeError as exc:
                raise ClientError(f"guided_decoding_guide is not JSON: {exc}") from None
            if not isinstance(schema, dict | bool):
                raise ClientError("guided_decoding_guide: a JSON schema is an object")
            return matcher.grammar_from_json_schema(schema, defaults=JSON_OPTIONS)  # type: ignore[arg-type]
        if guide_type == "regex":
            return matcher.grammar_from_regex(guide)
        if guide_type == "ebnf_grammar":
            from llguidance.gbnf_to_lark import gbnf_to_lark

            return matcher.grammar_from_lark(gbnf_to_lark(guide))
        choices = ", ".join(GUIDE_TYPES)
        raise ClientError(f"guided_decoding_guide_type must be one of {choices}, not {guide_type!r}")

    def compile(self, guide_type: str, guide: str) -> Guide:
        """A fresh :class:`Guide` for one sequence; :class:`ClientError` when the guide is invalid."""
        try:
            grammar = self.grammar(guide_type, guide)
        except ClientError:
            raise
        except ValueError as exc:  # llguidance's converters' word on a guide they refuse
            raise ClientError(str(exc)) from None
        except Exception as exc:  # their other errors
            raise ClientError(f"guided_decoding_guide: {exc}") from None
        matcher = self.llg.LLMatcher(self.tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise ClientError(f"guided_decoding_guide: {matcher.get_error()}")
        return Guide(matcher, self.vocab_size, self.end_ids)


class Guide:
    """One sequence's grammar state."""

    def __init__(self, matcher: Any, vocab_size: int, end_ids: tuple[int, ...]) -> None:
        self.matcher = matcher
        self.vocab_size = vocab_size
        self.end_ids = end_ids

    def allowed(self, size: int) -> np.ndarray:
        """Which of ``size`` tokens may come next (bool); only the end ids once the grammar is complete or
        has failed, so that the sequence ends."""
        allowed = np.zeros(size, dtype=bool)
        if not self.matcher.is_error() and not self.matcher.is_stopped():
            bits = np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8)
            mask = np.unpackbits(bits, bitorder="little")[: min(size, self.vocab_size)].astype(bool)
            allowed[: mask.size] = mask
        if not allowed.any():
            allowed[list(self.end_ids)] = True
        return allowed

    def advance(self, token: int) -> None:
        if token not in self.end_ids and not self.matcher.is_stopped():
            self.matcher.consume_token(token)

    @property
    def failed(self) -> bool:
        return bool(self.matcher.is_error())
