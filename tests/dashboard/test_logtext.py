"""Unit tests of the dashboard's log text functions (static/js/logtext.js), run in real
Chromium: the module is served as the dashboard serves it, imported by a page, and called there."""

from __future__ import annotations

import functools
import http.server
import threading

import pytest

from hyperdash.server.pages import STATIC_DIR

pytestmark = pytest.mark.browser


class _StaticFiles(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/favicon.ico":  # asked for by the browser, not by the test
            self.send_response(204)
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def static_url():
    """The dashboard's static folder on a loopback port, as plain files."""
    handler = functools.partial(_StaticFiles, directory=str(STATIC_DIR))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def call(open_page, static_url):
    """``call("fn", *args)``: the result of logtext.js's ``fn(*args)`` in the page."""
    page = open_page()
    page.goto(static_url + "/js/logtext.js")

    def run(name: str, *args):
        return page.evaluate(
            "async ([name, args]) => (await import('/js/logtext.js'))[name](...args)", [name, list(args)])

    return run


def test_strip_ansi_leaves_the_text(call):
    assert call("stripAnsi", "\x1b[32mgreen\x1b[0m and \x1b[1;31mbold\x1b[0m") == "green and bold"
    assert call("stripAnsi", "\x1b]0;title\x07kept \x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\") == "kept link"
    assert call("stripAnsi", "no codes <b>") == "no codes <b>"


def test_visible_is_the_last_state_of_a_redrawn_line(call):
    assert call("visible", " 10%|#\r 50%|#####\r100%|##########") == "100%|##########"
    assert call("visible", "done\r\r") == "done"
    assert call("visible", "plain") == "plain"


def test_ansi_to_html_escapes_the_text_and_colours_it(call):
    html = call("ansiToHtml", "\x1b[31m<script>alert('x')</script> & \"q\"\x1b[0m")
    assert "<script>" not in html
    assert html == ('<span class="ansi-red-fg">&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; '
                    '&amp; &quot;q&quot;</span>')
    # Hyperlinks are text, not links.
    assert "<a" not in call("ansiToHtml", "\x1b]8;;https://example.com\x1b\\site\x1b]8;;\x1b\\")


def test_each_line_starts_from_plain_text(call):
    # A colour left on, or an escape cut off at the end of a line, does not reach the next line.
    assert call("ansiToHtml", "\x1b[31mstill red") == '<span class="ansi-red-fg">still red</span>'
    assert call("ansiToHtml", "plain") == "plain"
    call("ansiToHtml", "cut off \x1b[")
    assert call("ansiToHtml", "31m not red") == "31m not red"


def test_split_matches_marks_every_occurrence_in_any_case(call):
    assert call("splitMatches", "a Needle and a needle", "NEEDLE") == [
        {"text": "a ", "hit": False}, {"text": "Needle", "hit": True},
        {"text": " and a ", "hit": False}, {"text": "needle", "hit": True}]
    assert call("splitMatches", "Обучение", "обуч") == [
        {"text": "Обуч", "hit": True}, {"text": "ение", "hit": False}]
    assert call("splitMatches", "nothing here", "") == [{"text": "nothing here", "hit": False}]
    assert call("splitMatches", "no hit", "zzz") == [{"text": "no hit", "hit": False}]
    assert call("splitMatches", "", "x") == []


def test_holds_looks_through_escape_codes(call):
    assert call("holds", "\x1b[1mEr\x1b[0mror: disk", "error")
    assert not call("holds", "all good", "error")


@pytest.mark.parametrize("text, bar", [
    ("epoch 1:  42%|████▏     | 42/100 [00:05<00:07,  8.21it/s]", True),
    ("100%|##########| 10/10", True),
    ("   ━━━━━━━━━━━━━━━━━━━━ 1.2/3.4 MB 5.6 MB/s eta 0:00:01", True),
    ("12/50 [=====>........................] - ETA: 3s - loss: 0.41", True),
    ("loss went down 42% | accuracy up", False),
    ("an ordinary line that is rather long " * 4, False),
])
def test_progress_bars_are_told_from_ordinary_lines(call, text, bar):
    assert call("looksLikeProgress", text) is bar


@pytest.mark.parametrize("text, goes_on", [
    ("epochs:  33%|███▎      | 1/3 [00:00<00:00,  9.71it/s]print epoch 1 loss=0.500", True),
    ("  5%|▌         | 50/1000 [00:00, 98.10it/s] step 50", True),  # (no total: no remaining time)
    ("Epoch 2: 100%|████| 8/8 [00:00<00:00, 385.59it/s, v_num=0, train_loss=1.29]", False),
    ("epoch 1:  42%|████▏     | 42/100 [00:05<00:07,  8.21it/s]   ", False),
    ("12/50 [=====>........................] - ETA: 3s - loss: 0.41", False),
])
def test_a_line_printed_right_after_a_bar_is_told_from_the_bar(call, text, goes_on):
    assert call("goesOnAfterBar", text) is goes_on
