"""ZooKeeper C client (cli_mt from libzookeeper-mt 3.8.0) transcripts: Rookery
must produce the same normalised output as Apache ZooKeeper 3.8.

``/usr/lib/zookeeper/bin/cli_mt`` (Debian package ``zookeeper-bin``) reads
commands from stdin.  Its command set (``help``)::

    create [+[e|s|c|t=ttl]] <path>     create2 [...] <path>   (data is "new",
    delete <path>   set <path> <data>   get <path>   ls <path>   ls2 <path>
    sync <path>   exists <path>   wexists <path>   myid   addauth <scheme> <cred>
    config   reconfig ...   od   quit

Things worth knowing (from the 3.8 cli.c source, cross-checked by running it):

* every request is asynchronous except ``exists``/``wexists`` (synchronous in
  the multi-threaded build; they print nothing on success and
  ``Error <rc> for <path>`` otherwise);
* ``get``/``ls``/``ls2``/``exists``/``config`` set watches with the default
  watcher, which prints ``Watcher <TYPE> state = <STATE> for path <p>``;
* ``set`` and ``delete`` always use version -1 (no versioned set/delete), and
  there is no getacl/setacl/multi; ``addauth`` has no completion callback, so
  only a failure is visible (AUTH_FAILED session event);
* ``od`` sets /od to "fire off" and then pipelines 200 x (set 64 KiB, get with
  watch) on /od;
* all output goes to stderr except ``myid`` (stdout).

Pacing: after every command the runner sends ``sync /``.  Requests on one
session are answered in order and the C library runs completions and watcher
callbacks on one thread in arrival order, so the ``[/]: rc = 0`` /
``\\tname = /`` reply of that marker ends the output of the command.  Events
caused by *another* session are awaited explicitly (``S~ regex`` steps).

Script syntax (``SCRIPTS`` below), one step per line, ``S`` is a session
letter (one cli_mt process per letter, started at its first step):

    S: <command>        send command + marker, record the output
    S: quit             send quit, wait for the process to exit
    S~ <regex>          wait for regex in S's output, then marker-flush
    S! <command> ~ <regex>   send command (no marker), wait for regex, then
                        close stdin and wait for exit (for commands after
                        which the session is gone, e.g. failed addauth)

Normalisation: C-library log lines (``...:ZOO_WARN@...``) are dropped;
``time = N msec`` -> ``<t>``; ctime/mtime -> ``<time>`` (or ``<epoch>`` for
1970; a time more than a day away from now is kept verbatim so a unit bug
shows up); czxid/mzxid -> ``Z1, Z2, ...`` by first appearance (0 stays 0);
session ids / ephemeralOwner -> ``<session X>`` for the session letter that
owns the id; child lists of ``ls``/``ls2`` are sorted, and so are runs of
``Watcher`` lines awaited in ``S~`` steps (events caused by another session:
the order in which ZooKeeper deletes a closed session's ephemerals is its
HashSet iteration order, i.e. unspecified); runs of a repeated
1- or 2-line block (``od``) are collapsed to the block + ``[xN]``.

Debug by hand:  python3 tests/compat/test_c_client.py HOST:PORT [script] [--raw]
"""

from __future__ import annotations

import concurrent.futures
import datetime as _dt
import difflib
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

CLI_MT = os.environ.get("CLI_MT", "/usr/lib/zookeeper/bin/cli_mt")

STEP_TIMEOUT = 6.0      # one command + its marker reply
CONNECT_TIMEOUT = 10.0  # cli_mt start until "Got a new session id"
EXIT_TIMEOUT = 5.0      # quit / EOF until the process is gone
RUN_TIMEOUT = 25.0      # whole script

MARKER_CMD = "sync /"

# --------------------------------------------------------------------------
# Scripts
# --------------------------------------------------------------------------

SCRIPTS: Dict[str, str] = {
    # CRUD, modes, errors, own-session watches, a second session observing
    # the first one's ephemerals and their deletion when it quits.
    "core": r"""
A: create /c
A: create /c
A: get /c
A: set /c hello
A: get /c
A: set /nope x
A: get /c/missing
A: ls /c/missing
A: create /c/missing/child
A: ls /c
A: create +e /c/eph
A: create +s /c/seq-
A: create +s /c/seq-
A: create +es /c/eseq-
A: create +e /c/eph/child
A: create +c /c/cont
A: create +t=60000 /c/ttl
A: create +st=60000 /c/ttlseq-
A: create +t=99999999999999 /c/ttlbig
A: create2 /c/two
A: create2 +e /c/eph2
A: create2 +s /c/seq2-
A: ls /c
A: ls2 /c
A: ls2 /c/eph
A: get /c/eph
A: exists /c/nothere
A: exists /c/missing/deeper
A: create /c/nothere
A: exists /c
A: wexists /c/two
A: set /c/two v2
A: get /c/two
A: delete /c
A: delete /c/nothere
A: delete /c/nothere
A: get /c/two
A: ls /c
A: delete /c/two
A: sync /c
A: addauth digest user1:pw1
A: get /c
A: config
A: ls2 /
A: ls /zookeeper
A: myid
B: get /c/eph
B: get /c/eph2
B: ls /c
B: create +e /c/eph/fromb
B: set /c from-b
A~ Watcher CHANGED_EVENT state = CONNECTED_STATE for path /c\n
A: get /c
A: create /c/shared
B~ Watcher CHILD_EVENT state = CONNECTED_STATE for path /c\n
B: ls /c
A: quit
B~ Watcher DELETED_EVENT state = CONNECTED_STATE for path /c/eph2\n
B: ls /c
B: get /c/eph
B: delete /c/eph
B: create2 +e /c/eph
B: myid
""",
    # 64 KiB values, 400 pipelined requests, one watch event per set.
    "overdose": r"""
A: create /od
A: get /od
A: od
A~ Recvd 200 responses for 200 requests sent\n
A: get /c
A: ls2 /od
""",
    # An unknown auth scheme: the server answers AuthFailed and closes the
    # connection; the session is unusable afterwards.
    "authfail": r"""
A: create /af
A: addauth digest user1:pw1
A: get /af
A! addauth nosuchscheme whatever ~ Authentication failure\. Shutting down\.\.\.\n
B: get /af
B: ls /
""",
}

# Lines that must appear in the normalised transcript (so the comparison can
# not pass on two empty or broken outputs).
EXPECTED: Dict[str, List[str]] = {
    "core": [
        "A| Watcher SESSION_EVENT state = CONNECTED_STATE",
        "A| Got a new session id: <session A>",
        "A| [/c]: rc = 0", "A| \tname = /c",
        "A| [/c]: rc = -110",                                   # NodeExists
        "A| new", "A| hello", "A| \tversion=1\taversion=0",     # data read back
        "A| Watcher CHANGED_EVENT state = CONNECTED_STATE for path /c",
        "A| /nope: rc = -101 Stat:", "A| /c/missing: rc = -101",  # NoNode
        "A| [/c/missing/child]: rc = -101",
        "A| Watcher CHILD_EVENT state = CONNECTED_STATE for path /c",
        "A| \tname = /c/seq-0000000001", "A| \tname = /c/seq-0000000002",
        "A| \tname = /c/eseq-0000000003",
        "A| [/c/eph/child]: rc = -108",                         # NoChildrenForEphemerals
        "A| Creating [/c/ttl] node (mode: 5)", "A| \tname = /c/ttl",
        "A| Error -8 for /c/ttlbig",     # TTL out of range, rejected by the C library
        "A| \tephemeralOwner = <session A>",
        "A| Error -101 for /c/nothere",
        "A| Watcher CREATED_EVENT state = CONNECTED_STATE for path /c/nothere",
        "A| Watcher CHANGED_EVENT state = CONNECTED_STATE for path /c/two",
        "A| /c: rc = -111",                                     # NotEmpty
        "A| /c/nothere: rc = 0", "A| /c/nothere: rc = -101",
        "A| Watcher DELETED_EVENT state = CONNECTED_STATE for path /c/two",
        "A| /zookeeper/config: rc = 0", "A| \tctime = <epoch>",
        "A| \tzookeeper", "A| \tquota",
        "A> quit", "A| Quitting...",
        "B| \tephemeralOwner = <session A>",
        "B| [/c/eph/fromb]: rc = -108",
        "B| Watcher DELETED_EVENT state = CONNECTED_STATE for path /c/eph",
        "B| Watcher DELETED_EVENT state = CONNECTED_STATE for path /c/eph2",
        "B| \tshared", "A| from-b",
        "B| \tephemeralOwner = <session B>",
        "A$ stdout: session Id = <session A>", "B$ stdout: session Id = <session B>",
    ],
    "overdose": [
        "A| Overdosing...", "A| od command response: rc = 0 Stat:",
        "A| Data completion /od rc = 0",
        "A| Watcher CHANGED_EVENT state = CONNECTED_STATE for path /od",
        "A| Recvd 200 responses for 200 requests sent",
        "A| \tversion=c9\taversion=0",                          # 1 + 200 sets
    ],
    "authfail": [
        "A| Watcher SESSION_EVENT state = AUTH_FAILED_STATE",
        "A| Authentication failure. Shutting down...",
        "B| new",
    ],
}

# --------------------------------------------------------------------------
# Script parsing
# --------------------------------------------------------------------------


@dataclass
class Step:
    session: str
    kind: str           # "cmd" | "quit" | "wait" | "final"
    text: str           # command (cmd/quit/final) or regex (wait)
    regex: str = ""     # for "final"

    def header(self) -> str:
        if self.kind == "wait":
            return f"{self.session}~ {self.text}"
        if self.kind == "final":
            return f"{self.session}! {self.text}"
        return f"{self.session}> {self.text}"


_STEP = re.compile(r"^([A-Z])([:~!])\s?(.*)$")


def parse_script(text: str) -> List[Step]:
    steps: List[Step] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _STEP.match(line)
        if not m:
            raise ValueError(f"bad script line: {raw!r}")
        sess, op, rest = m.groups()
        if op == ":":
            if rest.strip() == MARKER_CMD:
                raise ValueError(f"'{MARKER_CMD}' is the pacing marker; use another path")
            steps.append(Step(sess, "quit" if rest.strip() == "quit" else "cmd", rest))
        elif op == "~":
            steps.append(Step(sess, "wait", rest))
        else:
            cmd, sep, rx = rest.partition(" ~ ")
            if not sep:
                raise ValueError(f"'!' step needs ' ~ <regex>': {raw!r}")
            steps.append(Step(sess, "final", cmd.strip(), rx.strip()))
    return steps


# --------------------------------------------------------------------------
# Driving cli_mt
# --------------------------------------------------------------------------

# C library log line, e.g.
# 2026-11-25 14:22:37,875:25510(0x7ff4922856c0):ZOO_ERROR@check_events@2985: ...
_LIBLOG = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}:\d+\(0x[0-9a-f]+\):ZOO_[A-Z]+@[^\n]*\n")
_LOGGAP = r"(?:\d{4}-\d\d-\d\d [^\n]*ZOO_[A-Z]+@[^\n]*\n)*"
_MARKER_OK = re.compile(r"\[/\]: rc = 0\n" + _LOGGAP + r"\tname = /\n")
_MARKER_ANY = re.compile(r"\[/\]: rc = (-?\d+)\n")
_SESSION_ID = re.compile(r"Got a new session id: 0x([0-9a-f]+)\n")


class CliMt:
    """One cli_mt process; stderr/stdout collected by reader threads."""

    def __init__(self, name: str, host_port: str):
        self.name = name
        env = dict(os.environ)
        env["TZ"] = "UTC"
        env["LC_ALL"] = "C"
        self.proc = subprocess.Popen([CLI_MT, "-h", host_port], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self._cond = threading.Condition()
        self._err = bytearray()
        self._out = bytearray()
        self._eof = {"err": False, "out": False}
        self._threads = [
            threading.Thread(target=self._reader, args=(self.proc.stderr, self._err, "err"),
                             daemon=True),
            threading.Thread(target=self._reader, args=(self.proc.stdout, self._out, "out"),
                             daemon=True),
        ]
        for t in self._threads:
            t.start()
        self.pos = 0            # start of the not yet attributed stderr output
        self.session_id: Optional[str] = None
        self.closed = False

    def _reader(self, f, buf: bytearray, key: str) -> None:
        fd = f.fileno()
        while True:
            try:
                b = os.read(fd, 65536)
            except OSError:
                b = b""
            with self._cond:
                if not b:
                    self._eof[key] = True
                    self._cond.notify_all()
                    return
                buf.extend(b)
                self._cond.notify_all()

    def err_text(self) -> str:
        with self._cond:
            return self._err.decode("utf-8", "replace")

    def out_text(self) -> str:
        with self._cond:
            return self._out.decode("utf-8", "replace")

    def wait_for(self, pattern: re.Pattern, timeout: float) -> Optional[re.Match]:
        """Bounded wait for pattern in stderr at/after self.pos."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                m = pattern.search(self._err.decode("utf-8", "replace"), self.pos)
                if m:
                    return m
                left = deadline - time.monotonic()
                if left <= 0 or self._eof["err"]:
                    return None
                self._cond.wait(min(left, 0.2))

    def send(self, line: str) -> bool:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write((line + "\n").encode())
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def take(self, end: int, resume: Optional[int] = None) -> str:
        """Output from self.pos to end; continue after resume (default end)."""
        text = self.err_text()[self.pos:end]
        self.pos = end if resume is None else resume
        return text

    def flush_marker(self, timeout: float) -> Tuple[str, Optional[str]]:
        """Send the marker; return (output before it, problem or None)."""
        if not self.send(MARKER_CMD):
            return self.take(len(self.err_text())), "stdin closed (cli_mt gone?)"
        m = self.wait_for(_MARKER_ANY, timeout)
        if m and m.group(1) == "0":
            m2 = self.wait_for(_MARKER_OK, timeout)
            if m2:
                return self.take(m2.start(), m2.end()), None
        if m:
            return self.take(m.start(), m.end()), f"marker '{MARKER_CMD}' failed: rc = {m.group(1)}"
        return self.take(len(self.err_text())), f"no reply within {timeout}s"

    def wait_exit(self, timeout: float) -> bool:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        for t in self._threads:
            t.join(timeout=2)
        return True

    def close(self, timeout: float = EXIT_TIMEOUT) -> Tuple[str, Optional[str]]:
        """EOF on stdin, bounded wait for exit, kill if needed; remaining output."""
        problem = None
        if not self.closed:
            self.closed = True
            try:
                if self.proc.stdin:
                    self.proc.stdin.close()
            except OSError:
                pass
            if not self.wait_exit(timeout):
                problem = f"cli_mt did not exit within {timeout}s after EOF; killed"
                self.kill()
        return self.take(len(self.err_text())), problem

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.kill()  # our own child, by pid
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                if f:
                    f.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=2)


@dataclass
class Transcript:
    chunks: List[Tuple[str, str, str]] = field(default_factory=list)  # (session, header, raw)
    stdouts: Dict[str, str] = field(default_factory=dict)
    sessions: Dict[str, str] = field(default_factory=dict)             # letter -> hex id
    problems: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)                     # raw artifact only
    raw: Dict[str, str] = field(default_factory=dict)                  # full stderr per session

    def raw_text(self) -> str:
        out = [f"note: {n}" for n in self.notes]
        for s, text in sorted(self.raw.items()):
            out.append(f"===== session {s} ({self.sessions.get(s, '?')}) stderr =====")
            out.append(text)
            out.append(f"===== session {s} stdout =====")
            out.append(self.stdouts.get(s, ""))
        return "\n".join(out)


def run_script(host_port: str, script: str, timeout: float = RUN_TIMEOUT) -> Transcript:
    steps = parse_script(SCRIPTS.get(script, script))
    tr = Transcript()
    clis: Dict[str, CliMt] = {}
    deadline = time.monotonic() + timeout

    def left(cap: float) -> float:
        return max(0.1, min(cap, deadline - time.monotonic()))

    def problem(sess: str, header: str, msg: str) -> None:
        tr.problems.append(f"{header}: {msg}")
        tr.chunks.append((sess, "!!", f"{header}: {msg}\n"))

    try:
        for step in steps:
            if time.monotonic() > deadline:
                problem(step.session, step.header(), f"script deadline ({timeout}s) exceeded")
                break
            cli = clis.get(step.session)
            if cli is None:
                cli = clis[step.session] = CliMt(step.session, host_port)
                m = cli.wait_for(_SESSION_ID, left(CONNECT_TIMEOUT))
                if not m:
                    problem(step.session, f"{step.session}$ connect", "no session established")
                    break
                tr.sessions[step.session] = m.group(1)
                tr.chunks.append((step.session, f"{step.session}$ connect",
                                  cli.take(m.end())))
            if cli.closed:
                problem(step.session, step.header(), "session already closed")
                break
            header = step.header()
            if step.kind == "cmd":
                if not cli.send(step.text):
                    problem(step.session, header, "cannot write to cli_mt")
                    break
                text, err = cli.flush_marker(left(STEP_TIMEOUT))
                tr.chunks.append((step.session, header, text))
                if err:
                    problem(step.session, header, err)
                    break
            elif step.kind == "wait":
                m = cli.wait_for(re.compile(step.text), left(STEP_TIMEOUT))
                if not m:
                    tr.chunks.append((step.session, header, cli.take(len(cli.err_text()))))
                    problem(step.session, header, "expected output did not appear")
                    break
                text, err = cli.flush_marker(left(STEP_TIMEOUT))
                tr.chunks.append((step.session, header, text))
                if err:
                    problem(step.session, header, err)
                    break
            elif step.kind == "quit":
                cli.send("quit")
                cli.closed = True
                ok = cli.wait_exit(left(EXIT_TIMEOUT))
                tr.chunks.append((step.session, header, cli.take(len(cli.err_text()))))
                if not ok:
                    problem(step.session, header, "cli_mt did not exit after quit")
                    break
            elif step.kind == "final":
                cli.send(step.text)
                m = cli.wait_for(re.compile(step.regex), left(STEP_TIMEOUT))
                if not m:
                    tr.chunks.append((step.session, header, cli.take(len(cli.err_text()))))
                    problem(step.session, header, f"expected /{step.regex}/ did not appear")
                    break
                # After an AUTH_FAILED event cli_mt's watcher calls
                # zookeeper_close() itself and then clears its handle; if EOF
                # arrives while that is still running, main() closes the same
                # handle again and the process can hang (client-side race).
                # Give the watcher a moment, and do not count a hang at exit
                # against the server: the output is complete once "bye" is out.
                time.sleep(0.5)
                text, err = cli.close(left(3.0))
                # Whether cli_mt gets as far as printing "bye" after an auth failure depends on
                # that same race, so it is not part of the comparison.
                text = "".join(l for l in text.splitlines(keepends=True) if l.strip() != "bye")
                tr.chunks.append((step.session, header, text))
                if err:
                    tr.notes.append(f"{header}: {err}")
        for sess, cli in clis.items():
            if not cli.closed:
                text, err = cli.close(left(EXIT_TIMEOUT))
                tr.chunks.append((sess, f"{sess}$ eof", text))
                if err:
                    problem(sess, f"{sess}$ eof", err)
    finally:
        for sess, cli in clis.items():
            cli.kill()
            tr.stdouts[sess] = cli.out_text()
            tr.raw[sess] = cli.err_text()
    return tr


# --------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------

_TIME_LINE = re.compile(r"^time = -?\d+ msec$")
_CTIME = re.compile(r"^(\t(?:ctime = |mtime=))(.*)$")
_ZXID = re.compile(r"^(\t[cm]zxid=)([0-9a-f]+)$")
_OWNER = re.compile(r"^(\tephemeralOwner = )([0-9a-f]+)$")
_GOT_ID = re.compile(r"^(Got a new session id: 0x)([0-9a-f]+)$")
_MYID = re.compile(r"^(session Id = )([0-9a-f]+)$")
_LS_HEAD = re.compile(r"^/\S*: rc = -?\d+$")


class Normaliser:
    def __init__(self, sessions: Dict[str, str]):
        self.sess = {int(v, 16): k for k, v in sessions.items()}
        self.zxids: Dict[int, str] = {0: "0"}
        self.now = time.time()

    def _sid(self, hexid: str) -> str:
        v = int(hexid, 16)
        if v == 0:
            return "0"
        return f"<session {self.sess.get(v, '?')}>"

    def _time(self, s: str) -> str:
        try:
            t = _dt.datetime.strptime(s.strip(), "%a %b %d %H:%M:%S %Y")
        except ValueError:
            return s
        ts = t.replace(tzinfo=_dt.timezone.utc).timestamp()
        if ts == 0:
            return "<epoch>"
        if abs(ts - self.now) < 86400:
            return "<time>"
        return s  # implausible timestamp: keep it visible

    def line(self, l: str) -> str:
        if _TIME_LINE.match(l):
            return "time = <t> msec"
        m = _CTIME.match(l)
        if m:
            return m.group(1) + self._time(m.group(2))
        m = _ZXID.match(l)
        if m:
            v = int(m.group(2), 16)
            label = self.zxids.setdefault(v, f"Z{len(self.zxids)}")
            return m.group(1) + label
        m = _OWNER.match(l)
        if m:
            return m.group(1) + self._sid(m.group(2))
        m = _GOT_ID.match(l)
        if m:
            return "Got a new session id: " + self._sid(m.group(2))
        m = _MYID.match(l)
        if m:
            return m.group(1) + self._sid(m.group(2))
        return l

    def chunk(self, raw: str, sort_events: bool = False) -> List[str]:
        text = _LIBLOG.sub("", raw)
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if sort_events:
            lines = _sort_event_runs(lines)
        # sort the child list that follows "<path>: rc = N" (ls / ls2)
        out: List[str] = []
        i = 0
        while i < len(lines):
            out.append(lines[i])
            if _LS_HEAD.match(lines[i]):
                j = i + 1
                while j < len(lines) and lines[j].startswith("\t") and "=" not in lines[j]:
                    j += 1
                out.extend(sorted(lines[i + 1:j]))
                i = j
                continue
            i += 1
        return _collapse([self.line(l) for l in out])


def _sort_event_runs(lines: List[str]) -> List[str]:
    """Sort each run of consecutive ``Watcher ...`` lines.

    Used for events caused by another session (``S~`` steps): e.g. when a
    session closes, ZooKeeper deletes its ephemerals in HashSet iteration
    order, so the order of the resulting DELETED/CHILD events is unspecified.
    """
    out: List[str] = []
    run: List[str] = []
    for l in lines + [""]:
        if l.startswith("Watcher "):
            run.append(l)
            continue
        out.extend(sorted(run))
        run = []
        out.append(l)
    return out[:-1]


def _collapse(lines: List[str]) -> List[str]:
    """Collapse >= 3 consecutive repetitions of a 1- or 2-line block."""
    out: List[str] = []
    i = 0
    while i < len(lines):
        done = False
        for k in (1, 2):
            block = lines[i:i + k]
            if len(block) < k:
                continue
            n = 1
            while lines[i + n * k:i + (n + 1) * k] == block:
                n += 1
            if n >= 3:
                out.extend(block)
                out.append(f"[previous {k} line(s) x{n}]")
                i += n * k
                done = True
                break
        if not done:
            out.append(lines[i])
            i += 1
    return out


def normalise(tr: Transcript) -> List[str]:
    norm = Normaliser(tr.sessions)
    out: List[str] = []
    for sess, header, raw in tr.chunks:
        if header == "!!":
            out.append(f"!! {raw.rstrip()}")
            continue
        out.append(header)
        sort_events = header.startswith(f"{sess}~")
        out.extend(f"{sess}| {l}" for l in norm.chunk(raw, sort_events))
    for sess in sorted(tr.stdouts):
        for l in tr.stdouts[sess].splitlines():
            out.append(f"{sess}$ stdout: {norm.line(l)}")
    return out


def transcript_text(lines: List[str]) -> str:
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------


def _check_expected(lines: List[str], script: str, who: str) -> None:
    present = set(lines)
    missing = [l for l in EXPECTED[script] if l not in present]
    assert not missing, (f"{who}: expected lines missing from the '{script}' cli_mt "
                         f"transcript: {missing}\n--- transcript ---\n{transcript_text(lines)}")


def _bad_lines(lines: List[str]) -> List[str]:
    return [l for l in lines if l.startswith("!!")]


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_c_client_matches_zookeeper(script, zookeeper, rookery, tmp_path):
    if not os.access(CLI_MT, os.X_OK):
        pytest.fail(f"{CLI_MT} not found (Debian package zookeeper-bin)", pytrace=False)
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        f_zk = ex.submit(run_script, zookeeper.host_port, script)
        f_rk = ex.submit(run_script, rookery.host_port, script)
        zk_tr, rk_tr = f_zk.result(), f_rk.result()
    zk, rk = normalise(zk_tr), normalise(rk_tr)
    for who, tr, lines in (("zookeeper", zk_tr, zk), ("rookery", rk_tr, rk)):
        (tmp_path / f"{who}.txt").write_text(transcript_text(lines))
        (tmp_path / f"{who}.raw.txt").write_text(tr.raw_text())

    # the reference run must be clean, else the script/harness is broken
    assert not _bad_lines(zk), (f"cli_mt harness problems against ZooKeeper: {_bad_lines(zk)}\n"
                                f"{zk_tr.raw_text()}")
    _check_expected(zk, script, "zookeeper")

    if zk != rk:
        diff = "".join(difflib.unified_diff(
            transcript_text(zk).splitlines(keepends=True),
            transcript_text(rk).splitlines(keepends=True),
            fromfile=f"zookeeper/{script}", tofile=f"rookery/{script}", n=4))
        print(diff)
        pytest.fail(
            f"cli_mt transcript for '{script}' differs (- zookeeper, + rookery); "
            f"artifacts in {tmp_path}\n{diff}\n--- rookery log tail ---\n"
            f"{rookery.log_tail(40)}", pytrace=False)
    assert not _bad_lines(rk), _bad_lines(rk)
    _check_expected(rk, script, "rookery")


# --------------------------------------------------------------------------
# Manual use
# --------------------------------------------------------------------------

if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if not args:
        print(__doc__)
        sys.exit(2)
    names = args[1:] or list(SCRIPTS)
    for name in names:
        res = run_script(args[0], name)
        print(f"########## {name}")
        print(res.raw_text() if "--raw" in sys.argv else transcript_text(normalise(res)))
