"""What a notification says, and how each channel's text is escaped and cut to its limits."""

from __future__ import annotations

import html
import random

import pytest

from hyperdash.server.notify import BACK, ENDED, LOST, RULE, STALLED, Notification, render
from hyperdash.server.notify.message import format_duration


def run(kind=ENDED, **kw) -> Notification:
    return Notification(kind, kw.pop("run_name", "train"), "u-1", "https://hd.example.com", **kw)


@pytest.mark.parametrize(
    "notification, title, summary",
    [
        (
            run(status="success", duration_s=59.6, host="gpu-1"),
            "✅ train finished",
            "Finished after 1 min 00 s on gpu-1.",
        ),
        (run(status="failure", exit_code=2), "❌ train failed (exit code 2)", "Failed. Exit code 2."),
        (
            run(status="killed", signal="SIGKILL", duration_s=7300),
            "💀 train was killed by SIGKILL",
            "Killed after 2 h 01 min. Signal SIGKILL.",
        ),
        (run(status="user_canceled", duration_s=90000), "⏹ train was cancelled", "Cancelled after 1 d 1 h."),
        (run(LOST, duration_s=301), "❓ train went silent", "No heartbeat from the run since 5 min 01 s into it."),
        (run(BACK), "↩️ train is back", "The run is sending again."),
        (run(STALLED), "⏸ train stalled", "No output from the run for its stall window."),
        (run(RULE, rule="loss > 10"), "🔔 train: loss > 10", "A rule fired. Rule: loss > 10."),
    ],
)
def test_titles_and_summaries_say_what_happened(notification, title, summary):
    assert notification.title == title
    assert notification.summary == summary


def test_a_notification_refuses_nonsense():
    with pytest.raises(ValueError, match="unknown notification kind 'exploded'"):
        run("exploded")
    with pytest.raises(ValueError, match="a run that ended needs a final status"):
        run(ENDED, status="running")


def test_names_are_one_line_and_titles_short():
    n = run(status="success", run_name="a\nb\r\nc\t" + "x" * 500)
    assert "\n" not in n.title and "\r" not in n.title
    assert n.title.startswith("✅ a b c xxx") and len(n.title) <= 200
    assert len(run(RULE, rule="y" * 1000).title) == 200


def test_a_jobs_text_reaches_titles_and_summaries_without_codes_a_reader_would_act_on():
    # A name, host or rule is the job's text: its terminal codes (which a mail reader in a
    # terminal obeys), C1 controls and reordering marks go; what a person reads stays.
    hostile = "\x1b[31mred\x1b[0m \x1b]0;title\x07x\x9b2J \u202egnp.exe\u202c \x07bell\x00"
    n = run(RULE, run_name=hostile, host=hostile, rule=hostile, duration_s=5)
    for text in (n.title, n.summary):
        assert not any(ch in text for ch in "\x1b\x9b\x07\x00\u202e\u202c"), repr(text)
    assert n.title == "🔔 red x gnp.exe bell: red x gnp.exe bell"
    assert n.summary == "A rule fired, 5 s into it, on red x gnp.exe bell. Rule: red x gnp.exe bell."


def test_the_key_is_stable_across_retries_and_distinct_between_events():
    assert run(LOST).key == run(LOST).key
    assert run(LOST).key != run(BACK).key
    assert run(status="success", key="outbox-7").key == "outbox-7"


def test_the_link_points_at_the_runs_page():
    n = Notification(LOST, "r", "a/b c", "https://hd.example.com/base/")
    assert n.url == "https://hd.example.com/base/runs/a%2Fb%20c"


def test_durations():
    assert [format_duration(s) for s in (0, 59.4, 61, 3599, 3600, 86399, 86400 * 3 + 3600 * 4)] == [
        "0 s", "59 s", "1 min 01 s", "59 min 59 s", "1 h 00 min", "23 h 59 min", "3 d 4 h",
    ]


ESCAPES = {
    "slack": (render.SLACK, lambda s: s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")),
    "telegram": (render.TELEGRAM, lambda s: html.escape(s, quote=False)),
}


@pytest.mark.parametrize("name", ESCAPES)
def test_cut_text_never_splits_an_escape_or_a_character(name):
    """Random output made of characters that escape and characters of several bytes."""
    markup, _ = ESCAPES[name]
    rng = random.Random(7)
    alphabet = "<>&a\n é😀\"'`"
    for size in (10, 1000, 5000, 20000):
        tail = "".join(rng.choice(alphabet) for _ in range(size))
        text = markup.render(run(status="failure", exit_code=1, tail=tail))
        assert markup.measure(text) <= markup.limit
        code = text.split("```" if name == "slack" else "<pre>", 1)[1]
        # Every & starts a whole entity: no '&am' left dangling by a cut.
        for i, ch in enumerate(code):
            if ch == "&":
                assert code[i:].startswith(("&amp;", "&lt;", "&gt;")), code[i : i + 6]
        text.encode("utf-8")  # no half of a surrogate pair


def test_slack_text_is_kept_short():
    text = render.SLACK.render(run(status="failure", tail="x" * 100_000 + "\nend"))
    assert render.SLACK_MAX_CHARS - 50 < len(text) <= render.SLACK_MAX_CHARS
    assert text.endswith("end```\n<https://hd.example.com/runs/u-1|Open the run>")


def test_an_empty_output_leaves_no_empty_code_block():
    for markup in (render.SLACK, render.DISCORD, render.TELEGRAM):
        text = markup.render(run(status="success", tail="\n\n"))
        assert "```" not in text and "<pre>" not in text


def test_fit_end_and_fit_start():
    assert render.fit_end("abcdef", 10, len) == "abcdef"
    assert render.fit_end("abcdef", 4, len) == "…def"
    assert render.fit_start("abcdef", 4, len) == "abc…"
    assert render.fit_end("line1\nline2\nline3", 13, len) == "…line2\nline3"  # from a line's start
    assert render.fit_end("éééé", 5, render.utf8_size) == "…é"  # "…" is 3 bytes, "é" 2
    assert render.fit_end("abc", 0, len) == ""


def test_a_huge_rule_text_is_cut_and_the_link_kept():
    n = run(RULE, rule="<y>" * 5000)
    for markup in (render.SLACK, render.DISCORD, render.TELEGRAM):
        text = markup.render(n)
        assert markup.measure(text) <= markup.limit
        assert "https://hd.example.com/runs/u-1" in text.rsplit("\n", 1)[1]
        assert "…" in text
