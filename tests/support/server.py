"""Run the real ``mailet-mta`` CLI as a separate process for end-to-end tests.

Listeners bind port 0 on 127.0.0.1; the server writes the ports it got to
``<data_dir>/listeners.json``, which :meth:`ServerProcess.start` waits for. Servers are
stopped by their process id only.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def base_config(data_dir: Path, *, servernames=("example.com",), smtp=None, pop3=None,
                imap=None, processors=None, workers=1, **extra) -> dict:
    """A YAML config dict: embedded default pipeline unless ``processors`` is given;
    one process unless ``workers`` says otherwise (the tests of worker processes)."""
    defaults = ROOT / "mailet_mta" / "config" / "defaults" / "default.yaml"
    config = yaml.safe_load(defaults.read_text())
    config["servernames"] = list(servernames)
    config["storage"] = {"data_dir": str(data_dir)}
    config["smtpservers"] = smtp if smtp is not None else [
        {"name": "smtp", "listen": "tcp:0:interface=127.0.0.1", "authRequired": True,
         "authorizedAddresses": ["127.0.0.1/32"]},
        {"name": "submission", "listen": "tcp:0:interface=127.0.0.1", "authRequired": True,
         "auth_before_mail": True, "authorizedAddresses": []},
    ]
    config["pop3servers"] = pop3 if pop3 is not None else [
        {"name": "pop3", "listen": "tcp:0:interface=127.0.0.1"}]
    config["imapservers"] = imap if imap is not None else [
        {"name": "imap", "listen": "tcp:0:interface=127.0.0.1"}]
    if processors is not None:
        config["spoolmanager"] = {"processors": processors}
    config.setdefault("logging", {"level": "info"})
    config["workers"] = workers
    config.update(extra)
    return config


class ServerProcess:
    """One ``mailet-mta serve`` process with its own data directory and config file."""

    def __init__(self, workdir: Path, config: dict | None = None, *, config_path=None,
                 name: str = "server", command=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.data_dir = self.workdir / "var"
        if config_path is None:
            config = config or base_config(self.data_dir)
            config_path = self.workdir / f"{name}.yaml"
            config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.config_path = Path(config_path)
        self.log_path = self.workdir / f"{name}.log"
        self.command = command
        self.proc: subprocess.Popen | None = None
        self.listeners: dict = {}

    # -- lifecycle ----------------------------------------------------------------------
    def start(self, timeout: float = 30.0, data_dir: Path | None = None) -> ServerProcess:
        return self.launch(data_dir).wait_ready(timeout)

    def launch(self, data_dir: Path | None = None) -> ServerProcess:
        """Start the process and return at once; :meth:`wait_ready` waits for it to
        listen. Servers that do not need each other's ports start side by side
        (:func:`start_all`)."""
        if data_dir is not None:
            self.data_dir = Path(data_dir)
        marker = self.data_dir / "listeners.json"
        if marker.exists():
            marker.unlink()
        cmd = self.command or [sys.executable, "-m", "mailet_mta", "serve",
                               "--config", str(self.config_path)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=self.workdir, env=_env())
        return self

    def wait_ready(self, timeout: float = 30.0) -> ServerProcess:
        """Wait until the process started by :meth:`launch` has written its ports to
        listeners.json; a process that exits first or takes over ``timeout`` fails."""
        assert self.proc is not None, "launch() first"
        marker = self.data_dir / "listeners.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n"
                                   + self.log_text()[-3000:])
            try:
                info = json.loads(marker.read_text())
                if info.get("pid") == self.proc.pid:
                    self.listeners = info["listeners"]
                    return self
            except (FileNotFoundError, json.JSONDecodeError):
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"{self.name} did not start in {timeout}s:\n" + self.log_text()[-3000:])

    def info(self) -> dict:
        """listeners.json as it is now (with workers: the supervisor's and theirs)."""
        return json.loads((self.data_dir / "listeners.json").read_text())

    def port(self, listener: str) -> int:
        return self.listeners[listener]["port"]

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM by pid, then SIGKILL if it does not exit."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        """SIGKILL by pid: no chance to clean up (crash tests)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log_text(self) -> str:
        """The log as written so far. The server writes its log from a thread of its
        own, up to about 50 ms after the event: to check a line that was just logged,
        use :meth:`wait_log`; to count lines or check what is absent,
        :meth:`settled_log`."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, *texts: str, timeout: float = 10.0) -> str:
        """The log once each of ``texts`` is in it."""
        def found():
            log = self.log_text()
            return log if all(text in log for text in texts) else None
        return wait_for(found, timeout=timeout, what=f"{texts!r} in the log of {self.name}")

    def settled_log(self, quiet: float = 0.3, timeout: float = 10.0) -> str:
        """The log once it has not grown for ``quiet`` seconds (longer than the log
        writer gathers lines): what was logged before this call is all in it."""
        deadline = time.monotonic() + timeout
        last, since = self.log_text(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = self.log_text()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                break
        return last

    # -- the CLI against the same config --------------------------------------------------
    def cli(self, *args, input: str | None = None, check: bool = True):
        result = subprocess.run([sys.executable, "-m", "mailet_mta", *args, "--config",
                                 str(self.config_path)], input=input, capture_output=True,
                                text=True, cwd=self.workdir, env=_env(), timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"mailet-mta {' '.join(args)} failed: {result.stderr}")
        return result

    def add_user(self, address: str, password: str) -> None:
        """``mailet-mta users add ADDRESS --password-stdin`` (see :meth:`admin`)."""
        self.admin("users", "add", address, "--password-stdin", input=password + "\n")

    def admin(self, *args, input: str = "", check: bool = True) -> str:
        """``mailet-mta ARGS --config …`` run by the command's own main in this process,
        from the server's directory: the same command without a Python start-up (for
        setting a server up; ``cli`` runs the command as a separate process, as the
        tests of the commands themselves need). Returns what it printed."""
        from mailet_mta.cli import main

        out = io.StringIO()
        stdin = sys.stdin
        sys.stdin = io.StringIO(input)
        try:
            with contextlib.chdir(self.workdir), contextlib.redirect_stdout(out):
                code = main([*args, "--config", str(self.config_path)])
        finally:
            sys.stdin = stdin
        if check and code != 0:
            raise AssertionError(f"mailet-mta {' '.join(args)} failed with {code}")
        return out.getvalue()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def start_all(*servers: ServerProcess, timeout: float = 30.0) -> tuple[ServerProcess, ...]:
    """Start ``servers`` side by side (none needs another's port) and wait for each;
    if one fails, the others are stopped before the error is raised."""
    for server in servers:
        server.launch()
    try:
        for server in servers:
            server.wait_ready(timeout)
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def pop3_messages(srv: ServerProcess, user: str, password: str,
                  listener: str = "pop3", tls_context=None) -> list[bytes]:
    """Every message in ``user``'s mailbox on ``srv``, read over POP3 (left there);
    with ``tls_context``, over TLS from the first byte (POP3S)."""
    import poplib

    if tls_context is not None:
        box = poplib.POP3_SSL("127.0.0.1", srv.port(listener), timeout=10,
                              context=tls_context)
    else:
        box = poplib.POP3("127.0.0.1", srv.port(listener), timeout=10)
    try:
        box.user(user)
        box.pass_(password)
        return [b"\r\n".join(box.retr(i + 1)[1]) for i in range(box.stat()[0])]
    finally:
        box.quit()
