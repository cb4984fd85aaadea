"""The shared vocabulary of ragtune: plain dataclasses every stage speaks.

Example:
    >>> from ragtune.types import Acl, Principal
    >>> acl = Acl(groups=("eng",))
    >>> acl.visible_to(Principal(user="ana", groups=("eng",)))
    True
    >>> acl.visible_to(Principal(user="bob"))
    False
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ragtune.errors import InputError

PUBLIC_TOKEN = "public"


@dataclass(frozen=True)
class Acl:
    """Who may see a document: everyone (``public``), named users, or members of groups."""

    public: bool = False
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    def tokens(self) -> list[str]:
        """The ACL as keyword tokens, the form the store indexes and filters on.

        One keyword field holding ``public`` / ``user:<u>`` / ``group:<g>`` lets a single
        ``MatchAny`` condition express "public OR my user OR any of my groups" inside the
        index query.
        """
        out = [PUBLIC_TOKEN] if self.public else []
        out += [f"user:{u}" for u in sorted(set(self.users))]
        out += [f"group:{g}" for g in sorted(set(self.groups))]
        return out

    def visible_to(self, principal: "Principal") -> bool:
        return bool(set(self.tokens()) & set(principal.tokens()))

    def to_dict(self) -> dict[str, Any]:
        return {"public": self.public, "users": list(self.users), "groups": list(self.groups)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "Acl":
        if not data:
            return cls()
        unknown = set(data) - {"public", "users", "groups"}
        if unknown:
            raise InputError(f"unknown ACL field(s) {sorted(unknown)}; expected public, users, groups")
        public = data.get("public", False)
        if not isinstance(public, bool):  # bool("false") is True: a quoted value would publish the document
            raise InputError(f"ACL field 'public' must be true or false (a JSON boolean), not {public!r}")
        return cls(
            public=public,
            users=tuple(_as_str_list(data.get("users"), "users")),
            groups=tuple(_as_str_list(data.get("groups"), "groups")),
        )

    def merged(self, other: "Acl") -> "Acl":
        return Acl(
            public=self.public or other.public,
            users=tuple(sorted(set(self.users) | set(other.users))),
            groups=tuple(sorted(set(self.groups) | set(other.groups))),
        )

    @property
    def is_empty(self) -> bool:
        return not (self.public or self.users or self.groups)


def _as_str_list(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise InputError(f"ACL field {name!r} must be a string or a list of strings")
    return list(value)


@dataclass(frozen=True)
class Principal:
    """Who is asking. Public documents are visible to every principal."""

    user: str | None = None
    groups: tuple[str, ...] = ()

    def tokens(self) -> list[str]:
        out = [PUBLIC_TOKEN]
        if self.user:
            out.append(f"user:{self.user}")
        out += [f"group:{g}" for g in sorted(set(self.groups))]
        return out


@dataclass(frozen=True)
class ServicePrincipal(Principal):
    """ragtune's own offline jobs (synthetic training data, hard-negative mining) that must see
    every chunk of a collection: it carries the exact ACL tokens to match, so the store filter
    stays in place. Built only by library code from a collection's own tokens
    (``Collection.acl_tokens()``); the server never makes one from a request."""

    acl: tuple[str, ...] = ()

    def tokens(self) -> list[str]:
        return list(self.acl)


@dataclass(frozen=True)
class Scope:
    """Who may use something trained on a collection's text: the distinct ACLs (token sets) of
    the chunks it was trained on. A principal is inside the scope when it may read *every* one of
    them, so a model never answers someone with text they could not have read.

    >>> s = Scope.of([["public"], ["group:hr", "user:ann"]])
    >>> s.allows(Principal(groups=("hr",))), s.allows(Principal()), Scope.of([["public"]]).allows(Principal())
    (True, False, True)
    """

    acls: tuple[tuple[str, ...], ...] = ()

    @classmethod
    def of(cls, acls) -> "Scope":
        return cls(tuple(sorted({tuple(sorted(set(a))) for a in acls})))

    def allows(self, principal: "Principal") -> bool:
        return self._allows(set(principal.tokens()))

    def _allows(self, tokens: set[str]) -> bool:
        return all(tokens & set(acl) for acl in self.acls)

    def allows_everyone_in(self, tokens) -> bool:
        """True when every principal that can read anything with these ACL tokens is inside the
        scope (what a model serving all of a collection's readers needs): each reader holds at
        least one such token, and ``allows`` only grows with more tokens."""
        return self.includes_holders_of({PUBLIC_TOKEN, *tokens})

    def includes_holders_of(self, tokens) -> bool:
        """True when every principal holding any one of ``tokens`` is inside the scope (an ACL of
        these tokens is no wider than the scope).

        >>> Scope.of([["group:eng", "group:hr"]]).includes_holders_of(["group:hr"])
        True
        >>> Scope.of([["group:hr"]]).includes_holders_of(["public"])
        False
        """
        return all(self._allows({PUBLIC_TOKEN, t}) for t in tokens)

    @property
    def public(self) -> bool:
        return all(PUBLIC_TOKEN in acl for acl in self.acls)

    def readers_acl(self) -> "Acl | None":
        """An ACL that lets in only principals inside the scope (text derived from the training
        data, indexed somewhere, gets it): public for public data, else the users and groups
        every ACL of the scope names; None when no one token is in all of them.

        >>> Scope.of([["group:hr"], ["group:hr", "user:ann"]]).readers_acl().tokens()
        ['group:hr']
        """
        if self.public:
            return Acl(public=True)
        common = set.intersection(*(set(a) for a in self.acls)) if self.acls else set()
        users = tuple(sorted(t[5:] for t in common if t.startswith("user:")))
        groups = tuple(sorted(t[6:] for t in common if t.startswith("group:")))
        return Acl(users=users, groups=groups) if users or groups else None

    def to_list(self) -> list[list[str]]:
        return [list(a) for a in self.acls]

    @classmethod
    def from_list(cls, data) -> "Scope | None":
        """None for an artefact that recorded no scope (trained before scopes existed): only
        admins may use it."""
        return None if data is None else cls.of(data)


@dataclass
class Document:
    """One source document, before chunking."""

    id: str
    text: str
    source: str = ""
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    acl: Acl = field(default_factory=Acl)
    mtime: float = 0.0
    content_hash: str = ""


@dataclass
class Chunk:
    """A searchable span of a document; ``text == document.text[start:end]``."""

    doc_id: str
    index: int
    text: str
    start: int
    end: int
    heading_path: tuple[str, ...] = ()
    parent_start: int = 0
    parent_end: int = 0
    n_tokens: int = 0

    @property
    def id(self) -> str:
        return f"{self.doc_id}#{self.index}"


@dataclass
class ChunkPayload:
    """What every store keeps beside a chunk's vector and BM25 text: one schema for all backends,
    ingestion, index versions and migration (the store's ``search_text`` column is separate).

    >>> p = ChunkPayload("a#0", "a", "h1", "Cats purr.", title="Cats", acl=["public"])
    >>> ChunkPayload.from_payload(p.to_payload()) == p
    True
    >>> Hit.from_payload(p.to_payload(), score=0.5).parent_text  # no parent stored: the chunk itself
    'Cats purr.'
    """

    chunk_id: str
    doc_id: str
    doc_hash: str
    text: str
    title: str = ""
    start: int = 0
    end: int = 0
    headings: list[str] = field(default_factory=list)
    parent_text: str = ""  # small-to-big: stored only where it adds context beyond the chunk
    acl: list[str] = field(default_factory=list)  # Acl.tokens() of the document
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def to_payload(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in PAYLOAD_FIELDS}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> "ChunkPayload":
        return cls(**{f: payload[f] for f in PAYLOAD_FIELDS if f in payload and payload[f] is not None})


def search_text(text: str, title: str = "", headings: tuple[str, ...] | list[str] = ()) -> str:
    r"""What a chunk is embedded and BM25-scored as: ``title > headings`` on a line above its text
    (the reranker scores the same string, so it sees at serving time what it was trained on).

    >>> search_text("Unused days expire.", "Leave", ("Leave", "Carry-over"))
    'Leave > Carry-over\nUnused days expire.'
    """
    header = ([title] if title else []) + [h for h in headings if h != title]
    return "\n".join([" > ".join(header), text]) if header else text


PAYLOAD_FIELDS: tuple[str, ...] = ("chunk_id", "doc_id", "doc_hash", "text", "title", "start", "end", "headings",
                                   "parent_text", "acl", "source", "meta")
# What a search returns with each hit (enough to build a Hit), and what ingest rewrites when only a
# document's ACL or metadata changed.
HIT_FIELDS: tuple[str, ...] = ("chunk_id", "doc_id", "text", "title", "source", "start", "end", "headings",
                               "parent_text", "meta")
DOCUMENT_FIELDS: tuple[str, ...] = ("acl", "source", "meta")


@dataclass
class Hit:
    """One search result: a chunk with its document's identity, score and per-retriever ranks."""

    chunk_id: str
    doc_id: str
    text: str
    score: float
    title: str = ""
    source: str = ""
    start: int = 0
    end: int = 0
    heading_path: tuple[str, ...] = ()
    parent_text: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)  # per retriever, e.g. dense cosine

    @classmethod
    def from_payload(cls, payload: dict[str, Any], score: float = 0.0, point_id: str = "",
                     ranks: dict[str, int] | None = None, scores: dict[str, float] | None = None) -> "Hit":
        """A hit from a stored payload (any subset of ``HIT_FIELDS``)."""
        p = payload
        return cls(
            chunk_id=p.get("chunk_id", point_id),
            doc_id=p.get("doc_id", ""),
            text=p.get("text", ""),
            score=score,
            title=p.get("title", ""),
            source=p.get("source", ""),
            start=p.get("start", 0),
            end=p.get("end", 0),
            heading_path=tuple(p.get("headings") or ()),
            parent_text=p.get("parent_text") or p.get("text", ""),
            metadata=p.get("meta") or {},
            ranks=ranks or {},
            scores=scores or {},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "chunk_id": self.chunk_id,
            "doc_id": self.doc_id,
            "title": self.title,
            "source": self.source,
            "score": self.score,
            "ranks": self.ranks,
            "scores": self.scores,
            "start": self.start,
            "end": self.end,
            "heading_path": list(self.heading_path),
            "text": self.text,
            "metadata": self.metadata,
        }
