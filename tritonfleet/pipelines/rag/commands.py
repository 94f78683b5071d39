"""``fleet infer rag``: its arguments and what it runs."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from tritonfleet.clients import FleetClient
from tritonfleet.clients import rag as client
from tritonfleet.pipelines import Command

if TYPE_CHECKING:
    from rich.console import Console


def infer_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("question", nargs="+", help="the question")
    p.add_argument("--max-tokens", type=int, default=128, help="tokens to generate at most")
    p.add_argument("--num-sources", type=int, help="chunks to retrieve (default: the retriever's, 3)")
    p.add_argument("--no-stream", action="store_true", help="one response instead of streaming")


def infer(args: argparse.Namespace, console: Console) -> int:
    question = " ".join(args.question)
    with FleetClient(args.url, protocol=args.protocol) as fleet:
        if args.no_stream or args.protocol == "http":
            answer = client.ask(fleet, question, args.max_tokens, num_sources=args.num_sources)
            console.print(f"[dim]sources: {', '.join(answer.sources)}[/]")
            print(answer.text)
            return 0
        for piece in client.stream(fleet, question, args.max_tokens, num_sources=args.num_sources):
            if piece.sources:
                console.print(f"[dim]sources: {', '.join(piece.sources)}[/]")
            print(piece.text, end="", flush=True)
        print()
    return 0


INFER = Command(
    "ask a question about the corpus (streams the answer, prints the sources)", infer_arguments, infer
)
