"""The console in a real browser (Debian's Chromium through Selenium) against the real fleet and model: no
mocked stream. Screenshots of each page go to docs/console/ when ``CONSOLE_SCREENSHOTS=1``."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CAT_CLASSES
from tests.console.conftest import WAIT_S, fetch, metric, open_page, wait_for
from tritonfleet import pipelines
from tritonfleet.artifacts import REPOSITORY
from tritonfleet.frontdoor.keys import KeyFile

pytestmark = [pytest.mark.server, pytest.mark.browser]

ACTIVE = "tritonfleet_llm_active_sequences"
QUEUED = "tritonfleet_llm_queue_size"
GENERATED = "tritonfleet_llm_generated_tokens_total"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
LONG_PROMPT = "Summarize this text. " + " ".join(
    ["The quick brown fox jumps over the lazy dog by the river."] * 120
)
STORY = "Write a long story about a dragon who learns to cook, with many chapters."
# Appends the answer's text length to window.lengths whenever the transcript changes.
RECORD_LENGTHS = """
window.lengths = [];
new MutationObserver(() => {
  const bodies = document.querySelectorAll('#transcript .msg.assistant .msg-body');
  if (bodies.length) window.lengths.push(bodies[bodies.length - 1].textContent.length);
}).observe(document.getElementById('transcript'), {subtree: true, childList: true, characterData: true});
"""


def screenshot(browser: Any, name: str) -> None:
    """The page as docs/console/NAME.png when CONSOLE_SCREENSHOTS is set: 64 colours, small in git."""
    if os.environ.get("CONSOLE_SCREENSHOTS"):
        from PIL import Image

        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        browser.save_screenshot(str(path))
        Image.open(path).convert("RGB").quantize(64).save(path, optimize=True)


def js(browser: Any, script: str, *args: Any) -> Any:
    return browser.execute_script(script, *args)


def each(browser: Any, selector: str, expression: str) -> list[Any]:
    """``expression`` (JavaScript, of ``e``) for each element that ``selector`` finds."""
    return js(
        browser, f"return [...document.querySelectorAll(arguments[0])].map(e => {expression})", selector
    )


def css(browser: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, selector)


def set_value(browser: Any, selector: str, value: str) -> None:
    js(browser, "const e = document.querySelector(arguments[0]); e.value = arguments[1];", selector, value)


def last_answer(browser: Any) -> Any:
    return js(
        browser, "const a = document.querySelectorAll('#transcript .msg.assistant'); return a[a.length - 1];"
    )


def answer_state(browser: Any) -> str | None:
    answer = last_answer(browser)
    return answer.get_attribute("data-state") if answer is not None else None


def ask(browser: Any, text: str, *, model: str | None = None, max_tokens: int = 64) -> None:
    """Type a question in the chat page and send it (temperature 0: greedy, the same answer each run)."""
    if model is not None:
        set_value(browser, "#chat-model", model)
        js(browser, "document.querySelector('#chat-model').dispatchEvent(new Event('change'))")
    set_value(browser, "#chat-max-tokens", str(max_tokens))
    set_value(browser, "#chat-input", text)
    js(browser, "document.getElementById('chat-form').requestSubmit()")


def engine_idle(fleet: Any) -> bool:
    return metric(fleet, ACTIVE) == 0 and metric(fleet, QUEUED) == 0


def test_a_chat_answer_streams_in_pieces_and_stop_ends_its_generation(browser, base, console_fleet) -> None:
    open_page(browser, base, "chat", "#chat-input")
    wait_for(lambda: engine_idle(console_fleet))
    before = metric(console_fleet, GENERATED)
    js(browser, RECORD_LENGTHS)
    ask(browser, STORY, max_tokens=400)
    # The answer grows piece by piece: many distinct lengths, each longer than the last.
    wait_for(lambda: len(set(js(browser, "return window.lengths"))) >= 6)
    screenshot(browser, "chat")
    css(browser, "#chat-stop").click()
    wait_for(lambda: answer_state(browser) == "stopped")
    lengths = js(browser, "return window.lengths")
    assert lengths == sorted(lengths) and lengths[-1] > 0, lengths
    stats = css(browser, "#transcript .msg.assistant:last-child .stats").text
    assert "TTFT" in stats and "stopped" in stats, stats
    # The server saw the disconnect: the engine's slot is free and it generated far less than asked.
    wait_for(lambda: engine_idle(console_fleet))
    generated = metric(console_fleet, GENERATED) - before
    assert 0 < generated < 400, generated
    shown = len(css(browser, "#transcript .msg.assistant:last-child .msg-body").text)
    assert shown > 0


def test_stop_before_the_first_token_frees_the_engine(browser, base, console_fleet) -> None:
    """A long prompt (seconds of prefill on this CPU): stopped once Triton has it, before its first token,
    the engine ends it long before its budget."""
    open_page(browser, base, "chat", "#chat-input")
    wait_for(lambda: engine_idle(console_fleet))
    before = metric(console_fleet, GENERATED)
    tokenized = metric(console_fleet, "nv_inference_request_success_total", model="preprocessing")
    ask(browser, LONG_PROMPT, max_tokens=400)
    wait_for(
        lambda: metric(console_fleet, "nv_inference_request_success_total", model="preprocessing") > tokenized
    )
    css(browser, "#chat-stop").click()
    wait_for(lambda: answer_state(browser) != "streaming")
    assert answer_state(browser) == "stopped"
    assert css(browser, "#transcript .msg.assistant:last-child .stats").text.startswith("no token")
    assert css(browser, "#transcript .msg.assistant:last-child .msg-body").text == ""
    wait_for(lambda: engine_idle(console_fleet))
    assert metric(console_fleet, GENERATED) - before < 400


def test_an_uploaded_photo_shows_its_top_label_and_the_curl_does_the_same(
    browser, base, cat_jpeg, tmp_path
) -> None:
    photo = tmp_path / "chelsea.jpg"
    photo.write_bytes(cat_jpeg)
    labels = (REPOSITORY / "image_classifier" / "labels.txt").read_text().splitlines()
    cats = {labels[i] for i in CAT_CLASSES}
    open_page(browser, base, "play/image_classifier", "#image-file")
    css(browser, "#image-file").send_keys(str(photo))
    top = wait_for(lambda: js(browser, "return document.getElementById('image-top')?.textContent"))
    assert top in cats, top
    bars = each(browser, "#image-result meter", "e.value")
    assert len(bars) == 5 and bars == sorted(bars, reverse=True) and 0 < bars[0] <= 1, bars
    screenshot(browser, "image")
    # The page's curl command, run in a shell beside the photo, gets the same classes.
    curl = js(browser, "return document.querySelector('.snippet pre code').textContent")
    out = subprocess.run(["bash", "-c", curl], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    answer = json.loads(out.stdout)
    assert answer["outputs"][0]["data"][0].split(":", 2)[2] == top, answer


@pytest.mark.parametrize(
    ("model", "loader", "row"),
    [("wine_sklearn", "load_wine", 150), ("breast_cancer_xgboost", "load_breast_cancer", 0)],
)
def test_the_tabular_form_answers_a_real_row_with_its_class(browser, base, model, loader, row) -> None:
    import sklearn.datasets

    data = getattr(sklearn.datasets, loader)()
    expected = str(data.target_names[data.target[row]])
    open_page(browser, base, "play/tabular", "#tabular-form")
    css(browser, f'.tab[data-model="{model}"]').click()
    wait_for(
        lambda: (
            js(browser, "return document.querySelector('.tab[aria-selected=true]')?.dataset.model") == model
        )
    )
    names = wait_for(lambda: each(browser, "[data-feature]", "e.name"))
    assert len(names) == data.data.shape[1]
    for name, value in zip(names, data.data[row], strict=True):
        set_value(browser, f'[data-feature="{name}"]', repr(float(value)))
    css(browser, "#tabular-run").click()
    answer = wait_for(lambda: js(browser, "return document.getElementById('tabular-class')?.textContent"))
    assert answer == expected
    probabilities = js(
        browser, "return [...document.querySelectorAll('#tabular-result meter')].map(m => m.value)"
    )
    assert len(probabilities) == len(data.target_names) and abs(sum(probabilities) - 1) < 1e-3
    screenshot(browser, f"tabular-{model}")


def without_playground(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """The pipeline ``name`` as if it declared no playground (the console reads the registry per request)."""
    monkeypatch.setitem(pipelines.registry(), name, dataclasses.replace(pipelines.get(name), playground=None))


def test_a_pipeline_without_a_playground_gets_a_form_that_answers(browser, base, monkeypatch) -> None:
    """tabular as a new pipeline would be: no playground declared, so a form of wine_sklearn's config; a
    real row of the wine data in, its true class's index out, and the Python that does the same."""
    import sklearn.datasets

    without_playground(monkeypatch, "tabular")
    data = sklearn.datasets.load_wine()
    open_page(browser, base, "play/tabular", "#form-inputs")
    css(browser, '.tab[data-model="wine_sklearn"]').click()
    wait_for(lambda: js(browser, "return document.querySelector('[data-input=FEATURES]') !== null"))
    wait_for(lambda: "wine_sklearn" in css(browser, ".playground-body").text)
    set_value(browser, "[data-input=FEATURES]", ", ".join(repr(float(v)) for v in data.data[150]))
    css(browser, "#form-run").click()
    label = wait_for(
        lambda: js(browser, "return document.querySelector('[data-output=LABEL] .data')?.textContent")
    )
    assert label == str(data.target[150]), label
    probabilities = css(browser, "[data-output=PROBABILITIES] .data").text.split(", ")
    assert len(probabilities) == 3 and abs(sum(map(float, probabilities)) - 1) < 1e-3
    screenshot(browser, "form")
    # The page's Python program, run here, gets the same class.
    python = js(browser, "return [...document.querySelectorAll('.snippet pre code')][1].textContent")
    out = subprocess.run([sys.executable, "-c", python], capture_output=True, text=True, timeout=120)
    assert f"LABEL [[{label}]]" in out.stdout, (out.stdout, out.stderr)


def test_the_form_of_a_streaming_model_streams_through_generate_stream(browser, base, monkeypatch) -> None:
    without_playground(monkeypatch, "llm")
    open_page(browser, base, "play/llm", "#form-inputs")
    wait_for(lambda: css(browser, '.tab[aria-selected="true"]').get_attribute("data-model") == "ensemble")
    wait_for(lambda: js(browser, "return document.querySelector('[data-input=text_input]') !== null"))
    set_value(browser, "[data-input=text_input]", "Name three primary colors.")
    set_value(browser, "[data-input=max_tokens]", "8")
    css(browser, "#form-run").click()
    text = wait_for(
        lambda: js(browser, "return document.querySelector('[data-output=text_output] .data')?.textContent")
    )
    wait_for(lambda: "response" in css(browser, "#form-result").text)
    assert text.strip(), text
    assert "generate_stream" in js(browser, "return document.querySelector('.snippet pre code').textContent")


def test_texts_get_a_similarity_matrix(browser, base) -> None:
    open_page(browser, base, "play/text_embedding", "#texts-run")
    css(browser, "#texts-run").click()
    wait_for(lambda: js(browser, "return document.getElementById('texts-matrix') !== null"))
    rows = each(browser, "#texts-matrix tbody tr", "[...e.querySelectorAll('td')].map(c => c.textContent)")
    cells = [[float(c) for c in row] for row in rows]
    assert [round(cells[i][i], 2) for i in range(3)] == [1.0, 1.0, 1.0]
    assert cells[0][1] > cells[0][2] + 0.2  # the two guitar sentences, not the stock market
    screenshot(browser, "text_embedding")


def test_rag_shows_numbered_sources_that_open_their_passage(browser, base) -> None:
    open_page(browser, base, "chat", "#chat-input")
    ask(browser, "How do I add a pipeline?", model="rag", max_tokens=48)
    wait_for(lambda: answer_state(browser) == "done")
    sources = each(browser, "#transcript .sources button", "e.dataset.source")
    assert len(sources) == 3 and all(re.fullmatch(r".+#[1-9][0-9]*", s) for s in sources), sources
    assert css(browser, "#transcript .sources li:first-child button").text == f"[1] {sources[0]}"
    css(browser, "#transcript .sources li:first-child button").click()
    chunks = json.loads((REPOSITORY / "retriever" / "1" / "chunks.json").read_text())
    chunk = next(c for c in chunks if f"{c['path']}#{c['number']}" == sources[0])
    wait_for(lambda: "loading" not in css(browser, "#passage").text)
    shown = css(browser, "#passage").text
    words = re.findall(r"[A-Za-z]{5,}", chunk["text"])[:8]
    assert sources[0] in shown and words and all(w in shown for w in words), (shown, words)
    screenshot(browser, "rag")


@pytest.mark.parametrize(
    ("prompt", "literal"),
    [
        ('Copy this HTML exactly: <img src=x onerror="window.xss=1">', "onerror"),
        ("Copy this HTML exactly: <script>window.xss=1</script>", "<script>"),
    ],
)
def test_html_in_an_answer_is_shown_as_text(browser, base, prompt, literal) -> None:
    open_page(browser, base, "chat", "#chat-input")
    ask(browser, prompt, max_tokens=48)
    wait_for(lambda: answer_state(browser) == "done")
    text = css(browser, "#transcript .msg.assistant:last-child .msg-body").text
    assert literal in text, text  # the model said it, and the page shows it as text
    assert js(browser, "return window.xss") is None
    assert js(browser, "return document.querySelectorAll('#transcript img, #transcript script').length") == 0


def test_the_fleet_page_shows_every_model_and_charts_with_data(browser, base, console_fleet) -> None:
    # Some work and one rejection, so that every chart has something to draw.
    fetch(f"{base}/v2/models/wine_sklearn/infer", b"{not json")
    for _ in range(3):
        fetch(f"{base}/chat/stream", {"message": "Name three primary colors.", "max_tokens": 8})
    open_page(browser, base, "fleet", "#fleet-table tbody tr")
    rows = each(browser, "#fleet-table tbody tr", "[e.dataset.model, e.querySelector('.state').textContent]")
    assert {name for name, _ in rows} >= set(console_fleet.models)
    assert all(state == "READY" for name, state in rows if name in console_fleet.models), rows

    def charted() -> dict[str, float]:
        found = dict(each(browser, "figure.chart", "[e.dataset.series, [+e.dataset.points, +e.dataset.max]]"))
        return found if all(points > 0 and top > 0 for points, top in found.values()) else {}

    charts = wait_for(charted, timeout=60)
    assert set(charts) == {"requests_s", "p99_ms", "ttft_ms", "tokens_s", "rejections_s"}
    screenshot(browser, "fleet")


def test_with_keys_only_the_login_screen_loads_without_one(browser, base, console_fleet) -> None:
    keys = KeyFile(console_fleet.keys.file.path)
    secret = keys.add("console-browser")
    try:
        wait_for(lambda: fetch(f"{base}/console/api/pipelines")[0] == 401)
        browser.get(f"{base}/")
        wait_for(lambda: css(browser, "#login").is_displayed())
        assert js(browser, "return document.getElementById('nav').children.length") == 0
        assert not css(browser, "#view").is_displayed()
        screenshot(browser, "login")
        # A wrong key stays on the login screen, with the server's reason.
        css(browser, "#login-key").send_keys("tf-wrong")
        css(browser, "#login-form button").click()
        wait_for(lambda: "unknown or revoked" in css(browser, "#login-error").text)
        # The right one opens the console; it lives in this tab's session storage and nowhere on the page.
        css(browser, "#login-key").send_keys(secret)
        css(browser, "#login-form button").click()
        wait_for(lambda: js(browser, "return document.getElementById('nav').children.length") > 2)
        assert js(browser, "return sessionStorage.getItem('tritonfleet.key')") == secret
        assert js(browser, "return localStorage.length") == 0
        assert secret not in js(browser, "return document.documentElement.outerHTML")
        wait_for(lambda: js(browser, "return document.getElementById('chat-input') !== null"))  # "/": chat
        ask(browser, "Say hello.", max_tokens=8)
        wait_for(lambda: answer_state(browser) != "streaming")
        assert answer_state(browser) == "done", last_answer(browser).text
        assert secret not in js(browser, "return document.documentElement.outerHTML")  # snippets too
        log = Path(console_fleet.server.log) if console_fleet.server.log else None
        assert log is None or secret not in log.read_text(errors="replace")
    finally:
        keys.revoke("console-browser")
        wait_for(lambda: fetch(f"{base}/console/api/pipelines")[0] == 200, timeout=WAIT_S)
