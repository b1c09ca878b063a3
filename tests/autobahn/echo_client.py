#!/usr/bin/env python3
"""Stand-in testee: the behaviour `tether --echo URL` is meant to have.

Connects to URL, sends every received message back unchanged (text stays text, binary
stays binary, same bytes), and exits when the server closes. Used to check the harness
itself against a known peer (run with TESTEE=standin).

Options mirror what tether offers the server: no permessage-deflate, no message size
limit (cases 9.* send messages up to 16 MiB), and no client pings of its own.
"""
import asyncio
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


async def main(url):
    async with connect(url, compression=None, max_size=None, ping_interval=None,
                       close_timeout=5) as ws:
        try:
            async for message in ws:  # str for text frames, bytes for binary
                await ws.send(message)
        except ConnectionClosed:
            return 1  # closed with an error: expected in many cases, not a harness error
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: echo_client.py URL")
    sys.exit(asyncio.run(main(sys.argv[1])))
