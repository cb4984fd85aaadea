"""LLM-as-a-judge: faithfulness of an answer to its retrieved context, and correctness against
a reference answer, each scored 1-5 by any ragtune generator (``Judge.from_generator``): a model
behind an OpenAI-compatible endpoint (vLLM, NIM, Ollama, OpenAI; ``Judge.openai``) or the local one.

Judges are noisy and sometimes ignore the output format, so:
- the reply is parsed leniently (a JSON object, else ``score: N``, else a lone digit 1-5);
- an unparsable reply is retried with a format reminder, then recorded as *missing* (None),
  never as a number, and missing counts are reported beside every mean;
- each item can be judged ``repeats`` times; the per-item spread (stdev) is reported.

Example (with any callable that maps chat messages to text):
    >>> from ragtune.evaluate.judge import Judge
    >>> judge = Judge(complete=lambda messages, temperature: '{"score": 4, "reason": "mostly supported"}')
    >>> v = judge.faithfulness("Who wrote it?", "Ann wrote it [1].", ["[1] The book was written by Ann."])
    >>> v.score, v.scores
    (4.0, [4])
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ragtune.errors import InputError
from ragtune.evaluate.runs import RunDir, markdown_table

Complete = Callable[[list[dict[str, str]], float], str]

FAITHFULNESS = """You are grading a question-answering system. Judge ONLY whether the ANSWER is supported by the CONTEXT (not whether it is true in general).
5 = every claim is supported by the context; 3 = partly supported; 1 = contradicted or not supported at all.
An answer of "I don't know" is faithful (5) when the context does not contain the answer.

QUESTION: {question}

CONTEXT:
{context}

ANSWER: {answer}

Reply with a JSON object only: {{"score": <1-5>, "reason": "<one sentence>"}}"""

CORRECTNESS = """You are grading a question-answering system. Judge whether the ANSWER means the same as the REFERENCE answer for this question.
5 = same meaning (extra correct detail is fine); 3 = partly correct; 1 = wrong or missing.

QUESTION: {question}
REFERENCE: {reference}
ANSWER: {answer}

Reply with a JSON object only: {{"score": <1-5>, "reason": "<one sentence>"}}"""

REMINDER = 'Your reply could not be read. Reply with exactly one JSON object like {"score": 3, "reason": "..."} and nothing else.'


@dataclass
class Verdict:
    scores: list[int] = field(default_factory=list)  # one per successful repeat
    missing: int = 0  # repeats whose reply stayed unparsable after retries
    reasons: list[str] = field(default_factory=list)

    @property
    def score(self) -> float | None:
        return float(statistics.fmean(self.scores)) if self.scores else None

    @property
    def spread(self) -> float | None:
        return float(statistics.stdev(self.scores)) if len(self.scores) > 1 else (0.0 if self.scores else None)


def parse_score(reply: str) -> tuple[int, str] | None:
    """Lenient parse of a judge reply into (score 1-5, reason); None when no score is found."""
    for m in re.finditer(r"\{.*?\}", reply, re.DOTALL):
        try:
            obj = json.loads(m.group(0))
        except ValueError:
            continue
        if isinstance(obj, dict) and "score" in obj:
            try:
                score = int(round(float(obj["score"])))
            except (TypeError, ValueError):
                continue
            if 1 <= score <= 5:
                return score, str(obj.get("reason", ""))
    found: re.Match[str] | None = re.search(r"score\W{0,3}([1-5])\b", reply, re.IGNORECASE) or re.fullmatch(r"\s*([1-5])\s*\.?\s*", reply)
    return (int(found.group(1)), reply.strip()[:200]) if found else None


class Judge:
    def __init__(self, complete: Complete, repeats: int = 1, retries: int = 2, temperature: float = 0.0):
        if repeats < 1:
            raise InputError("repeats must be at least 1")
        self.complete = complete
        self.repeats = repeats
        self.retries = retries
        # Repeats at temperature 0 would just repeat one answer; spread needs sampling.
        self.temperature = temperature if repeats == 1 else max(temperature, 0.7)

    @classmethod
    def from_generator(cls, generator, **kw) -> "Judge":
        """A judge backed by any ragtune generator: the local model or an OpenAI-compatible endpoint."""
        from itertools import count

        from ragtune.models.generator import GenerationConfig

        seeds = count()  # a new seed per call, so sampled repeats can differ

        def complete(messages: list[dict[str, str]], temperature: float) -> str:
            config = GenerationConfig(max_new_tokens=200, temperature=temperature, seed=next(seeds))
            return generator.generate(messages, config).text

        return cls(complete, **kw)

    @classmethod
    def openai(cls, base_url: str, model: str, api_key: str = "none", timeout: float = 60.0, **kw) -> "Judge":
        """A judge behind an OpenAI-compatible endpoint, e.g. ``http://localhost:8000/v1``."""
        from ragtune.models.generator import OpenAIGenerator

        return cls.from_generator(OpenAIGenerator(base_url, model, api_key=api_key, timeout=timeout), **kw)

    def faithfulness(self, question: str, answer: str, contexts: list[str]) -> Verdict:
        prompt = FAITHFULNESS.format(question=question, answer=answer, context="\n\n".join(contexts))
        return self._judge(prompt)

    def correctness(self, question: str, answer: str, reference: str) -> Verdict:
        return self._judge(CORRECTNESS.format(question=question, answer=answer, reference=reference))

    def _judge(self, prompt: str) -> Verdict:
        verdict = Verdict()
        for _ in range(self.repeats):
            messages = [{"role": "user", "content": prompt}]
            for _attempt in range(1 + self.retries):
                reply = self.complete(messages, self.temperature)
                parsed = parse_score(reply)
                if parsed:
                    verdict.scores.append(parsed[0])
                    verdict.reasons.append(parsed[1])
                    break
                messages = messages + [{"role": "assistant", "content": reply}, {"role": "user", "content": REMINDER}]
            else:
                verdict.missing += 1
        return verdict


def summarize(verdicts: list[Verdict]) -> dict[str, float | int | None]:
    """Mean score over judged items, how many items had no usable verdict, and the mean spread."""
    scored = [v.score for v in verdicts if v.score is not None]
    spreads = [v.spread for v in verdicts if v.spread is not None]
    return {
        "items": len(verdicts),
        "judged": len(scored),
        "missing": len(verdicts) - len(scored),
        "mean": statistics.fmean(scored) if scored else None,
        "mean_spread": statistics.fmean(spreads) if spreads else None,
    }


def read_answers(path: Path) -> list[tuple[str, str, str, list[str], str | None]]:
    """(id, question, answer, contexts, reference) per line of an ``answers.jsonl`` (the file
    ``ragtune eval qa`` writes); a bad line is an InputError naming it."""
    items = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            items.append((str(item["id"]), item["question"], item["answer"], list(item.get("contexts") or []),
                          item.get("reference")))
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"{path}:{n}: need id, question, answer (contexts, reference optional): {e}") from None
    return items


def judge_answers(answers: Path, judge: Judge, runs_dir: Path, config: dict | None = None) -> tuple[RunDir, dict]:
    """Judge every answer of ``answers`` (faithfulness where it has contexts, correctness where
    it has a reference) into a new run directory; returns it and the per-criterion summary."""
    items = read_answers(answers)
    verdicts: dict[str, list[Verdict]] = {"faithfulness": [], "correctness": []}
    per: dict[str, dict[str, float]] = {"faithfulness": {}, "correctness": {}}
    for qid, question, answer, contexts, reference in items:
        for criterion, wanted in (("faithfulness", contexts), ("correctness", reference)):
            if not wanted:
                continue
            v = (judge.faithfulness(question, answer, contexts) if criterion == "faithfulness"
                 else judge.correctness(question, answer, reference or ""))
            verdicts[criterion].append(v)
            if v.score is not None:
                per[criterion][qid] = v.score
    metrics = {k: summarize(v) for k, v in verdicts.items()}
    run = RunDir.create(runs_dir, "judge", {"answers": str(answers.resolve()), **(config or {})})
    run.write_metrics({"judge": {k: v["mean"] for k, v in metrics.items()}}, {"judge": per})  # type: ignore[misc]
    rows = [[k, v["mean"] if v["mean"] is not None else "n/a", v["judged"], v["missing"],
             v["mean_spread"] if v["mean_spread"] is not None else "n/a"] for k, v in metrics.items()]
    title = (config or {}).get("judge_model", "LLM judge")
    run.write_summary(f"# Judge: {title}\n\n"
                      + markdown_table(["criterion", "mean (1-5)", "judged", "missing", "mean spread"], rows) + "\n")
    return run, metrics
