"""Mail: an mbox file, a Maildir folder, or IMAP folders. A message is a document (subject, the
people on it, its text); each attachment ragtune can read is one more document beside it.

Permissions: mail is its owner's. The ACL is ``user:<owner>``, where ``owner`` is the option, else
the IMAP login, else the POSIX owner of the mbox/Maildir (``acl_from_source``: the source's own
permission, not the collection's default).

IMAP is incremental by UID: a sync fetches only messages it has not seen in a folder whose
``UIDVALIDITY`` is unchanged, keeps the rest without downloading them, and deletes messages gone
from the server. The password is never stored: ``password_env`` names the environment variable
that holds it.
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import mailbox
import os
import re
import tempfile
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Callable, Iterator

from ragtune.errors import InputError, MissingInputError, UpstreamError
from ragtune.ingest.connectors.base import Failed, Item, Scan, Unchanged, option, str_list, unknown_options
from ragtune.ingest.connectors.folder import _user
from ragtune.ingest.loaders import LoadOptions, load_file, loader_for
from ragtune.ingest.loaders.html import html_to_text
from ragtune.types import Acl, Document

_OPTIONS = {"path", "imap_host", "imap_port", "imap_ssl", "username", "password_env", "folders", "owner"}


def message_documents(raw: bytes, doc_id: str, source: str, owner: str,
                      load_options: LoadOptions | None = None) -> Iterator[Item]:
    """The message as a document, then one per readable attachment."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    subject = str(msg.get("subject", "") or "").strip()
    people = [f"{h}: {msg[h]}" for h in ("from", "to", "cc", "date") if msg.get(h)]
    body = _body_text(msg)
    acl = Acl(users=(owner,))
    try:
        mtime = parsedate_to_datetime(str(msg["date"])).timestamp() if msg.get("date") else 0.0
    except (TypeError, ValueError):
        mtime = 0.0
    meta = {"format": "email", "message_id": str(msg.get("message-id", "")).strip(), "from": str(msg.get("from", "")),
            "date": str(msg.get("date", ""))}
    text = "\n".join(people) + "\n\n" + body
    yield _owned(Document(id=doc_id, text=text.strip(), source=source, title=subject or "(no subject)", metadata=meta,
                          acl=acl, mtime=mtime))
    for n, part in enumerate(msg.iter_attachments()):
        name = part.get_filename() or f"attachment-{n}"
        if loader_for(Path(name)) is None:
            continue
        with tempfile.TemporaryDirectory(prefix="ragtune-mail-") as scratch:
            path = Path(scratch) / Path(name).name
            payload = part.get_payload(decode=True)
            path.write_bytes(payload if isinstance(payload, bytes) else b"")
            result = load_file(path, f"{doc_id}/attachments/{n}-{path.name}", load_options)
        for failure in result.failures:
            yield Failed(source, f"attachment {name!r}: {failure.reason}")
        for doc in result.documents:
            doc.source, doc.acl, doc.mtime = source, acl, mtime
            doc.title = f"{name} (attached to: {subject or 'no subject'})"
            doc.metadata = {**doc.metadata, "attachment": name, "message_id": meta["message_id"]}
            yield _owned(doc)


def _owned(doc: Document) -> Document:
    doc.metadata["acl_from_source"] = True
    return doc


def _body_text(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    content = part.get_content()
    if part.get_content_subtype() == "html":
        return html_to_text(content)[1]
    return content.strip()


def _safe_id(value: str) -> str:
    return re.sub(r"[^\w.@+=-]+", "_", value.strip("<> ")) or "message"


@dataclass
class MailboxConnector:
    name: str
    path: Path | None = None
    imap_host: str | None = None
    imap_port: int = 993
    imap_ssl: bool = True
    username: str | None = None
    password_env: str | None = None
    folders: list[str] = field(default_factory=lambda: ["INBOX"])
    owner: str | None = None
    load_options: LoadOptions = field(default_factory=LoadOptions)  # the pipeline's (set by the sync)
    type = "mailbox"

    @classmethod
    def from_options(cls, name: str, options: dict[str, Any], workdir: Path) -> "MailboxConnector":
        unknown_options(options, _OPTIONS, name)
        path = option(options, "path", str, name, None)
        host = option(options, "imap_host", str, name, None)
        if bool(path) == bool(host):
            raise InputError(f"source {name!r}: give exactly one of 'path' (an mbox file or Maildir) or 'imap_host'")
        conn = cls(name, Path(path).expanduser().resolve() if path else None, host,
                   option(options, "imap_port", int, name, 993), option(options, "imap_ssl", bool, name, True),
                   option(options, "username", str, name, None), option(options, "password_env", str, name, None),
                   str_list(options, "folders", name, ["INBOX"]), option(options, "owner", str, name, None))
        if conn.path is not None and not conn.path.exists():
            raise MissingInputError(f"source {name!r}: {conn.path}: no such mbox file or Maildir")
        if host and not (conn.username and conn.password_env):
            raise InputError(f"source {name!r}: IMAP needs 'username' and 'password_env' (the name of the environment "
                             "variable holding the password; the password itself is never stored)")
        return conn

    def scan(self, state: dict[str, Any]) -> Scan:
        if self.path is not None:
            return Scan(self._local(), complete=True, state={})
        scan = Scan(iter(()), complete=True, state={"folders": {}})
        scan.items = self._imap(state.get("folders", {}), scan.state["folders"])
        return scan

    # -- mbox / Maildir ---------------------------------------------------------------------------
    def _local(self) -> Iterator[Item]:
        assert self.path is not None
        box: mailbox.Mailbox = mailbox.Maildir(self.path, create=False) if self.path.is_dir() else mailbox.mbox(self.path, create=False)
        owner = self.owner or _user(self.path.stat().st_uid)
        try:
            for key in box.iterkeys():
                try:
                    raw = box.get_bytes(key)
                except Exception as e:
                    yield Failed(f"{self.path}#{key}", f"unreadable message: {e}")
                    continue
                msg_id = _message_id(raw) or str(key)
                source = f"{self.path}#{_safe_id(msg_id)}"
                doc_id = f"{self.name}/{_safe_id(msg_id)}"
                yield from _guard(lambda: message_documents(raw, doc_id, source, owner, self.load_options), source)
        finally:
            box.close()

    # -- IMAP -------------------------------------------------------------------------------------
    def _imap(self, before: dict[str, dict], after: dict[str, dict]) -> Iterator[Item]:
        password = os.environ.get(self.password_env or "")
        if password is None:
            raise InputError(f"source {self.name!r}: environment variable {self.password_env!r} (the IMAP password) is not set")
        assert self.imap_host and self.username  # from_options requires both for IMAP
        cls = imaplib.IMAP4_SSL if self.imap_ssl else imaplib.IMAP4
        try:
            conn = cls(self.imap_host, self.imap_port, timeout=60)
            conn.login(self.username, password)
        except (OSError, imaplib.IMAP4.error) as e:
            raise UpstreamError(f"source {self.name!r}: IMAP {self.imap_host}:{self.imap_port}: {e}") from None
        owner = self.owner or str(self.username)
        try:
            for folder in self.folders:
                yield from self._imap_folder(conn, folder, before.get(folder, {}), after, owner)
        finally:
            try:
                conn.logout()
            except Exception:
                pass

    def _imap_folder(self, conn: imaplib.IMAP4, folder: str, old: dict, after: dict[str, dict], owner: str) -> Iterator[Item]:
        typ, _ = conn.select(_quote(folder), readonly=True)
        if typ != "OK":
            yield Failed(f"imap://{self.imap_host}/{folder}", f"cannot open folder {folder!r}")
            if old:
                after[folder] = old
            return
        validity = (conn.response("UIDVALIDITY")[1] or [b""])[0]
        validity = validity.decode() if isinstance(validity, bytes) else str(validity)
        typ, data = conn.uid("SEARCH", "ALL")
        uids = [u.decode() for u in (data[0] or b"").split()] if typ == "OK" else []
        known = set(old.get("uids", [])) if old.get("uidvalidity") == validity else set()
        after[folder] = {"uidvalidity": validity, "uids": uids}
        for uid in uids:
            source = f"imap://{self.username}@{self.imap_host}/{folder};UID={uid}"
            doc_id = f"{self.name}/{folder}/{validity}/{uid}"

            def fetch(uid=uid, source=source, doc_id=doc_id) -> Iterator[Item]:
                typ, data = conn.uid("FETCH", uid, "(BODY.PEEK[])")
                raw = next((d[1] for d in data or [] if isinstance(d, tuple)), None)
                if typ != "OK" or raw is None:
                    return iter([Failed(source, "the server did not return the message")])
                return _guard(lambda: message_documents(raw, doc_id, source, owner, self.load_options), source)

            if uid in known:
                yield Unchanged(source, fetch)
            else:
                yield from fetch()


def _guard(make: Callable[[], Iterator[Item]], source: str) -> Iterator[Item]:
    """One malformed message is reported, never the end of the sync."""
    try:
        yield from list(make())
    except Exception as e:
        yield Failed(source, f"unreadable message: {type(e).__name__}: {e}")


def _message_id(raw: bytes) -> str:
    m = re.search(rb"^message-id:\s*(\S+)", raw[:20000], re.IGNORECASE | re.MULTILINE)
    return m.group(1).decode(errors="replace") if m else ""


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
