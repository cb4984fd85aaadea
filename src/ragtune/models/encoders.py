"""Encoder backends chosen by measurement: the fastest way to run an embedder on *this* machine
that still finds what float32 PyTorch finds.

Every stage waits on the encoder (ingest, re-indexing, queries, mining), and which backend is
fastest depends on the CPU: bf16 autocast is ~1.7× faster where the CPU computes bf16 natively
(AVX512-BF16, AMX) and slower where it emulates it; ONNX Runtime fuses attention and GELU; int8
weights are faster again but move the vectors. So nothing is assumed: :func:`measure` encodes a
sample of the collection's own texts with each backend available here, and :func:`choose` takes
the fastest whose top-10 neighbours agree with float32's on at least ``min_overlap`` (0.99).

Backends:
- ``torch``: sentence-transformers as loaded, float32 (the reference);
- ``torch-bf16``: the same under bf16 autocast (only where :func:`~.loading.native_bf16`);
- ``onnx`` / ``onnx-int8``: the transformer exported with ``torch.onnx`` (dynamo) and run by
  ONNX Runtime (int8: its dynamic weight quantisation), inside the same SentenceTransformer, so
  tokenisation, pooling, normalisation, prompts and batching are sentence-transformers' own.

Why our own ONNX path: sentence-transformers' ``backend="onnx"`` loads through optimum, and no
optimum-onnx release accepts transformers 5 (checked: every version pins transformers < 4.56), so
it cannot be installed beside ragtune's stack; the export here needs only ``onnxruntime`` and
``onnxscript`` (the ``fast`` extra). Exports are cached per model *content* (an adapted embedder
is a new key) under ``$RAGTUNE_HOME/cache/encoders``.

Example (the choice rule alone):
    >>> from ragtune.models.encoders import BackendMeasure, choose
    >>> choose([BackendMeasure("torch", 10.0, 1.0, 1.0), BackendMeasure("onnx", 19.0, 1.9, 0.998),
    ...         BackendMeasure("onnx-int8", 30.0, 3.0, 0.93)])
    'onnx'
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

BACKENDS = ("torch", "torch-bf16", "onnx", "onnx-int8")
MIN_OVERLAP = 0.99


@dataclass
class BackendMeasure:
    backend: str
    texts_per_s: float
    speedup: float  # ÷ torch float32, measured in the same run on the same texts
    overlap: float  # mean top-10 overlap of neighbour lists with torch float32's
    error: str | None = None


def swappable(model) -> bool:
    """Whether ``model``'s first module is a plain Hugging Face transformer the other backends can
    replace. A Router (a query-side adapter: two paths, one per side) is not, and stays on PyTorch."""
    return len(model) > 0 and hasattr(model[0], "auto_model")


def available(device: str, model=None) -> list[str]:
    """The backends that can run here (the ONNX ones need the ``fast`` extra, and run on CPU);
    for ``model``, only those that can run it."""
    from ragtune.models.loading import native_bf16

    if model is not None and not swappable(model):
        return ["torch"]

    out = ["torch"]
    if native_bf16(device):
        out.append("torch-bf16")
    if device == "cpu":
        try:
            import onnxruntime  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError:
            return out
        out += ["onnx", "onnx-int8"]
    return out


def model_key(model) -> str:
    """A digest of the weights' files (names, sizes, modification times): an adapted embedder,
    or a model re-saved in place, gets its own export and its own measurement. A model loaded
    from a hub cache is known by its name and the bytes of its first weights."""
    first = model[0].auto_model if swappable(model) else model[0]
    name = str(getattr(getattr(first, "config", None), "_name_or_path", "") or "")
    if Path(name).is_dir():
        return folder_key(Path(name))
    h = hashlib.sha1(name.encode())
    h.update(next(model.parameters()).detach().cpu().float().numpy().tobytes()[: 1 << 20])
    return h.hexdigest()[:16]


def folder_key(folder: Path) -> str:
    h = hashlib.sha1(str(folder).encode())
    h.update(str(folder.resolve()).encode())
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix in {".safetensors", ".bin", ".json"}:
            st = p.stat()
            h.update(f"{p.relative_to(folder)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def with_backend(model, backend: str, cache: Path):
    """``model`` (a SentenceTransformer) running on ``backend``: itself for ``torch``, else a shallow
    copy whose transformer is replaced (the original stays usable for training)."""
    if backend == "torch":
        return model
    if backend in BACKENDS and not swappable(model):
        raise ValueError(f"encoder backend {backend!r} needs a model whose first module is a transformer; "
                         f"this one starts with {type(model[0]).__name__} (use backend 'torch')")
    if backend == "torch-bf16":
        out = copy.copy(model)
        out._modules = dict(model._modules)
        out._modules["0"] = _Bf16Transformer(model[0])
        return out
    if backend in ("onnx", "onnx-int8"):
        path = export_onnx(model, cache / model_key(model), int8=backend == "onnx-int8")
        out = copy.copy(model)
        out._modules = dict(model._modules)
        out._modules["0"] = _OnnxTransformer(model[0], path)
        return out
    raise ValueError(f"unknown encoder backend {backend!r}; one of {', '.join(BACKENDS)}")


def export_onnx(model, folder: Path, int8: bool = False) -> Path:
    """The transformer of ``model`` as ONNX in ``folder`` (exported once; int8 quantised from it).
    Written under a temporary name and renamed, so a crash leaves no half file that looks done."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    fp32 = folder / "model.onnx"
    if not fp32.exists():
        transformer = model[0]
        inputs = transformer.tokenize(["an example sentence", "a second, longer example sentence"])
        names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in inputs]
        batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
        tmp = folder / f"model.tmp{os.getpid()}.onnx"  # two processes exporting at once never share a file
        torch.onnx.export(_HiddenStates(transformer.auto_model, names).eval(), tuple(inputs[n] for n in names), str(tmp),
                          input_names=names, output_names=["token_embeddings"],
                          dynamic_shapes=(tuple({0: batch, 1: seq} for _ in names),), dynamo=True, optimize=True,
                          external_data=False)
        tmp.replace(fp32)
    if not int8:
        return fp32
    # Per-channel weights, MatMuls only: top-10 overlap 0.92 on SciFact vs 0.81 per-tensor over
    # every op, at the same speed (measured here; the name changed so older exports are redone).
    q = folder / "model.int8-pc.onnx"
    if not q.exists():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = folder / f"model.int8.tmp{os.getpid()}.onnx"
        quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"])
        tmp.replace(q)
    return q


def measure(model, texts: list[str], backends: list[str], cache: Path, batch_size: int = 32,
            queries: int = 64) -> list[BackendMeasure]:
    """Each backend on ``texts`` (a sample of the collection's own): texts per second, and the mean
    overlap of its top-10 neighbour lists with float32's for ``queries`` of the texts (their first
    words as the query: short queries against long passages, as in search)."""
    if len(texts) < 20:
        raise ValueError(f"measuring encoder backends needs at least 20 texts, got {len(texts)}")
    probe = [" ".join(t.split()[:12]) for t in texts[:: max(1, len(texts) // queries)][:queries]]

    def run(m) -> tuple[np.ndarray, np.ndarray, float]:
        m.encode(texts[:batch_size], batch_size=batch_size)  # warm-up: first-call allocation, thread pools
        start = time.perf_counter()
        docs = m.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
        seconds = time.perf_counter() - start
        return docs, m.encode(probe, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True), seconds

    ref_docs, ref_q, ref_s = run(model)
    ref_top = _top10(ref_q, ref_docs)
    out = [BackendMeasure("torch", len(texts) / ref_s, 1.0, 1.0)]
    for backend in [b for b in backends if b != "torch"]:
        try:
            docs, q, seconds = run(with_backend(model, backend, cache))
        except Exception as e:  # noqa: BLE001 - a backend that fails here is reported and not chosen
            out.append(BackendMeasure(backend, 0.0, 0.0, 0.0, f"{type(e).__name__}: {e}"[:300]))
            continue
        top = _top10(q, docs)
        overlap = float(np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(top, ref_top)]))
        out.append(BackendMeasure(backend, len(texts) / seconds, ref_s / seconds, overlap))
    return out


def choose(measures: list[BackendMeasure], min_overlap: float = MIN_OVERLAP) -> str:
    """The fastest backend whose overlap is at least ``min_overlap`` (float32 itself always is)."""
    faithful = [m for m in measures if m.error is None and m.overlap >= min_overlap]
    return max(faithful, key=lambda m: m.texts_per_s).backend if faithful else "torch"


def _top10(queries: np.ndarray, docs: np.ndarray) -> np.ndarray:
    return np.argsort(-(queries @ docs.T), axis=1, kind="stable")[:, :10]


# -- the recorded choice --------------------------------------------------------------------------
def machine_fingerprint() -> str:
    """What decides the fastest backend: the CPU model and flags, core count, library versions."""
    import platform

    cpu = ""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next((ln for ln in lines if ln.startswith("model name")), "") + next(
            (ln for ln in lines if ln.startswith("flags")), "")
    except OSError:
        cpu = platform.processor()
    versions = []
    for pkg in ("torch", "onnxruntime"):
        try:
            versions.append(f"{pkg}={__import__(pkg).__version__}")
        except ImportError:
            versions.append(f"{pkg}=none")
    return hashlib.sha1(f"{cpu}|{os.cpu_count()}|{';'.join(versions)}".encode()).hexdigest()[:16]


def choice_path(cache: Path, model_or_key) -> Path:
    key = model_or_key if isinstance(model_or_key, str) else model_key(model_or_key)
    return cache / key / f"choice-{machine_fingerprint()}.json"


def recorded_choice(cache: Path, model_or_key) -> dict[str, Any] | None:
    """The measurement recorded for this model (or its :func:`model_key`) on this machine, if any."""
    path = choice_path(cache, model_or_key)
    return json.loads(path.read_text()) if path.exists() else None


def record_choice(cache: Path, model, measures: list[BackendMeasure], min_overlap: float = MIN_OVERLAP,
                  texts: int = 0) -> dict[str, Any]:
    data = {"backend": choose(measures, min_overlap), "min_overlap": min_overlap, "texts": texts,
            "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "measures": [asdict(m) for m in measures]}
    path = choice_path(cache, model)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)
    return data


# -- the replaced transformer modules -------------------------------------------------------------
try:
    import torch as _torch

    _Module: Any = _torch.nn.Module
except ImportError:  # pragma: no cover - torch is a core dependency
    _Module = object


class _HiddenStates(_Module):
    """The export target: named tensors in, last hidden states out."""

    def __init__(self, auto_model, names: list[str]):
        super().__init__()
        self.auto_model, self.names = auto_model, names

    def forward(self, *tensors):
        return self.auto_model(**dict(zip(self.names, tensors))).last_hidden_state


class _Delegating(_Module):
    """A stand-in for sentence-transformers' Transformer module: tokenises and reports settings
    through the original; only ``forward`` differs."""

    def __init__(self, original):
        super().__init__()
        self.__dict__["_original"] = original  # not a registered submodule: its weights are not ours

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.__dict__["_original"], name)

    def tokenize(self, *args, **kwargs):
        return self._original.tokenize(*args, **kwargs)


class _Bf16Transformer(_Delegating):
    def forward(self, features, **kwargs):
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = self._original(features, **kwargs)
        out["token_embeddings"] = out["token_embeddings"].float()
        return out


class _OnnxTransformer(_Delegating):
    def __init__(self, original, path: Path):
        super().__init__(original)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
        self.__dict__["_session"] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.__dict__["_inputs"] = [i.name for i in self._session.get_inputs()]

    def forward(self, features, **kwargs):
        import torch

        feeds = {n: features[n].cpu().numpy().astype(np.int64) for n in self._inputs}
        hidden = self._session.run(None, feeds)[0]
        features["token_embeddings"] = torch.from_numpy(hidden)
        return features
