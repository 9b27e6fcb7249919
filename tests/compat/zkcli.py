"""Run scripted zkCli.sh sessions and normalise their output.

One JVM per script: the script is fed on stdin.  Without jline on the
classpath (the Debian package lacks jline.jar) zkCli prints no prompts and
just executes one line at a time, printing results to stdout and most
errors / "Created ..." messages to stderr; we merge both into one pipe so the
relative order is kept.

Script syntax (files in zkcli_scripts/*.zk):
  * blank lines and lines starting with '#' are not sent;
  * '#!sleep N' waits until every previous command has completed (its
    marker output has been seen) and then sleeps N seconds.

After each command the runner sends ``ls /__compat_marker_N``; the resulting
"Node does not exist: /__compat_marker_N" line delimits the output of
command N, so the normalised transcript reads "> command" + its output.

Debug usage:
  python3 tests/compat/zkcli.py HOST:PORT tests/compat/zkcli_scripts/core.zk [--raw]
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

HERE = Path(__file__).resolve().parent
SCRIPTS_DIR = HERE / "zkcli_scripts"
ZKCLI = "/usr/share/zookeeper/bin/zkCli.sh"
MARKER_PREFIX = "/__compat_marker_"
RUN_TIMEOUT = 60.0


@dataclass
class CliResult:
    raw: str
    returncode: Optional[int]
    timed_out: bool
    lines: List[str] = field(default_factory=list)   # normalised transcript
    events: List[str] = field(default_factory=list)  # sorted watch events

    def text(self) -> str:
        out = list(self.lines)
        out.append("--- watch events (sorted multiset) ---")
        out.extend(self.events)
        return "\n".join(out) + "\n"


def load_script(name_or_path: str) -> List[str]:
    p = Path(name_or_path)
    if not p.exists():
        p = SCRIPTS_DIR / f"{name_or_path}.zk"
    return p.read_text().splitlines()


def parse_script(lines: List[str]) -> List[str]:
    """Commands and '#!sleep N' directives, comments/blank lines dropped."""
    out = []
    for line in lines:
        s = line.strip()
        if not s or (s.startswith("#") and not s.startswith("#!")):
            continue
        out.append(s)
    return out


def _marker(n: int) -> str:
    return f"{MARKER_PREFIX}{n}"


def run_script(host_port: str, script_lines: List[str],
               timeout: float = RUN_TIMEOUT, jvm_flags: str = "") -> CliResult:
    """Run one zkCli JVM against host_port, feeding the script on stdin.

    After every command a marker command ``ls /__compat_marker_N`` is sent;
    its output ("Node does not exist: ...") delimits the output of command N,
    so the transcript can be rendered as "> command" + output.
    """
    items = parse_script(script_lines)
    env = dict(os.environ)
    env["TZ"] = "UTC"
    # Faster JVM start; bounded per-request timeout so a server that never
    # answers turns into an error line instead of a hang.
    env["CLIENT_JVMFLAGS"] = ("-XX:TieredStopAtLevel=1 -XX:+UseSerialGC "
                              "-Dzookeeper.request.timeout=10000 " + jvm_flags)
    env.pop("JVMFLAGS", None)
    proc = subprocess.Popen([ZKCLI, "-server", host_port], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env, text=True, bufsize=1)
    out_lines: List[str] = []
    cond = threading.Condition()

    def reader():
        assert proc.stdout is not None
        for line in proc.stdout:
            with cond:
                out_lines.append(line.rstrip("\r\n"))
                cond.notify_all()
        with cond:
            cond.notify_all()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    deadline = time.monotonic() + timeout
    timed_out = False
    commands: List[str] = []
    try:
        assert proc.stdin is not None
        for item in items:
            if item.startswith("#!sleep"):
                if commands:
                    pat = re.compile(re.escape(_marker(len(commands))) + r"(?!\d)")
                    with cond:
                        ok = cond.wait_for(
                            lambda: proc.poll() is not None or any(pat.search(l) for l in out_lines),
                            timeout=max(0.1, deadline - time.monotonic()))
                    if not ok:
                        timed_out = True
                        break
                time.sleep(float(item.split()[1]))
                continue
            commands.append(item)
            proc.stdin.write(f"{item}\nls {_marker(len(commands))}\n")
            proc.stdin.flush()
        if not timed_out:
            proc.stdin.write("quit\n")
            proc.stdin.flush()
            proc.stdin.close()
    except BrokenPipeError:
        pass
    try:
        proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        timed_out = True
    if timed_out and proc.poll() is None:
        proc.kill()  # our own child, by pid
        proc.wait(timeout=10)
    t.join(timeout=10)
    raw = "\n".join(out_lines) + "\n"
    lines, events = normalise(raw, commands)
    if timed_out:
        lines.append("!! zkCli timed out")
    return CliResult(raw=raw, returncode=proc.returncode, timed_out=timed_out,
                     lines=lines, events=events)


# ---------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------

_NOISE = [
    re.compile(r"^SLF4J: "),
    re.compile(r"^log4j:"),
    re.compile(r"^Connecting to \S+$"),
    re.compile(r"^Welcome to ZooKeeper!$"),
    re.compile(r"^JLine support is (disabled|enabled)$"),
    re.compile(r"^\[zk: .*\]"),                              # JLine prompt, if any
    re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}"),  # log4j/logback lines
    re.compile(r"^\d+ \[[^\]]+\] (TRACE|DEBUG|INFO|WARN|ERROR) "),  # slf4j-simple
]
_MARKER = re.compile(r"^(.*?)" + re.escape(MARKER_PREFIX) + r"(\d+)\b.*$")
_ZXID = re.compile(r"^(cZxid|mZxid|pZxid) = (0x[0-9a-fA-F]+)$")
_TIME = re.compile(r"^(ctime|mtime) = (.*)$")
_OWNER = re.compile(r"^ephemeralOwner = (0x[0-9a-fA-F]+)$")
_EVENT = re.compile(r"^WatchedEvent state:(\S+) type:(\S+) path:(.*?)(?: zxid: .*)?$")
_SESSIONID = re.compile(r"(session(?:id| id)?\s*[=:]?\s*)0x[0-9a-fA-F]+", re.I)
_PATH_LIST = re.compile(r"^\[(/.*)\]$")


def _segment_fixups(cmd: str, seg: List[str]) -> List[str]:
    """Per-command leniency for output whose order ZooKeeper does not define."""
    word = cmd.split()[0] if cmd else ""
    if word == "getEphemerals":
        # server returns a Java HashSet iteration order
        return [("[" + ", ".join(sorted(m.group(1).split(", "))) + "]")
                if (m := _PATH_LIST.match(l)) else l for l in seg]
    if word == "ls" and "-R" in cmd.split():
        # BFS order depends on the server's child order (HashSet in ZK)
        return sorted(seg)
    if word == "whoami" and seg[:1] == ["Auth scheme: User"]:
        return seg[:1] + sorted(seg[1:])
    return seg


def normalise(raw: str, commands: Optional[List[str]] = None) -> Tuple[List[str], List[str]]:
    """Return (normalised transcript lines, sorted watch events).

    * noise (SLF4J warnings, banners, log lines, prompts) removed;
    * output split per command at the marker lines and rendered as
      "> command" followed by its output (if ``commands`` is given);
    * "WATCHER::" lines and connection-state events (type:None) removed,
      other WatchedEvent lines moved to a separately compared sorted list
      (they are printed asynchronously by the event thread), together with
      the blank line zkCli prints in front of each of them;
    * zxids replaced by labels Z1, Z2, ... in order of first appearance
      (equal zxids stay equal; absolute values do not matter);
    * ctime/mtime values replaced by <time> (<epoch> for 1970-01-01);
    * ephemeralOwner values other than 0x0 replaced by S1, S2, ... labels.
    """
    commands = commands or []
    segments: List[List[str]] = [[]]
    events: List[str] = []
    zxids: dict = {}
    sessions: dict = {}

    def cur() -> List[str]:
        return segments[-1]

    def drop_prev_blank():
        if cur() and cur()[-1] == "":
            cur().pop()

    for line in raw.splitlines():
        line = line.rstrip()
        if any(p.search(line) for p in _NOISE):
            continue
        m = _MARKER.match(line)
        if m and commands:
            if not m.group(1).startswith("Node does not exist: "):
                cur().append(f"!! unexpected marker output: {line}")
            segments.append([])
            continue
        if line == "WATCHER::":
            drop_prev_blank()
            continue
        m = _EVENT.match(line)
        if m:
            drop_prev_blank()
            state, typ, path = m.groups()
            if typ != "None":
                events.append(f"{typ} {path} ({state})")
            continue
        m = _ZXID.match(line)
        if m:
            label = zxids.setdefault(int(m.group(2), 16), f"Z{len(zxids) + 1}")
            cur().append(f"{m.group(1)} = {label}")
            continue
        m = _TIME.match(line)
        if m:
            cur().append(f"{m.group(1)} = {'<epoch>' if '1970' in m.group(2) else '<time>'}")
            continue
        m = _OWNER.match(line)
        if m:
            v = int(m.group(1), 16)
            cur().append("ephemeralOwner = " +
                         (sessions.setdefault(v, f"S{len(sessions) + 1}") if v else "0x0"))
            continue
        cur().append(_SESSIONID.sub(lambda mm: mm.group(1) + "<session>", line))

    out: List[str] = []
    if not commands:
        out = segments[0]
    else:
        for i, cmd in enumerate(commands):
            out.append(f"> {cmd}")
            if i < len(segments):
                out.extend(_segment_fixups(cmd, segments[i]))
            else:
                out.append("!! no output (zkCli died or timed out before this command)")
        # anything after the last marker (quit) is only the Closed event
        for extra in segments[len(commands) + 1:]:
            out.extend(extra)
        tail = segments[len(commands)] if len(segments) > len(commands) else []
        if any(l.strip() for l in tail):
            out.append("> quit")
            out.extend(tail)
    while out and out[-1] == "":
        out.pop()
    return out, sorted(events)


def main(argv: List[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    res = run_script(argv[0], load_script(argv[1]))
    sys.stdout.write(res.raw if "--raw" in argv else res.text())
    if res.timed_out:
        print("!! timed out", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
