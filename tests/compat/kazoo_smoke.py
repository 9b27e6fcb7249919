#!/usr/bin/env python3
"""Kazoo smoke test against a ZooKeeper-compatible server.

    python3 tests/compat/kazoo_smoke.py HOST:PORT [--super PASSWORD]
                                        [--only a,b] [--skip a,b] [-v]

Runs a series of named checks (see CHECKS at the bottom), each under its own
unique base path, prints PASS/FAIL per check and exits non-zero if any check
fails.  Every wait is bounded: a per-check watchdog aborts the whole process
(exit 2, with thread stacks) if a check hangs, e.g. because the server never
answers a request (kazoo's synchronous calls have no timeout of their own).

--super PASSWORD: the server was started with
  zookeeper.DigestAuthenticationProvider.superDigest=super:<digest of PASSWORD>;
  enables the super-user checks.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import socket
import sys
import threading
import time
import traceback
import uuid
from typing import Callable, Dict, List, Optional

from kazoo.client import KazooClient
from kazoo.exceptions import (
    AuthFailedError,
    BadVersionError,
    ConnectionClosedError,
    InvalidACLError,
    LockTimeout,
    NoAuthError,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    RolledBackError,
    RuntimeInconsistency,
)
from kazoo.protocol.states import EventType, KazooState, ZnodeStat
from kazoo.security import (
    ACL,
    OPEN_ACL_UNSAFE,
    READ_ACL_UNSAFE,
    Id,
    Permissions,
    make_acl,
    make_digest_acl,
    make_digest_acl_credential,
)

WAIT = 10.0            # bound for "this should happen"
QUIET = 0.4            # how long we listen for "this should NOT happen"
CHECK_TIMEOUT = 45.0   # watchdog per check


class CheckFailed(AssertionError):
    pass


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise CheckFailed(msg)


def eq(actual, expected, what: str) -> None:
    if actual != expected:
        raise CheckFailed(f"{what}: expected {expected!r}, got {actual!r}")


def raises(exc_type, fn: Callable, *args, what: str = "", **kwargs):
    try:
        fn(*args, **kwargs)
    except exc_type as e:
        return e
    except Exception as e:  # noqa: BLE001
        raise CheckFailed(f"{what or fn.__name__}: expected {exc_type.__name__}, "
                          f"got {type(e).__name__}: {e}") from e
    raise CheckFailed(f"{what or fn.__name__}: expected {exc_type.__name__}, got success")


def wait_until(pred: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise CheckFailed(f"timed out after {timeout}s waiting for: {what}")


class Recorder:
    """Thread-safe event sink usable as a kazoo watch callback."""

    def __init__(self):
        self.items: List = []
        self.cond = threading.Condition()

    def __call__(self, *args):
        with self.cond:
            self.items.append(args[0] if len(args) == 1 else args)
            self.cond.notify_all()

    def wait_count(self, n: int, what: str, timeout: float = WAIT) -> List:
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.items) >= n, timeout=timeout)
            if not ok:
                raise CheckFailed(f"timed out after {timeout}s waiting for {n} {what}; "
                                  f"got {self.items!r}")
            return list(self.items)

    def wait_for(self, pred, what: str, timeout: float = WAIT) -> List:
        with self.cond:
            ok = self.cond.wait_for(lambda: pred(self.items), timeout=timeout)
            if not ok:
                raise CheckFailed(f"timed out after {timeout}s waiting for {what}; "
                                  f"got {self.items!r}")
            return list(self.items)

    def quiet(self, n: int, what: str, duration: float = QUIET) -> None:
        time.sleep(duration)
        with self.cond:
            if len(self.items) != n:
                raise CheckFailed(f"unexpected {what}: {self.items[n:]!r}")


class Smoke:
    def __init__(self, hosts: str, super_pw: Optional[str], verbose: bool):
        self.hosts = hosts
        self.super_pw = super_pw
        self.verbose = verbose
        self.run_id = uuid.uuid4().hex[:8]
        self.root = f"/kazoo-smoke-{self.run_id}"
        self._clients: List[KazooClient] = []

    # -- helpers ----------------------------------------------------------

    def client(self, auth: Optional[str] = None, start: bool = True) -> KazooClient:
        c = KazooClient(hosts=self.hosts, timeout=10.0,
                        connection_retry=dict(max_tries=20, delay=0.1, backoff=1.5,
                                              max_delay=1.0))
        self._clients.append(c)
        if start:
            c.start(timeout=WAIT)
            if auth:
                c.add_auth("digest", auth)
        return c

    def close_all(self) -> None:
        for c in self._clients:
            try:
                c.stop()
                c.close()
            except Exception:  # noqa: BLE001
                pass
        self._clients.clear()

    def base(self, name: str, c: KazooClient) -> str:
        p = f"{self.root}/{name}"
        c.ensure_path(p)
        return p

    def log(self, msg: str) -> None:
        if self.verbose:
            print(f"    {msg}", flush=True)

    # -- checks -----------------------------------------------------------

    def check_connect(self):
        c = self.client()
        eq(c.state, KazooState.CONNECTED, "state")
        check(c.connected, "client.connected")
        sid, pwd = c.client_id
        check(sid != 0, "session id must be non-zero")
        eq(len(pwd), 16, "session password length")
        eq(c.command(b"ruok"), "imok", "ruok via kazoo")
        ver = c.server_version()
        self.log(f"server_version() = {ver}")
        check(len(ver) >= 2 and ver >= (3, 5), f"server_version() too old/odd: {ver}")
        check(c.exists("/") is not None, "exists(/)")
        check("zookeeper" in c.get_children("/"), "/zookeeper missing from ls /")
        check(c.exists("/zookeeper") is not None, "exists(/zookeeper)")
        eq(c.sync("/"), "/", "sync(/)")
        # a second concurrent session gets a different id
        c2 = self.client()
        check(c2.client_id[0] != sid, "two clients share a session id")

    def check_crud(self):
        c = self.client()
        b = self.base("crud", c)
        before = time.time()
        p = f"{b}/node"
        eq(c.create(p, b"v1"), p, "create() return value")
        raises(NodeExistsError, c.create, p, b"again", what="create existing")
        data, st = c.get(p)
        eq(data, b"v1", "get data")
        eq((st.version, st.cversion, st.aversion, st.numChildren, st.dataLength,
            st.ephemeralOwner), (0, 0, 0, 0, 2, 0), "fresh stat")
        eq(st.czxid, st.mzxid, "czxid == mzxid on fresh node")
        eq(st.pzxid, st.czxid, "pzxid == czxid on fresh leaf")
        check(abs(st.ctime / 1000.0 - before) < 120, f"ctime {st.ctime} not ~now")
        eq(st.ctime, st.mtime, "ctime == mtime on fresh node")
        eq(c.exists(p), st, "exists() stat == get() stat")
        st1 = c.set(p, b"v2")
        eq(st1.version, 1, "version after set")
        check(st1.mzxid > st1.czxid, "mzxid increases on set")
        eq(st1.czxid, st.czxid, "czxid unchanged by set")
        raises(BadVersionError, c.set, p, b"x", version=0, what="set with stale version")
        st2 = c.set(p, b"v3", version=1)
        eq(st2.version, 2, "version after versioned set")
        eq(c.get(p)[0], b"v3", "data after versioned set")
        # children
        for kid in ("c", "a", "b"):
            c.create(f"{p}/{kid}", kid.encode())
        eq(sorted(c.get_children(p)), ["a", "b", "c"], "get_children")
        kids, pst = c.get_children(p, include_data=True)
        eq(sorted(kids), ["a", "b", "c"], "get_children(include_data)")
        eq((pst.numChildren, pst.cversion), (3, 3), "parent numChildren/cversion")
        eq(pst.version, 2, "children don't change the parent's data version")
        cst = c.exists(f"{p}/b")
        check(pst.pzxid >= cst.czxid, "parent pzxid >= last child czxid")
        raises(NotEmptyError, c.delete, p, what="delete non-empty")
        raises(BadVersionError, c.delete, f"{p}/a", version=7, what="delete bad version")
        c.delete(f"{p}/a", version=0)
        pst2 = c.exists(p)
        eq((pst2.numChildren, pst2.cversion), (2, 4), "cversion counts deletes too")
        check(pst2.pzxid > pst.pzxid, "pzxid advances on child delete")
        c.delete(p, recursive=True)
        eq(c.exists(p), None, "exists after recursive delete")
        # errors on missing nodes
        m = f"{b}/missing"
        raises(NoNodeError, c.get, m, what="get missing")
        raises(NoNodeError, c.set, m, b"x", what="set missing")
        raises(NoNodeError, c.delete, m, what="delete missing")
        raises(NoNodeError, c.get_children, m, what="get_children missing")
        raises(NoNodeError, c.create, f"{m}/kid", b"", what="create without parent")
        # makepath / ensure_path
        deep = f"{b}/x/y/z"
        eq(c.create(deep, b"d", makepath=True), deep, "create(makepath=True)")
        eq(c.get(deep)[0], b"d", "deep data")
        c.ensure_path(f"{b}/e1/e2/e3")
        c.ensure_path(f"{b}/e1/e2/e3")  # idempotent
        check(c.exists(f"{b}/e1/e2/e3") is not None, "ensure_path created nodes")
        # create2 (include_data=True)
        path, cst2 = c.create(f"{b}/c2", b"abc", include_data=True)
        eq(path, f"{b}/c2", "create2 path")
        check(isinstance(cst2, ZnodeStat) and cst2.dataLength == 3 and cst2.version == 0,
              f"create2 stat {cst2!r}")
        eq(c.exists(f"{b}/c2"), cst2, "create2 stat == exists stat")
        # data edge cases
        c.create(f"{b}/empty", b"")
        eq(c.get(f"{b}/empty")[0], b"", "empty data")
        blob = bytes(range(256)) * 4
        c.create(f"{b}/binary", blob)
        eq(c.get(f"{b}/binary")[0], blob, "binary data round trip")
        big = os.urandom(512 * 1024)
        c.create(f"{b}/big", big)
        eq(c.get(f"{b}/big")[0], big, "512 KiB data round trip")
        eq(c.exists(f"{b}/big").dataLength, len(big), "big dataLength")
        c.set(f"{b}/big", b"")
        eq(c.get(f"{b}/big")[0], b"", "set to empty")
        uni = "ünïcødé ✓".encode()
        c.create(f"{b}/ünï", uni)
        eq(c.get(f"{b}/ünï")[0], uni, "unicode path + data")
        check("ünï" in c.get_children(b), "unicode child name listed")

    def check_ephemeral_sequence(self):
        c1 = self.client()
        c2 = self.client()
        b = self.base("ephseq", c1)
        e = f"{b}/eph"
        c1.create(e, b"x", ephemeral=True)
        eq(c1.exists(e).ephemeralOwner, c1.client_id[0], "ephemeralOwner")
        raises(NoChildrenForEphemeralsError, c1.create, f"{e}/kid", b"",
               what="child of ephemeral")
        # sequence suffix = number of children ever *created* under the parent
        # (the persisted cversion); deletes do not advance it, although the
        # client-visible Stat.cversion (= 2*creates - numChildren) does
        s = f"{b}/seq"
        c1.create(s)
        names = [c1.create(f"{s}/n-", b"", sequence=True) for _ in range(3)]
        eq(names, [f"{s}/n-{i:010d}" for i in range(3)], "sequence names")
        c1.delete(names[-1])
        eq(c1.exists(s).cversion, 4, "Stat.cversion after 3 creates + 1 delete")
        eq(c1.create(f"{s}/n-", b"", sequence=True), f"{s}/n-0000000003",
           "sequence after delete (deletes do not advance the counter)")
        c1.create(f"{s}/other")
        eq(c1.create(f"{s}/m-", b"", sequence=True), f"{s}/m-0000000005",
           "sequence shared across prefixes and plain creates")
        es = c1.create(f"{s}/e-", b"", ephemeral=True, sequence=True)
        eq(es, f"{s}/e-0000000006", "ephemeral+sequence name")
        eq(c1.exists(es).ephemeralOwner, c1.client_id[0], "ephemeral+sequence owner")
        eq(c1.create(f"{s}/", b"", sequence=True), f"{s}/0000000007",
           "sequence with empty prefix")
        st = c1.exists(s)
        eq((st.numChildren, st.cversion), (7, 2 * 8 - 7), "Stat.cversion = 2*creates - numChildren")
        # ephemerals of another session vanish when it closes, with watch event
        e2 = f"{b}/eph2"
        c2.create(e2, b"y", ephemeral=True)
        eq(c1.exists(e2).ephemeralOwner, c2.client_id[0], "owner of other session")
        rec = Recorder()
        check(c1.exists(e2, watch=rec) is not None, "exists(e2)")
        c2.stop()
        ev = rec.wait_count(1, "NodeDeleted after owner session closed")[0]
        eq((ev.type, ev.path), (EventType.DELETED, e2), "deleted event")
        eq(c1.exists(e2), None, "ephemeral gone after session close")
        check(c1.exists(e) is not None, "own ephemeral still there")

    def check_watches(self):
        c1 = self.client()
        c2 = self.client()
        b = self.base("watches", c1)
        p = f"{b}/w"
        c1.create(p, b"d0")
        # data watch via get(), triggered by another client
        rec = Recorder()
        c1.get(p, watch=rec)
        c2.set(p, b"d1")
        ev = rec.wait_count(1, "data watch event")[0]
        eq((ev.type, ev.path, ev.state), (EventType.CHANGED, p, "CONNECTED"), "CHANGED event")
        c2.set(p, b"d2")
        rec.quiet(1, "event from one-shot watch after it fired")
        # exists watch on a missing node -> CREATED
        m = f"{b}/later"
        rec2 = Recorder()
        eq(c1.exists(m, watch=rec2), None, "exists(missing)")
        c2.create(m, b"")
        ev = rec2.wait_count(1, "exists watch event")[0]
        eq((ev.type, ev.path), (EventType.CREATED, m), "CREATED event")
        # child watch -> CHILD; set_data on the parent does not trigger it
        rec3 = Recorder()
        c1.get_children(p, watch=rec3)
        c2.set(p, b"d3")
        rec3.quiet(0, "child watch fired by set_data")
        c2.create(f"{p}/kid", b"")
        ev = rec3.wait_count(1, "child watch event")[0]
        eq((ev.type, ev.path), (EventType.CHILD, p), "CHILD event")
        # set_data on a child does not trigger the parent's child watch
        rec3b = Recorder()
        c1.get_children(p, watch=rec3b)
        c2.set(f"{p}/kid", b"changed")
        rec3b.quiet(0, "child watch fired by child's set_data")
        # deleting a node fires data, exists and child watches with DELETED
        c2.delete(f"{p}/kid")
        rec3b.wait_count(1, "child watch on kid delete")
        rec4, rec5, rec6 = Recorder(), Recorder(), Recorder()
        c1.get(p, watch=rec4)
        c1.exists(p, watch=rec5)
        c1.get_children(p, watch=rec6)
        c2.delete(p)
        for r, what in ((rec4, "get"), (rec5, "exists"), (rec6, "get_children")):
            ev = r.wait_count(1, f"{what} watch on delete")[0]
            eq((ev.type, ev.path), (EventType.DELETED, p), f"{what} watch DELETED event")
        # parent child-watch fires for creation + deletion of children
        rec7 = Recorder()
        c1.get_children(b, watch=rec7)
        c2.create(f"{b}/x", b"")
        ev = rec7.wait_count(1, "parent child watch")[0]
        eq((ev.type, ev.path), (EventType.CHILD, b), "parent CHILD event")
        # watches are per node: a change on /b/x doesn't fire a watch on /b/y
        c2.create(f"{b}/y", b"")
        rec8 = Recorder()
        c1.get(f"{b}/y", watch=rec8)
        c2.set(f"{b}/x", b"zz")
        rec8.quiet(0, "watch on a sibling")
        # DataWatch recipe
        dw_path = f"{b}/dw"
        c1.create(dw_path, b"a")
        dw = Recorder()
        c1.DataWatch(dw_path, lambda data, stat: dw((data, stat.version if stat else None)))
        dw.wait_count(1, "initial DataWatch call")
        c2.set(dw_path, b"b")
        c2.set(dw_path, b"c")
        dw.wait_for(lambda it: it and it[-1] == (b"c", 2), "DataWatch to see b'c'@2")
        c2.delete(dw_path)
        items = dw.wait_for(lambda it: it and it[-1] == (None, None), "DataWatch to see deletion")
        eq(items[0], (b"a", 0), "first DataWatch call")
        # DataWatch on a node that does not exist yet
        dw2_path = f"{b}/dw2"
        dw2 = Recorder()
        c1.DataWatch(dw2_path, lambda data, stat: dw2((data, stat.version if stat else None)))
        dw2.wait_count(1, "initial DataWatch call (missing node)")
        eq(dw2.items[0], (None, None), "DataWatch on missing node")
        c2.create(dw2_path, b"born")
        dw2.wait_for(lambda it: it[-1] == (b"born", 0), "DataWatch to see creation")
        # ChildrenWatch recipe
        cw_path = f"{b}/cw"
        c1.create(cw_path)
        cw = Recorder()
        c1.ChildrenWatch(cw_path, lambda children: cw(sorted(children)))
        cw.wait_count(1, "initial ChildrenWatch call")
        eq(cw.items[0], [], "initial children")
        c2.create(f"{cw_path}/a")
        cw.wait_for(lambda it: it[-1] == ["a"], "ChildrenWatch ['a']")
        c2.create(f"{cw_path}/b")
        cw.wait_for(lambda it: it[-1] == ["a", "b"], "ChildrenWatch ['a','b']")
        c2.delete(f"{cw_path}/a")
        cw.wait_for(lambda it: it[-1] == ["b"], "ChildrenWatch ['b']")

    def check_transactions(self):
        c = self.client()
        b = self.base("txn", c)
        c.create(f"{b}/existing", b"e0")
        c.create(f"{b}/todelete", b"")
        t = c.transaction()
        t.create(f"{b}/new", b"n")
        t.create(f"{b}/new/child", b"nc")            # sees the create above
        t.set_data(f"{b}/existing", b"e1")
        t.check(f"{b}/existing", 1)                  # sees the set above
        t.delete(f"{b}/todelete")
        t.create(f"{b}/seq-", b"", sequence=True)
        res = t.commit()
        eq(len(res), 6, f"number of results {res!r}")
        eq(res[0], f"{b}/new", "create result")
        eq(res[1], f"{b}/new/child", "nested create result")
        check(isinstance(res[2], ZnodeStat) and res[2].version == 1,
              f"set_data result should be ZnodeStat(version=1), got {res[2]!r}")
        eq(res[3], True, "check result")
        eq(res[4], True, "delete result")
        # 3 children created before it under b (existing, todelete, new)
        eq(res[5], f"{b}/seq-0000000003", "sequential create in txn")
        eq(c.get(f"{b}/existing")[0], b"e1", "data after txn")
        eq(c.exists(f"{b}/todelete"), None, "deleted by txn")
        # all ops of one multi share a zxid
        z1 = c.exists(f"{b}/new").czxid
        eq(c.exists(f"{b}/new/child").czxid, z1, "same zxid for all ops in a multi")
        eq(c.exists(f"{b}/existing").mzxid, z1, "set in multi has the multi's zxid")
        # failing transaction: all-or-nothing + per-op results
        t = c.transaction()
        t.create(f"{b}/never", b"")
        t.check(f"{b}/existing", 99)
        t.set_data(f"{b}/existing", b"nope")
        res = t.commit()
        eq([type(r) for r in res], [RolledBackError, BadVersionError, RuntimeInconsistency],
           f"failed txn result types ({res!r})")
        eq(c.exists(f"{b}/never"), None, "rolled back create")
        eq(c.get(f"{b}/existing"), (b"e1", c.exists(f"{b}/existing")), "unchanged data")
        eq(c.exists(f"{b}/existing").version, 1, "unchanged version")
        # failure in the middle: NodeExists, NoNode, NotEmpty
        t = c.transaction()
        t.set_data(f"{b}/existing", b"x")
        t.create(f"{b}/new", b"")
        t.delete(f"{b}/missing")
        res = t.commit()
        eq([type(r) for r in res], [RolledBackError, NodeExistsError, RuntimeInconsistency],
           f"NodeExists txn ({res!r})")
        t = c.transaction()
        t.delete(f"{b}/new")
        res = t.commit()
        eq([type(r) for r in res], [NotEmptyError], f"NotEmpty txn ({res!r})")
        t = c.transaction()
        t.check(f"{b}/missing", 0)
        res = t.commit()
        eq([type(r) for r in res], [NoNodeError], f"check missing txn ({res!r})")
        eq(c.exists(f"{b}/existing").version, 1, "still unchanged after failed txns")
        # a committed txn triggers watches
        rec = Recorder()
        c.get(f"{b}/existing", watch=rec)
        t = c.transaction()
        t.set_data(f"{b}/existing", b"watched")
        t.commit()
        ev = rec.wait_count(1, "watch fired by txn")[0]
        eq(ev.type, EventType.CHANGED, "txn watch event type")
        # with-statement form
        with c.transaction() as t:
            t.create(f"{b}/with1", b"")
            t.create(f"{b}/with2", b"")
        check(c.exists(f"{b}/with2") is not None, "txn via context manager")

    def check_auth_acl(self):
        alice = self.client(auth="alice:alicepw")
        anon = self.client()
        wrong = self.client(auth="alice:wrongpw")
        b = self.base("acl", alice)
        p = f"{b}/secret"
        alice_acl = make_digest_acl("alice", "alicepw", all=True)
        alice.create(p, b"s3cret", acl=[alice_acl])
        acls, st = alice.get_acls(p)
        eq(acls, [alice_acl], "get_acls as owner")
        eq(acls[0].id.id, make_digest_acl_credential("alice", "alicepw"), "digest id format")
        eq(st.aversion, 0, "aversion")
        for who, cl in (("anon", anon), ("wrong password", wrong)):
            raises(NoAuthError, cl.get, p, what=f"get as {who}")
            raises(NoAuthError, cl.set, p, b"x", what=f"set as {who}")
            raises(NoAuthError, cl.get_children, p, what=f"get_children as {who}")
            raises(NoAuthError, cl.create, f"{p}/kid", b"", what=f"create child as {who}")
            raises(NoAuthError, cl.get_acls, p, what=f"get_acls as {who}")
            raises(NoAuthError, cl.set_acls, p, OPEN_ACL_UNSAFE, what=f"set_acls as {who}")
            # ZooKeeper 3.8.0 answers exists() without an ACL check; 3.8.4+/3.9.2+ (and Rookery,
            # which follows 3.9) require READ on an existing node. Accept either.
            try:
                check(cl.exists(p) is not None, f"exists() sees the node ({who})")
            except NoAuthError:
                pass
        eq(alice.get(p)[0], b"s3cret", "owner can read")
        # set_acls with versions
        new_acl = [alice_acl, ACL(Permissions.READ, Id("world", "anyone"))]
        st = alice.set_acls(p, new_acl, version=0)
        eq(st.aversion, 1, "aversion after set_acls")
        raises(BadVersionError, alice.set_acls, p, new_acl, version=0, what="stale set_acls")
        eq(anon.get(p)[0], b"s3cret", "world-readable after set_acls")
        raises(NoAuthError, anon.set, p, b"x", what="still not writable")
        # getACL without ADMIN: digest ids are masked
        acls, _ = anon.get_acls(p)
        eq(sorted((a.perms, a.id.scheme, a.id.id) for a in acls),
           sorted([(31, "digest", "alice:x"), (1, "world", "anyone")]),
           "get_acls without ADMIN masks digest hashes")
        # 'auth' scheme expands to the caller's authenticated ids
        q = f"{b}/authscheme"
        alice.create(q, b"", acl=[ACL(Permissions.ALL, Id("auth", ""))])
        eq(alice.get_acls(q)[0], [alice_acl], "auth scheme expansion")
        raises(InvalidACLError, anon.create, f"{b}/noauth", b"",
               acl=[ACL(Permissions.ALL, Id("auth", ""))], what="auth scheme unauthenticated")
        raises(InvalidACLError, alice.create, f"{b}/bad1", b"",
               acl=[ACL(Permissions.ALL, Id("digest", "nocolon"))], what="malformed digest id")
        raises(InvalidACLError, alice.create, f"{b}/bad2", b"",
               acl=[ACL(Permissions.ALL, Id("nosuchscheme", "x"))], what="unknown scheme")
        # kazoo replaces acl=[] by OPEN_ACL_UNSAFE, so send the request by hand
        if hasattr(alice, "_call"):
            from kazoo.protocol.serialization import Create
            ar = alice.handler.async_result()
            alice._call(Create(f"{b}/bad3", b"", [], 0), ar)
            raises(InvalidACLError, ar.get, timeout=WAIT, what="create with empty ACL list")
        # world read-only
        r = f"{b}/readonly"
        alice.create(r, b"ro", acl=READ_ACL_UNSAFE)
        eq(anon.get(r)[0], b"ro", "read-only readable")
        raises(NoAuthError, anon.set, r, b"x", what="set on read-only")
        raises(NoAuthError, anon.create, f"{r}/kid", b"", what="create under read-only")
        # ip scheme
        ipok = f"{b}/ipok"
        anon.create(ipok, b"ip", acl=[make_acl("ip", "127.0.0.1", all=True)])
        eq(anon.get(ipok)[0], b"ip", "ip ACL allows 127.0.0.1")
        ipcidr = f"{b}/ipcidr"
        anon.create(ipcidr, b"ip", acl=[make_acl("ip", "127.0.0.0/8", read=True, admin=True)])
        eq(anon.get(ipcidr)[0], b"ip", "ip CIDR ACL allows 127.0.0.1")
        raises(NoAuthError, anon.set, ipcidr, b"x", what="ip CIDR ACL without write")
        ipno = f"{b}/ipno"
        anon.create(ipno, b"ip", acl=[make_acl("ip", "10.1.2.3", all=True)])
        raises(NoAuthError, anon.get, ipno, what="ip ACL for another address")
        # DELETE permission lives on the parent
        d = f"{b}/nodelete"
        alice.create(d, b"", acl=[ACL(Permissions.ALL & ~Permissions.DELETE,
                                      Id("world", "anyone"))])
        anon.create(f"{d}/kid", b"", acl=[alice_acl])
        raises(NoAuthError, anon.delete, f"{d}/kid", what="delete without parent DELETE")
        alice.set_acls(d, OPEN_ACL_UNSAFE)
        anon.delete(f"{d}/kid")  # node's own ACL is irrelevant for delete
        # multiple identities on one session
        both = self.client(auth="bob:bobpw")
        both.add_auth("digest", "alice:alicepw")
        eq(both.get(p)[0], b"s3cret", "second add_auth adds an identity")
        # super user
        if self.super_pw:
            su = self.client(auth=f"super:{self.super_pw}")
            eq(su.get(f"{b}/secret")[0], b"s3cret", "super can read")
            su.set(ipno, b"by super")
            eq(su.get(ipno)[0], b"by super", "super bypasses ip ACL")
            acls, _ = su.get_acls(p)
            check(any(a.id.id == make_digest_acl_credential("alice", "alicepw") for a in acls),
                  "super sees unmasked ACL")
            bad_su = self.client(auth=f"super:{self.super_pw}-wrong")
            raises(NoAuthError, bad_su.get, ipno, what="wrong super password")
        # unknown auth scheme: AUTH_FAILED and the server drops the connection
        af = self.client()
        states = Recorder()
        af.add_listener(states)
        raises(AuthFailedError, af.add_auth, "nosuchscheme", "whatever",
               what="add_auth with unknown scheme")

    def check_lock(self):
        c1, c2, c3 = self.client(), self.client(), self.client()
        b = self.base("lock", c1)
        lp = f"{b}/lock"
        l1, l2 = c1.Lock(lp, "c1"), c2.Lock(lp, "c2")
        check(l1.acquire(timeout=WAIT), "c1 acquires free lock")
        check(not l2.acquire(blocking=False), "non-blocking acquire of held lock")
        raises(LockTimeout, l2.acquire, timeout=0.5, what="acquire held lock with timeout")
        got = threading.Event()

        def waiter():
            if l2.acquire(timeout=WAIT * 2):
                got.set()

        t = threading.Thread(target=waiter, daemon=True)
        t.start()
        wait_until(lambda: "c2" in l1.contenders(), "c2 to be a contender")
        eq(l1.contenders(), ["c1", "c2"], "lock contenders in order")
        time.sleep(QUIET)
        check(not got.is_set(), "c2 got the lock while c1 holds it")
        l1.release()
        check(got.wait(WAIT), "c2 acquires after c1 releases")
        t.join(WAIT)
        # session loss releases the lock
        l3 = c3.Lock(lp, "c3")
        got3 = threading.Event()
        t3 = threading.Thread(target=lambda: l3.acquire(timeout=WAIT * 2) and got3.set(),
                              daemon=True)
        t3.start()
        wait_until(lambda: "c3" in l3.contenders(), "c3 to be a contender")
        c2.stop()
        check(got3.wait(WAIT), "c3 acquires after holder's session closed")
        t3.join(WAIT)
        l3.release()
        with c1.Lock(lp, "c1-again"):
            eq(c1.Lock(lp).contenders(), ["c1-again"], "lock via context manager")
        eq(c1.get_children(lp), [], "lock nodes cleaned up")

    def check_election(self):
        c1, c2, c3 = self.client(), self.client(), self.client()
        b = self.base("election", c1)
        ep = f"{b}/election"
        leaders: List[str] = []
        became: Dict[str, threading.Event] = {}
        resign: Dict[str, threading.Event] = {}
        lock = threading.Lock()

        def lead(name):
            with lock:
                leaders.append(name)
            became[name].set()
            resign[name].wait(WAIT * 3)

        def run(election, name):
            try:
                election.run(lead, name)
            except ConnectionClosedError:
                pass  # expected for a leader whose client was stopped

        def contend(election, name):
            became[name] = threading.Event()
            resign[name] = threading.Event()
            t = threading.Thread(target=run, args=(election, name), daemon=True)
            t.start()
            return t

        e1, e2 = c1.Election(ep, "c1"), c2.Election(ep, "c2")
        t1 = contend(e1, "c1")
        check(became["c1"].wait(WAIT), "c1 becomes leader")
        t2 = contend(e2, "c2")
        wait_until(lambda: e1.contenders() == ["c1", "c2"], "contenders [c1, c2]")
        time.sleep(QUIET)
        check(not became["c2"].is_set(), "c2 leads while c1 is leader")
        # leader's function returns -> leadership handed over
        resign["c1"].set()
        t1.join(WAIT)
        check(not t1.is_alive(), "c1's run() returns after resigning")
        check(became["c2"].wait(WAIT), "c2 becomes leader after c1 resigned")
        eq(e2.contenders(), ["c2"], "contenders after hand-over")
        # a waiting contender can cancel
        e1b = c1.Election(ep, "c1b")
        t1b = contend(e1b, "c1b")
        wait_until(lambda: "c1b" in e2.contenders(), "c1b to be a contender")
        e1b.cancel()
        t1b.join(WAIT)
        check(not t1b.is_alive(), "cancelled contender's run() returns")
        check(not became["c1b"].is_set(), "cancelled contender never led")
        wait_until(lambda: e2.contenders() == ["c2"], "cancelled contender removed")
        # leader's session dies -> next contender takes over
        e3 = c3.Election(ep, "c3")
        t3 = contend(e3, "c3")
        wait_until(lambda: "c3" in e3.contenders(), "c3 to be a contender")
        c2.stop()
        check(became["c3"].wait(WAIT), "c3 leads after leader's session closed")
        eq(leaders, ["c1", "c2", "c3"], "leadership order")
        for ev in resign.values():
            ev.set()
        t3.join(WAIT)
        check(not t3.is_alive(), "c3's run() returns")

    def check_counter(self):
        c1, c2 = self.client(), self.client()
        b = self.base("counter", c1)
        ctr1, ctr2 = c1.Counter(f"{b}/ctr"), c2.Counter(f"{b}/ctr")
        errors: List[BaseException] = []

        def bump(ctr):
            try:
                for _ in range(10):
                    ctr += 1
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        ts = [threading.Thread(target=bump, args=(x,), daemon=True) for x in (ctr1, ctr2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(WAIT * 2)
        check(not errors, f"counter errors: {errors!r}")
        eq(ctr1.value, 20, "counter after 2x10 concurrent increments")

    def check_session_resume(self):
        c1, c2 = self.client(), self.client()
        b = self.base("session", c1)
        e = f"{b}/eph"
        w = f"{b}/watched"
        c1.create(e, b"", ephemeral=True)
        c1.create(w, b"0")
        sid = c1.client_id[0]
        states = Recorder()
        c1.add_listener(states)
        # drop the TCP connection under kazoo's feet; it must reconnect to the
        # same session (ConnectRequest with the old session id + password)
        sock = getattr(getattr(c1, "_connection", None), "_socket", None)
        if sock is None:
            self.log("cannot reach kazoo's socket; skipping reconnect part")
        else:
            sock.shutdown(socket.SHUT_RDWR)
            states.wait_for(lambda it: KazooState.SUSPENDED in it, "SUSPENDED")
            states.wait_for(lambda it: it and it[-1] == KazooState.CONNECTED,
                            "CONNECTED again")
            eq(c1.client_id[0], sid, "same session after reconnect")
            check(c1.exists(e) is not None, "ephemeral survives reconnect")
            eq(c2.exists(e).ephemeralOwner, sid, "ephemeral owner unchanged")
            rec = Recorder()
            c1.get(w, watch=rec)
            c2.set(w, b"1")
            ev = rec.wait_count(1, "watch set after reconnect")[0]
            eq((ev.type, ev.path), (EventType.CHANGED, w), "event after reconnect")
        # attach to an existing session id with the wrong password -> expired,
        # kazoo then creates a fresh session
        bad = KazooClient(hosts=self.hosts, timeout=10.0,
                          client_id=(sid, b"\x00" * 16),
                          connection_retry=dict(max_tries=20, delay=0.1, max_delay=1.0))
        self._clients.append(bad)
        bad.start(timeout=WAIT)
        check(bad.client_id[0] != sid, "wrong password must not join the session")
        check(c1.exists(e) is not None, "original session unaffected")


CHECKS = [
    "connect",
    "crud",
    "ephemeral_sequence",
    "watches",
    "transactions",
    "auth_acl",
    "lock",
    "election",
    "counter",
    "session_resume",
]


def run_check(smoke: Smoke, name: str) -> Optional[str]:
    """Run one check in a thread under a watchdog. Returns error text or None."""
    result: Dict[str, Optional[str]] = {"err": None}

    def target():
        try:
            getattr(smoke, f"check_{name}")()
        except CheckFailed as e:
            result["err"] = f"{e}\n{traceback.format_exc(limit=-2)}"
        except Exception:  # noqa: BLE001
            result["err"] = traceback.format_exc()

    t = threading.Thread(target=target, name=f"check-{name}", daemon=True)
    t.start()
    t.join(CHECK_TIMEOUT)
    if t.is_alive():
        print(f"FAIL {name}: watchdog: check still running after {CHECK_TIMEOUT}s; "
              "thread stacks follow", flush=True)
        faulthandler.dump_traceback(all_threads=True)
        os._exit(2)
    return result["err"]


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("hosts", help="HOST:PORT")
    ap.add_argument("--super", dest="super_pw", default=None,
                    help="password of the server's super digest user")
    ap.add_argument("--only", default="", help="comma separated check names")
    ap.add_argument("--skip", default="", help="comma separated check names")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.ERROR,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    only = [x for x in args.only.split(",") if x]
    skip = {x for x in args.skip.split(",") if x}
    unknown = (set(only) | skip) - set(CHECKS)
    if unknown:
        ap.error(f"unknown checks: {sorted(unknown)}; known: {CHECKS}")
    names = [n for n in (only or CHECKS) if n not in skip]

    smoke = Smoke(args.hosts, args.super_pw, args.verbose)
    failures: List[str] = []
    done: List[str] = []
    t_all = time.monotonic()
    try:
        for name in names:
            t0 = time.monotonic()
            err = run_check(smoke, name)
            done.append(name)
            smoke.close_all()
            dt = time.monotonic() - t0
            if err:
                failures.append(name)
                print(f"FAIL {name} ({dt:.2f}s)\n" +
                      "\n".join("    " + l for l in err.rstrip().splitlines()), flush=True)
            else:
                print(f"PASS {name} ({dt:.2f}s)", flush=True)
            if err and name == "connect":
                print("aborting: cannot even connect", flush=True)
                break
    finally:
        smoke.close_all()
    print(f"{len(names) - len(failures) - len(set(names) - set(done))}/{len(names)} checks passed "
          f"in {time.monotonic() - t_all:.1f}s against {args.hosts}"
          + (f"; failed: {', '.join(failures)}" if failures else ""), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
