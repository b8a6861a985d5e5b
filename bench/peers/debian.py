"""Debian's own server binaries for the benchmark peers, without installing them.

``binaries(packages)`` runs ``apt-get download`` for the packages into
``bench/.cache/debs`` and unpacks them with ``dpkg -x`` into ``bench/.cache/root``
(git-ignored); nothing is installed, no maintainer script runs, no system service
starts, nothing is written to ``/etc``. The unpacked binaries find their own shared
libraries through ``LD_LIBRARY_PATH`` (:func:`library_path`); the libraries they need
from other packages must already be on the machine (``ldd`` is checked and a missing
one named). When the download fails (no network to the archive) and the package is
installed system-wide, the system's binaries are used instead (root ``/``), each run
with its own configuration directory.

``system_account`` creates a system user or group (``useradd --system``/``groupadd
--system``) only when it does not exist: Postfix refuses to run without its
``mail_owner`` and ``setgid_group``, Dovecot without its internal and login users.
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "bench" / ".cache"


class PeerUnavailable(RuntimeError):
    """The peer's binaries cannot be had on this machine (the message says why)."""


def _unpacked(root: Path, package: str) -> bool:
    return (root / ".unpacked" / package).exists()


def binaries(packages: list[str], probe: str, cache: Path = CACHE) -> Path:
    """The root directory under which ``probe`` (e.g. ``usr/sbin/postfix``) exists.

    Download and unpack on first use; later calls reuse the cache.
    """
    root = cache / "root"
    if all(_unpacked(root, p) for p in packages) and (root / probe).exists():
        return root
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    got = subprocess.run(["apt-get", "download", *packages], cwd=debs,
                         capture_output=True, text=True)
    if got.returncode != 0:
        if (Path("/") / probe).exists():
            return Path("/")
        raise PeerUnavailable(f"apt-get download {' '.join(packages)} failed and /{probe} "
                              f"is not installed: {got.stderr.strip()[-500:]}")
    (root / ".unpacked").mkdir(parents=True, exist_ok=True)
    for package in packages:
        deb = max(debs.glob(f"{package}_*.deb"), key=lambda p: p.stat().st_mtime)
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
        (root / ".unpacked" / package).write_text(deb.name + "\n")
    return root


def library_path(root: Path) -> str:
    """``LD_LIBRARY_PATH`` for binaries unpacked under ``root`` (empty for ``/``)."""
    if root == Path("/"):
        return os.environ.get("LD_LIBRARY_PATH", "")
    dirs = [root / "usr/lib/postfix", root / "usr/lib/dovecot",
            root / "usr/lib/x86_64-linux-gnu"]
    return os.pathsep.join(str(d) for d in dirs if d.is_dir())


def missing_libraries(root: Path, executables: list[str]) -> list[str]:
    """Shared libraries ``ldd`` cannot find for the given executables (paths in root)."""
    env = dict(os.environ, LD_LIBRARY_PATH=library_path(root))
    missing = set()
    for exe in executables:
        out = subprocess.run(["ldd", str(root / exe)], capture_output=True, text=True,
                             env=env).stdout
        missing.update(line.split()[0] for line in out.splitlines() if "not found" in line)
    return sorted(missing)


def check_libraries(root: Path, executables: list[str]) -> None:
    missing = missing_libraries(root, executables)
    if missing:
        raise PeerUnavailable(f"shared libraries not on this machine: {', '.join(missing)} "
                              "(apt-get install the Debian packages that provide them)")


def overlay_command(root: Path, command: list[str],
                    dirs: tuple[str, ...] = ("usr/lib", "usr/bin", "usr/sbin")) -> list[str]:
    """``command`` run where the unpacked ``dirs`` appear at their compiled-in paths.

    For binaries that look for their helpers at fixed paths (Dovecot's
    ``/usr/lib/dovecot/modules``, ``/usr/bin/doveconf``): a private mount namespace
    (``unshare --mount``) in which each ``/usr/...`` directory is a read-only overlay
    of the unpacked tree on top of the system's. The system's own mounts are not
    touched; the namespace ends with the command's last process.
    """
    if root == Path("/"):
        return command
    mounts = " && ".join(
        f"mount -t overlay bench-peer -o lowerdir={shlex.quote(str(root / d))}:/{d} /{d}"
        for d in dirs)
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            f"{mounts} && exec \"$@\"", "sh", *command]


def system_account(user: str | None = None, group: str | None = None) -> list[str]:
    """Create a system group and/or user when missing; what was created, for the log."""
    made = []
    if group:
        try:
            grp.getgrnam(group)
        except KeyError:
            subprocess.run(["groupadd", "--system", group], check=True)
            made.append(f"group {group}")
    if user:
        try:
            pwd.getpwnam(user)
        except KeyError:
            cmd = ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                   "--shell", shutil.which("nologin") or "/usr/sbin/nologin"]
            try:
                grp.getgrnam(user)
                cmd += ["--gid", user]
            except KeyError:
                cmd += ["--user-group"]
            subprocess.run(cmd + [user], check=True)
            made.append(f"user {user}")
    return made


def unprivileged_ids() -> tuple[int, int]:
    """uid and gid of ``nobody`` (the owner of the peers' mailboxes)."""
    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid



def wait_for_banner(peer, port: int, banner: bytes, quit: bytes,
                    timeout: float = 30.0) -> None:
    """Wait until ``peer.proc`` answers on 127.0.0.1:``port`` with ``banner``.

    ``peer`` has ``proc``, ``name``, ``log_text()`` and ``stop()``; it is stopped when
    it does not answer in time, and its log is in the error either way.
    """
    import socket
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if peer.proc.poll() is not None:
            raise RuntimeError(f"{peer.name} exited with {peer.proc.returncode}: "
                               + peer.log_text()[-2000:])
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                if s.recv(512).startswith(banner):
                    s.sendall(quit)
                    return
        except OSError:
            time.sleep(0.1)
    peer.stop()
    raise RuntimeError(f"{peer.name} did not answer in time: " + peer.log_text()[-2000:])


def log_text(workdir: Path, names: tuple[str, ...]) -> str:
    """The peer's log files under ``workdir``, one after the other."""
    return "".join((workdir / n).read_text(errors="replace") for n in names
                   if (workdir / n).exists())


def run_until_signalled(peer, banner: str) -> None:
    """Start ``peer``, print ``banner`` (formatted with it), stop it on SIGTERM or ^C."""
    import signal
    import sys
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    peer.start()
    print(banner.format(peer=peer), flush=True)
    try:
        peer.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        peer.stop()
