"""The suite's lookup guard (tests/netguard): the test process, the subprocesses it starts and their
kernels refuse every name lookup outside loopback and record it, so that the run fails."""

import os
import socket
import subprocess
import sys

import nbformat
import pytest

REFUSED = "tests refuse name lookups outside loopback"
# A Binance production host, reached the way ccxt reaches it (aiohttp, asyncio's getaddrinfo), then
# a bare lookup; each refusal is printed with the process id.
LOOK_UP = """\
import asyncio, os, socket, threading
import aiohttp

async def fetch():
    async with aiohttp.ClientSession() as session:
        await session.get("https://api.binance.com/api/v3/time")

def attempt(lookup):
    try:
        lookup()
    except OSError as e:
        print(os.getpid(), e)

# in a thread of its own: a kernel runs an event loop already
for lookup in (lambda: asyncio.run(fetch()), lambda: socket.gethostbyname("example.com")):
    thread = threading.Thread(target=attempt, args=(lookup,))
    thread.start()
    thread.join()
"""


def hosts(refused):
    return [line.split(" ", 1)[1] for line in refused]


def test_the_test_process_refuses_and_records_every_lookup_outside_loopback(lookups):
    attempts = [
        (socket.getaddrinfo, ("API.BINANCE.COM.", 443)),
        (socket.gethostbyname, ("example.com",)),
        (socket.gethostbyname_ex, (b"10.1.2.3",)),
        (socket.gethostbyaddr, ("8.8.8.8",)),
        (socket.getnameinfo, (("192.168.0.1", 80), 0)),
        (socket.getaddrinfo, ("0.0.0.0", 80)),  # binding every interface is not loopback either
    ]
    for lookup, args in attempts:
        with pytest.raises(socket.gaierror, match=REFUSED):
            lookup(*args)
    assert hosts(lookups()) == [
        "getaddrinfo 'API.BINANCE.COM.'",
        "gethostbyname 'example.com'",
        "gethostbyname_ex b'10.1.2.3'",
        "gethostbyaddr '8.8.8.8'",
        "getnameinfo '192.168.0.1'",
        "getaddrinfo '0.0.0.0'",
    ]
    for host in ("localhost", "LocalHost", "127.0.0.1", "127.8.9.10", "::1"):
        assert socket.getaddrinfo(host, 80)
    assert socket.gethostbyname("localhost") == "127.0.0.1" and socket.getnameinfo(("127.0.0.1", 80), 0)
    assert len(lookups()) == len(attempts)  # loopback is never recorded


def test_subprocesses_refuse_and_record_every_lookup_outside_loopback(lookups):
    result = subprocess.run([sys.executable, "-c", LOOK_UP], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all(REFUSED in line for line in lines)
    pid = lines[0].split()[0]
    assert pid != str(os.getpid())
    assert lookups() == [f"{pid} getaddrinfo 'api.binance.com'", f"{pid} gethostbyname 'example.com'"]


def test_papermill_kernels_refuse_and_record_every_lookup_outside_loopback(lookups, tmp_path):
    import papermill

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(LOOK_UP)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, tmp_path / "lookup.ipynb")
    papermill.execute_notebook(
        str(tmp_path / "lookup.ipynb"), str(tmp_path / "out.ipynb"), kernel_name="python3", progress_bar=False
    )
    lines = nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[0].outputs[0]["text"].splitlines()
    assert len(lines) == 2 and all(REFUSED in line for line in lines)
    pid = lines[0].split()[0]
    assert pid != str(os.getpid())
    assert lookups() == [f"{pid} getaddrinfo 'api.binance.com'", f"{pid} gethostbyname 'example.com'"]
