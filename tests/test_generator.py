"""Generator backends: the real local SmolLM2, and the OpenAI-compatible client over real HTTP."""

from __future__ import annotations

import pytest

from ragtune.models.generator import GenerationConfig, GeneratorError, OpenAIGenerator, _stop_stream


ASK = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]


@pytest.mark.slow  # the real local LLM
def test_local_generation_is_deterministic_and_streams_the_same_text(local_generator):
    cfg = GenerationConfig(max_new_tokens=20)
    a = local_generator.generate(ASK, cfg)
    assert a.text == local_generator.generate(ASK, cfg).text
    assert "Paris" in a.text and a.prompt_tokens > 10 and 0 < a.completion_tokens <= 20
    assert "".join(local_generator.stream(ASK, cfg)).strip() == a.text


@pytest.mark.slow  # the real local LLM
def test_local_stop_strings_and_max_tokens(local_generator):
    full = local_generator.generate(ASK, GenerationConfig(max_new_tokens=20)).text
    word = full.split()[2]
    cut = local_generator.generate(ASK, GenerationConfig(max_new_tokens=20, stop=[word]))
    assert word not in cut.text and full.startswith(cut.text)
    assert word not in "".join(local_generator.stream(ASK, GenerationConfig(max_new_tokens=20, stop=[word])))
    short = local_generator.generate(ASK, GenerationConfig(max_new_tokens=3))
    assert short.completion_tokens == 3 and short.finish_reason == "length"


@pytest.mark.slow  # the real local LLM
def test_packaged_model_is_converted_once(local_generator):
    from pathlib import Path

    from ragtune.models.generator import packaged_model_dir

    folder = Path(local_generator.path)
    assert (folder / "model.safetensors").exists() and (folder / "tokenizer_config.json").exists()
    assert not folder.with_name(folder.name + ".tmp").exists()
    home = folder.parents[2]  # <home>/models/base/<name>
    assert packaged_model_dir("SmolLM2-135M-Instruct", home) == folder  # cached: no second conversion


def test_openai_backend_generate_and_stream(chat_server):
    gen = OpenAIGenerator(chat_server.url, model="served-model", api_key="k")
    chat_server.replies += ["Paris is the capital [1]. END trailing", "Streaming works fine. END more"]
    out = gen.generate(ASK, GenerationConfig(max_new_tokens=30, stop=["END"], temperature=0.2))
    assert out.text == "Paris is the capital [1]." and out.completion_tokens > 0
    req = chat_server.requests[-1]
    assert req["model"] == "served-model" and req["stop"] == ["END"] and req["max_tokens"] == 30
    assert "".join(gen.stream(ASK, GenerationConfig(stop=["END"]))).strip() == "Streaming works fine."
    assert chat_server.requests[-1]["stream"] is True


def test_openai_backend_errors_are_clear(chat_server):
    with pytest.raises(GeneratorError, match="answered HTTP 404 for model 'missing-model'"):
        OpenAIGenerator(chat_server.url, model="missing-model").generate(ASK, GenerationConfig())
    with pytest.raises(GeneratorError, match="cannot reach the OpenAI-compatible endpoint at http://127.0.0.1:9/v1"):
        OpenAIGenerator("http://127.0.0.1:9/v1", model="m", timeout=2, max_retries=0).generate(ASK, GenerationConfig())


def test_stop_strings_split_across_stream_chunks():
    assert "".join(_stop_stream(iter(["The ans", "wer is 4", "2.\n\nQue", "stion: next"]), ["\n\nQuestion:"])) == \
        "The answer is 42."
    assert "".join(_stop_stream(iter(["no stop here"]), ["STOP"])) == "no stop here"


@pytest.mark.slow  # the real local LLM
def test_batched_generation_matches_one_at_a_time(local_generator):
    from ragtune.models.generator import GenerationConfig

    long = [{"role": "user", "content": "Name the capital of France and say one thing about its history."}]
    short = [{"role": "user", "content": "Say hello."}]
    cfg = GenerationConfig(max_new_tokens=12)
    batch = local_generator.generate_batch([long, short], cfg)
    alone = local_generator.generate(long, cfg)
    # The longest prompt gets no padding, so greedy decoding must give the very same text.
    assert batch[0].text == alone.text and batch[0].completion_tokens == alone.completion_tokens
    assert batch[1].text and batch[1].prompt_tokens < batch[0].prompt_tokens


@pytest.mark.slow  # the real local LLM
def test_a_failing_stream_raises_instead_of_blocking(local_generator):
    """generate() failing in its thread used to leave the reader waiting forever (and the gate held)."""
    import threading

    outcome: list = []

    def consume():
        try:
            list(local_generator.stream(ASK, GenerationConfig(max_new_tokens=8, repetition_penalty=-1.0)))
            outcome.append(None)
        except Exception as e:  # noqa: BLE001 - the test inspects it
            outcome.append(e)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "the stream blocked"
    assert isinstance(outcome[0], ValueError), outcome


@pytest.mark.slow  # the real local LLM
def test_closing_a_stream_stops_the_generation(local_generator):
    import time

    pieces = local_generator.stream(ASK, GenerationConfig(max_new_tokens=2000, repetition_penalty=1.3))
    next(pieces)
    started = time.perf_counter()
    pieces.close()  # what the server does when the client goes away
    assert time.perf_counter() - started < 20  # 2000 tokens would take minutes on this CPU
    assert not [t for t in __import__("threading").enumerate() if t.name == "generate-stream"]
