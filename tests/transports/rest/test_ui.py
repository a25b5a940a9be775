"""The pages people open in a browser, driven by Debian's headless Chromium through Playwright
against a live server on smoke-trained models, with every request to anything but 127.0.0.1
blocked (as on a closed network): /docs and /redoc render from the server's own assets, and the
playground classifies a real photo, shows sentiment, translation and recommendations, reports the
API's own error messages and lists every model in its status panel.

Screenshots land in ``artifacts/screenshots/`` (git-ignored; CI keeps the folder as an artifact,
see docs/playground.md). ``make system-deps`` installs ``chromium``; Playwright's own browser
download is never used.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Page, expect, sync_playwright

from testkit.models import write_model
from tests.support import live_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]  # fmt: skip
SCREENSHOTS = Path(os.environ.get("DENDRITE_SCREENSHOTS", Path(__file__).parents[3] / "artifacts" / "screenshots"))
SMOKE_MODELS = ["fashion-cnn", "imagenet-efficientnet-lite0", "recommendation-neumf", "sentiment-minilm",
                "translation-de-en"]  # fmt: skip
BROKEN_MODEL = "broken-upload"
REDOC_BRANDING_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
TIMEOUT_MS = 60_000  # a busy 2-core CI runner: the first request of a model can take seconds
expect.set_options(timeout=TIMEOUT_MS)


def photo(name: str = "china.jpg") -> bytes:
    from sklearn.datasets import load_sample_image

    buf = io.BytesIO()
    Image.fromarray(load_sample_image(name)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def repository(smoke_repository, tmp_path_factory):
    """A copy of the smoke models (the repository refuses model folders that resolve outside it,
    so no symlinks) plus one model whose ONNX file is corrupt, so the status panel has a failed
    model with a reason to show."""
    repo = tmp_path_factory.mktemp("ui-models")
    for model in smoke_repository.iterdir():
        shutil.copytree(model, repo / model.name)
    write_model(repo, BROKEN_MODEL, b"this is not an onnx file", {"max_batch_size": 4})
    return repo


@pytest.fixture(scope="module")
def server(repository):
    with live_server(repository) as s:
        yield s


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make system-deps` installs Debian's chromium package")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


class Offline:
    """A page whose requests to any host but 127.0.0.1 are aborted, and recorded."""

    def __init__(self, page: Page):
        self.page = page
        self.blocked: list[str] = []
        self.errors: list[str] = []
        page.route("**/*", self._route)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def _route(self, route) -> None:
        url = route.request.url
        if urlsplit(url).hostname == "127.0.0.1" or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort("internetdisconnected")


@pytest.fixture
def offline(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    yield Offline(page)
    context.close()


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


# ------------------------------------------------------------------------------------------ API docs
def test_docs_html_names_no_other_host(server):
    for path in ("/docs", "/redoc"):
        html = httpx.get(server.url + path).text
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html, re.I), f"{path} points elsewhere:\n{html}"


def test_swagger_ui_renders_every_operation_offline(server, offline):
    page = offline.page
    page.goto(server.url + "/docs")
    operations = page.locator(".opblock")
    expect(operations.first).to_be_visible()
    paths = set(page.locator(".opblock-summary-path").all_inner_texts())
    schema_paths = set(httpx.get(server.url + "/openapi.json").json()["paths"])
    assert {p.replace("\u200b", "") for p in paths} == schema_paths  # Swagger UI puts zero-width breaks in paths
    assert {"/predict/image", "/predict/sentiment", "/v2/models/{model}/infer", "/status"} <= schema_paths
    screenshot(page, "docs.png")
    assert offline.blocked == [] and offline.errors == []


def test_redoc_renders_offline(server, offline):
    page = offline.page
    page.goto(server.url + "/redoc")
    expect(page.get_by_text("/predict/translation").first).to_be_attached()
    expect(page.locator("h1").first).to_contain_text("Dendrite")
    screenshot(page, "redoc.png")
    # The one thing ReDoc fetches elsewhere: the "API docs by Redocly" logo in its sidebar, hard-coded to its CDN.
    # Blocked, the <img> hides itself (onError); nothing else on the page depends on it.
    assert set(offline.blocked) <= {REDOC_BRANDING_LOGO} and offline.errors == []


# ---------------------------------------------------------------------------------------- playground
def test_playground_runs_every_task_and_lists_the_models(server, offline):
    page = offline.page
    page.goto(server.url + "/")

    # status panel: every model, ready ones with their provider, the broken one failed with its reason
    table = page.locator("#status-table tbody")
    expect(table.locator("tr")).to_have_count(len(SMOKE_MODELS) + 1)
    for name in SMOKE_MODELS:
        row = table.locator(f'tr[data-model="{name}"]')
        expect(row.locator(".state")).to_have_text("ready")
        expect(row).to_contain_text("CPUExecutionProvider")
    broken = table.locator(f'tr[data-model="{BROKEN_MODEL}"]')
    expect(broken.locator(".state")).to_have_text("failed")
    expect(broken.locator(".reason")).not_to_be_empty()

    # a real photo, uploaded as a file
    image = page.locator("#image")
    image.locator("#image-files").set_input_files({"name": "china.jpg", "mimeType": "image/jpeg", "buffer": photo()})
    image.locator("#image-top-k").fill("3")
    image.get_by_role("button", name="Classify").click()
    bars = image.locator("#image-results .bar-row")
    expect(bars).to_have_count(3)
    labels = [t.strip() for t in bars.locator(".bar-label").all_inner_texts()]
    assert {"palace", "monastery", "temple", "pagoda", "bell tower"} & set(labels), labels
    widths = [float(w.rstrip("%")) for w in bars.locator(".bar-value").all_inner_texts()]
    assert widths == sorted(widths, reverse=True) and 0 < widths[0] <= 100
    expect(image.locator(".model-line")).to_have_text("imagenet-efficientnet-lite0 v1")

    sentiment = page.locator("#sentiment")
    sentiment.get_by_role("button", name="Analyse").click()
    cards = sentiment.locator(".sentiment-card")
    expect(cards).to_have_count(2)  # the two example lines
    for label in cards.locator(".sentiment-label").all_inner_texts():
        assert label.strip().lower() in {"negative", "neutral", "positive"}
    assert cards.first.locator(".bar-row").count() == 3

    translation = page.locator("#translation")
    translation.locator("#translation-texts").fill("Das ist ein gutes Buch.")
    translation.get_by_role("button", name="Translate").click()
    target = translation.locator("#translation-results li .target")
    expect(target).to_have_count(1)
    # a smoke-trained translator can emit any string (even "ÜÜÜ"), so the page is checked against
    # the API's own answer for the same text and beam (decoding is deterministic)
    beam = int(translation.locator("#translation-beam").input_value())
    api = httpx.post(server.url + "/predict/translation", json={"texts": ["Das ist ein gutes Buch."], "beam_size": beam},
                     timeout=60)  # fmt: skip
    assert api.status_code == 200, api.text
    expected = api.json()["translations"][0]["text"]
    assert expected.strip(), api.json()
    expect(target).to_have_text(expected)

    recommendation = page.locator("#recommendation")
    recommendation.locator("#recommendation-user").fill("2")
    recommendation.locator("#recommendation-k").fill("5")
    recommendation.get_by_role("button", name="Recommend").click()
    titles = recommendation.locator("#recommendation-results li .title")
    expect(titles).to_have_count(5)
    expected = httpx.post(server.url + "/predict/recommendation", json={"user_id": "2", "k": 5}).json()["items"]
    assert [t.strip() for t in titles.all_inner_texts()] == [item["title"] for item in expected]
    assert all(item["title"] for item in expected)
    expect(recommendation.locator("#recommendation-note")).to_contain_text("for user 2 ")

    # the panel reads the server's own metrics: the models just used now have traffic and a p99
    for name in ("imagenet-efficientnet-lite0", "sentiment-minilm", "translation-de-en", "recommendation-neumf"):
        row = table.locator(f'tr[data-model="{name}"]')
        expect(row.locator("td.num").nth(1)).to_have_text(re.compile(r"^\d+(\.\d+)? m?s$"))
        assert float(row.locator("td.num").nth(0).inner_text()) > 0
    page.locator("#translation").scroll_into_view_if_needed()
    screenshot(page, "playground.png")
    assert offline.blocked == [] and offline.errors == []


def test_playground_shows_the_apis_error_message(server, offline):
    page = offline.page
    page.goto(server.url + "/")
    user = "x" * 65  # over the request model's max_length of 64
    expected = httpx.post(server.url + "/predict/recommendation", json={"user_id": user}).json()["error"]
    recommendation = page.locator("#recommendation")
    recommendation.locator("#recommendation-user").fill(user)
    recommendation.get_by_role("button", name="Recommend").click()
    expect(recommendation.locator(".error")).to_have_text(expected)
    assert "user_id" in expected

    sentiment = page.locator("#sentiment")
    sentiment.locator("#sentiment-texts").fill("   ")
    sentiment.get_by_role("button", name="Analyse").click()  # the textarea is not empty, the text list is
    expected = httpx.post(server.url + "/predict/sentiment", json={"texts": []}).json()["error"]
    expect(sentiment.locator(".error")).to_have_text(expected)


def test_status_route_reports_traffic_from_the_servers_metrics(server):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for _ in range(3):
            assert client.post("/predict/sentiment", json={"texts": ["fine"]}).status_code == 200
        body = client.get("/status").json()
    rows = {row["name"]: row for row in body["models"]}
    assert set(rows) == {*SMOKE_MODELS, BROKEN_MODEL}
    row = rows["sentiment-minilm"]
    assert row["task"] == "sentiment" and row["state"] == "READY" and row["providers"] == ["CPUExecutionProvider"]
    assert row["requests_per_second"] >= 3 / body["window_seconds"] - 1e-9
    assert 0 < row["p99_seconds"] <= 30
    assert rows[BROKEN_MODEL]["state"] == "UNAVAILABLE" and rows[BROKEN_MODEL]["reason"]
    assert rows[BROKEN_MODEL]["task"] == "generic" and rows[BROKEN_MODEL]["p99_seconds"] is None


def test_playground_with_api_keys_asks_for_one(tmp_path, offline):
    """With DENDRITE_API_KEYS set, the page and its assets still load (they hold no data); the
    status panel shows the API's 401 message until the key is typed in, then the models."""
    from testkit.models import affine_model

    write_model(tmp_path, "affine", affine_model(), {"max_batch_size": 4})
    with live_server(tmp_path, api_keys=["s3cret"]) as keyed:
        page = offline.page
        page.goto(keyed.url + "/")
        expected = httpx.get(keyed.url + "/status").json()["error"]
        expect(page.locator("#status .error")).to_have_text(expected)
        page.locator("#api-key").fill("s3cret")
        page.locator("#api-key").dispatch_event("change")
        expect(page.locator('#status-table tr[data-model="affine"] .state')).to_have_text("ready")
        expect(page.locator("#status .error")).to_be_hidden()
        assert httpx.get(keyed.url + "/docs-assets/swagger-ui.css").status_code == 200
    assert offline.errors == []


TENSOR_BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}


def test_a_new_error_replaces_the_old_result_and_k_over_100_is_explained(server, offline):
    page = offline.page
    page.goto(server.url + "/")
    recommendation = page.locator("#recommendation")
    recommendation.locator("#recommendation-k").fill("5")
    recommendation.get_by_role("button", name="Recommend").click()
    expect(recommendation.locator("#recommendation-results li")).to_have_count(5)

    # the input's max is no longer a silent refusal: the request goes and the API's reason is shown
    recommendation.locator("#recommendation-k").fill("150")
    recommendation.get_by_role("button", name="Recommend").click()
    expected = httpx.post(server.url + "/predict/recommendation", json={"user_id": "1", "k": 150}).json()["error"]
    assert "100" in expected
    expect(recommendation.locator(".error")).to_have_text(expected)
    expect(recommendation.locator("#recommendation-results li")).to_have_count(0)  # not the old list under it
    expect(recommendation.locator("#recommendation-note")).to_be_hidden()
    assert offline.errors == []


def test_status_panel_separates_client_and_server_errors(server, offline):
    page = offline.page
    page.goto(server.url + "/")
    row = page.locator(f'#status-table tr[data-model="{BROKEN_MODEL}"]')
    expect(row).to_have_count(1)
    for _ in range(2):  # the broken model answers 503: the server's failure, not the caller's
        httpx.post(f"{server.url}/v2/models/{BROKEN_MODEL}/infer", json=TENSOR_BODY)
    header = [t.strip() for t in page.locator("#status-table thead th").all_inner_texts()]
    assert header[-2:] == ["client errors", "server errors"], header
    cells = row.locator("td.num")
    expect(cells.nth(3)).to_have_text("100.0%", timeout=10_000)  # the panel polls every 3 s
    expect(cells.nth(2)).to_have_text("0.00%")


def test_playground_fits_a_400px_wide_window(server, browser):
    context = browser.new_context(viewport={"width": 400, "height": 900})
    try:
        page = context.new_page()
        page.goto(server.url + "/")
        expect(page.locator("#status-table tbody tr").first).to_be_visible()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 400, f"the page is {width} px wide in a 400 px window"
        for section in ("image", "sentiment", "translation", "recommendation", "status"):
            box = page.locator(f"#{section}").bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 400, (section, box)
        screenshot(page, "playground-400px.png")
    finally:
        context.close()


def test_playground_shows_a_model_in_training_with_its_progress(tmp_path, offline):
    from app.repository.training import write_status
    from testkit.models import affine_model

    write_model(tmp_path, "affine", affine_model(), {"max_batch_size": 4})
    write_model(tmp_path, "trainee", None, {"max_batch_size": 4}, versions=())
    write_status(tmp_path / "trainee", "training", phase="trainee epoch 1/2", step=1200, total=8000, eta_seconds=840)
    with live_server(tmp_path, model_control_mode="poll", repository_poll_seconds=0.2) as s:
        page = offline.page
        page.goto(s.url + "/")
        row = page.locator('#status-table tr[data-model="trainee"]')
        expect(row.locator(".state")).to_have_text("pending")
        expect(row.locator(".reason")).to_have_text("training: trainee epoch 1/2, step 1200/8000, about 14 min left")
        r = httpx.post(f"{s.url}/v2/models/trainee/infer", json=TENSOR_BODY)
        assert r.status_code == 503 and "being trained" in r.json()["error"]
        expect(row.locator("td.num").nth(0)).not_to_have_text("0", timeout=10_000)  # its 503 is counted
        expect(row.locator("td.num").nth(3)).to_have_text("100.0%")
        screenshot(page, "playground-training.png")
    assert offline.blocked == [] and offline.errors == []
