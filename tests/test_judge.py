"""LLM-as-a-judge through the real `openai` client over real HTTP.

The endpoint is the scripted OpenAI-compatible server of conftest.py on 127.0.0.1: a stand-in for
vLLM / NIM / Ollama, which cannot run on this CPU machine. What is under test is ragtune's side:
prompt, parsing, retry on unparsable replies, missing-not-NaN, repeats and spread.
"""

from __future__ import annotations

import json

import pytest

from ragtune.evaluate.judge import Judge, parse_score, summarize


@pytest.fixture
def endpoint(chat_server):
    chat_server.default = "no idea"  # an unusable judge reply once the script runs out
    return chat_server.url, chat_server.replies, chat_server.requests


def test_judge_parses_retries_and_marks_missing(endpoint):
    url, replies, seen = endpoint
    judge = Judge.openai(url, model="judge-model", retries=2)
    replies += ['{"score": 5, "reason": "fully supported"}']
    v = judge.faithfulness("Who?", "Ann [1].", ["[1] Ann wrote it."])
    assert (v.score, v.missing, v.reasons) == (5.0, 0, ["fully supported"])
    assert "Ann wrote it." in seen[-1]["messages"][0]["content"] and seen[-1]["model"] == "judge-model"

    replies += ["Sure! Let me think...", "Score: 2"]  # unparsable, then usable after the reminder
    v = judge.correctness("Capital?", "Lyon", "Paris")
    assert v.score == 2.0 and v.missing == 0
    assert seen[-1]["messages"][-1]["content"].startswith("Your reply could not be read")

    replies += ["hmm", "still no", "nope"]  # never usable: missing, not a number
    v = judge.correctness("Capital?", "Lyon", "Paris")
    assert v.score is None and v.missing == 1 and v.spread is None


def test_repeated_judging_reports_spread(endpoint):
    url, replies, seen = endpoint
    judge = Judge.openai(url, model="m", repeats=3)
    replies += ['{"score": 3}', '{"score": 5}', '{"score": 4}', '{"score": 1}', "x", "y", "z", "{}", "5"]
    a = judge.correctness("q", "a", "r")
    b = judge.correctness("q", "a", "r")
    assert a.scores == [3, 5, 4] and a.spread == pytest.approx(1.0)
    assert b.scores == [1, 5] and b.missing == 1
    assert all(req["temperature"] >= 0.7 for req in seen), "repeats sample, or there would be no spread"
    s = summarize([a, b, judge.correctness("q", "a", "r")])
    assert s["items"] == 3 and s["judged"] == 2 and s["missing"] == 1 and s["mean"] == pytest.approx((4 + 3) / 2)


@pytest.mark.parametrize("reply, expected", [
    ('{"score": 4, "reason": "ok"}', 4),
    ('Here you go: {"score": "5", "reason": "good"} thanks', 5),
    ("score = 3", 3),
    ("2", 2),
    ('{"score": 9}', None),
    ("I would give it a 4 out of 5 maybe", None),
])
def test_parse_score(reply, expected):
    parsed = parse_score(reply)
    assert (parsed[0] if parsed else None) == expected


def test_eval_judge_command_writes_a_run(endpoint, tmp_path):
    from typer.testing import CliRunner

    from ragtune.cli import app

    url, replies, _ = endpoint
    (tmp_path / "a.jsonl").write_text(
        json.dumps({"id": "1", "question": "Who?", "answer": "Ann", "contexts": ["Ann wrote it."], "reference": "Ann"}) + "\n"
        + json.dumps({"id": "2", "question": "When?", "answer": "1999", "reference": "2001"}) + "\n")
    replies += ['{"score": 5}', '{"score": 5}', "??", "??", "??"]
    out = CliRunner().invoke(app, ["eval", "judge", "--answers", str(tmp_path / "a.jsonl"), "--base-url", url,
                                   "--model", "m", "--json", "--home", str(tmp_path / "home")], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    m = json.loads(out.stdout)["metrics"]
    assert m["faithfulness"] == {"items": 1, "judged": 1, "missing": 0, "mean": 5.0, "mean_spread": 0.0}
    assert m["correctness"]["judged"] == 1 and m["correctness"]["missing"] == 1 and m["correctness"]["mean"] == 5.0
