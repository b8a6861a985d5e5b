"""aiosmtpd peer: every message written durably to a Maildir before the 250.

    python bench/peers/aiosmtpd_maildir.py --maildir DIR --ready FILE

Listens on 127.0.0.1 on a free port and writes that port to ``--ready``. The handler
writes tmp → fsync → rename into new/ → fsync new/ in the loop's default executor
(``loop.run_in_executor``), so the event loop never waits on the disk.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from aiosmtpd.smtp import SMTP

from bench.common import maildir_deliver, maildir_make


class MaildirHandler:
    """aiosmtpd handler: DATA → one fsynced Maildir file per recipient set."""

    def __init__(self, root: Path):
        self.root = root

    async def handle_DATA(self, server, session, envelope):
        content = envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        prefix = (f"Return-Path: <{envelope.mail_from}>\r\n"
                  f"Delivered-To: {envelope.rcpt_tos[0]}\r\n").encode()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, maildir_deliver, self.root, prefix + content)
        return "250 OK"


async def main(args) -> None:
    root = maildir_make(Path(args.maildir))
    handler = MaildirHandler(root)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="peer.example", data_size_limit=0,
                     decode_data=False), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    Path(args.ready).write_text(str(port))
    await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--ready", required=True)
    asyncio.run(main(parser.parse_args()))
