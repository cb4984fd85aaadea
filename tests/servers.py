"""Real servers the connector tests and benchmarks start on loopback (Debian packages)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

DOVECOT = Path("/usr/sbin/dovecot")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def dovecot_server(binary: Path = DOVECOT) -> Iterator[int]:
    """Dovecot IMAP on 127.0.0.1 (its port is yielded) with one user, alice / secret, mail as
    Maildir. Runs as root: it switches to the dovecot user for mail."""
    # Not under pytest's tmp_path: its folders are 0700 and Dovecot's auth process runs as dovecot.
    home = Path(tempfile.mkdtemp(prefix="ragtune-dovecot-"))
    home.chmod(0o755)
    for sub in ("run", "state", "mail"):
        (home / sub).mkdir(parents=True)
    shutil.chown(home / "mail", "dovecot", "dovecot")
    (home / "passwd").write_text("alice:{PLAIN}secret\n")
    port = free_port()
    conf = home / "dovecot.conf"
    conf.write_text(f"""protocols = imap
listen = 127.0.0.1
base_dir = {home}/run
state_dir = {home}/state
log_path = {home}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 1
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
passdb {{
  driver = passwd-file
  args = {home}/passwd
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={home}/mail/%u
}}
mail_location = maildir:~/Maildir
""")
    subprocess.run([str(binary), "-c", str(conf)], check=True)
    for _ in range(50):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    try:
        yield port
    finally:
        subprocess.run([str(binary), "-c", str(conf), "stop"], check=False)
        shutil.rmtree(home, ignore_errors=True)


