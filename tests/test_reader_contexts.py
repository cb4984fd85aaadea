"""Reader training data over retrieved chunks (`ragtune.synth.reader_contexts`): on a real index,
each question becomes a positive per retrieved chunk holding its answer (labelled at the answer's
offset) and "no answer" examples from the best-ranked chunks without it, with their chunks' scope."""

from __future__ import annotations

from ragtune.data.squad import QAExample
from ragtune.synth.reader_contexts import retrieved_contexts
from ragtune.types import Acl, Principal


def test_questions_meet_their_retrieved_chunks_as_positives_and_labelled_distractors(tmp_path, make_tiny_collection):
    from ragtune.ingest.sync import ingest

    coll = make_tiny_collection("kb", ["chunking.chunk_size=24", "chunking.chunk_overlap=0"])
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "laptops.md").write_text("# Laptops\n\n" + " ".join(
        f"Team {i} laptops are replaced after {i + 2} years by the service desk." for i in range(8)))
    ingest(coll, folder, Acl(groups=("staff",)))
    questions = [QAExample("q1", "When are team 5 laptops replaced?", "", ["7 years"]),
                 QAExample("q2", "Who replaces laptops?", "", ["The Service Desk"]),  # case differs from the text
                 QAExample("q3", "Is there an answer?", "", [])]  # unanswerable: nothing to label
    examples, scope = retrieved_contexts(coll, questions, k=6, negatives=2)

    assert {ex.id.split("-")[0] for ex in examples} == {"q1", "q2"}
    for ex in examples:
        if ex.answers:
            start = ex.answer_starts[0]
            assert ex.context[start:start + len(ex.answers[0])] == ex.answers[0]
            assert ex.answers[0].lower() in {"7 years", "the service desk"}
    q1 = [ex for ex in examples if ex.id.startswith("q1-")]
    assert sum(1 for ex in q1 if ex.answers) == 1  # one chunk says "7 years"
    assert sum(1 for ex in q1 if not ex.answers) == 2  # distractors capped at `negatives`
    assert all(ex.context.strip() for ex in examples)
    assert scope.allows(Principal("ann", ("staff",))) and not scope.allows(Principal("bob"))
