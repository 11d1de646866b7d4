"""A private Dovecot IMAP server for tests: its own configuration, port, user and maildirs, not the system's.

Started as ``dovecot -F -c <our config>`` in its own process group, so that stopping it also ends the IMAP
processes still serving clients (as a real restart with ``shutdown_clients = yes`` does).

As root, Dovecot refuses to open mail as root, and its unprivileged helpers must reach the passwd file: the
server then lives in a world-traversable folder under /tmp with its maildirs owned by ``nobody``. As any other
user everything runs as that user (Dovecot's rootless mode) under the folder the test gives.
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.processes import free_port, port_is_open

DOVECOT = Path("/usr/sbin/dovecot")
START_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 10.0

_CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
instance_name = centrala-test-{port}
log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = {login_user}
default_internal_user = {internal_user}
default_internal_group = {internal_group}
mail_location = maildir:{mail_root}/%u
# Dovecot notices new mail with inotify; this is only the fallback.
mailbox_idle_check_interval = 1 secs
{mail_owner}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/passwd
}}
protocol imap {{
  mail_max_userip_connections = 100
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
{login_chroot}
}}
{anvil_chroot}
"""


class DovecotServer:
    """One private Dovecot instance with one user; ``url()`` names a folder of it as an IMAP source URL."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.user = "agent"
        self.password = secrets.token_hex(8)
        self.process: subprocess.Popen[bytes] | None = None
        self._owned_root: Path | None = None
        if os.geteuid() == 0:
            self.root = Path(tempfile.mkdtemp(prefix="centrala-dovecot-"))
            self._owned_root = self.root
            self.root.chmod(0o755)
        else:
            self.root = workdir
            self.root.mkdir(parents=True, exist_ok=True)
        self.mail_root = self.root / "mail"
        self.mail_root.mkdir()
        self.config_path = self.root / "dovecot.conf"
        self.log_path = self.root / "dovecot.log"
        self._write_config()

    def _write_config(self) -> None:
        (self.root / "passwd").write_text(f"{self.user}:{{PLAIN}}{self.password}::::::\n")
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.mail_root, nobody.pw_uid, nobody.pw_gid)
            internal = _first_user("dovecot", "nobody")
            fields = {
                "login_user": _first_user("dovenull", "nobody").pw_name,
                "internal_user": internal.pw_name,
                "internal_group": grp.getgrgid(internal.pw_gid).gr_name,
                "mail_owner": f"mail_uid = {nobody.pw_uid}\nmail_gid = {nobody.pw_gid}",
                "login_chroot": "",
                "anvil_chroot": "",
            }
        else:
            me = pwd.getpwuid(os.geteuid())
            fields = {
                "login_user": me.pw_name,
                "internal_user": me.pw_name,
                "internal_group": grp.getgrgid(me.pw_gid).gr_name,
                "mail_owner": f"first_valid_uid = {min(me.pw_uid, 500) or 1}",
                # Without root nothing can chroot (Dovecot's rootless mode).
                "login_chroot": "  chroot =",
                "anvil_chroot": "service anvil {\n  chroot =\n}",
            }
        self.config_path.write_text(
            _CONFIG.format(root=self.root, port=self.port, mail_root=self.mail_root, **fields)
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self.process = subprocess.Popen(
            [str(DOVECOT), "-F", "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=(self.root / "dovecot.stderr").open("ab"),
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._accepts_login():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"Dovecot did not start; its log:\n{self.log_text()}")
            time.sleep(0.05)

    def _accepts_login(self) -> bool:
        # Ready means logging in works: the listener opens before the auth process is up.
        if not port_is_open(self.port):
            return False
        try:
            with self.client():
                return True
        except Exception:
            return False

    def stop(self) -> None:
        """Stop the master and every process it started, client sessions included."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            # The whole group: the master alone waits a second for its children before it exits.
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # The IMAP processes outlive their master while clients are connected; they share its process group.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def restart(self) -> None:
        """Stop and start again on the same port, with the same mail."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop, and remove the folder this object created for itself."""
        self.stop()
        if self._owned_root is not None:
            shutil.rmtree(self._owned_root, ignore_errors=True)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else "(no log)"

    def url(self, folder: str = "INBOX") -> str:
        """An ``imap://`` URL of ``folder`` for ``ImapSource``."""
        return f"imap://{self.user}:{self.password}@127.0.0.1:{self.port}/{folder}"

    def client(self):
        """A new client, logged in (the caller logs out, or uses it as a context manager)."""
        from imapclient import IMAPClient

        client = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=10)
        client.login(self.user, self.password)
        return client

    def append(self, raw: bytes, *, folder: str = "INBOX", flags: Sequence[bytes] = ()) -> int:
        """Deliver ``raw`` into ``folder`` (created when missing) and return its UID."""
        with self.client() as client:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            response = client.append(folder, raw, flags=flags)
        # RFC 4315 §3: "[APPENDUID <uidvalidity> <uid>] ..."
        return int(response.split(b"]")[0].split()[-1])


def _first_user(*names: str) -> pwd.struct_passwd:
    for name in names:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise LookupError(f"none of the users {names} exists")


@contextmanager
def running_dovecot(workdir: Path) -> Iterator[DovecotServer]:
    """A started private Dovecot; skips the test when Dovecot is not installed."""
    if not DOVECOT.exists():
        pytest.skip("Dovecot is not installed (apt-get install dovecot-imapd)")
    server = DovecotServer(workdir)
    try:
        server.start()
        yield server
    finally:
        server.close()
