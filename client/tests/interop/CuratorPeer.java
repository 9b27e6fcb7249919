// A line-oriented driver for the Apache Curator 5.4 recipes, used by the Rust interop tests
// (client/tests/common/curator.rs).
//
//   java -cp <curator, zookeeper, guava, slf4j jars>:<dir> CuratorPeer CONNECT SESSION_TIMEOUT_MS
//
// Reads one command per line on stdin and writes one reply line per command on stdout:
// `ok [VALUE]` or `err <class>: <message>`. Asynchronous notifications are lines starting with
// `event `. Prints `ready` once connected. Logging goes to stderr (or nowhere with slf4j-nop);
// stdout carries only the protocol. End of input behaves as `quit`.

import java.io.BufferedReader;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.recipes.barriers.DistributedBarrier;
import org.apache.curator.framework.recipes.barriers.DistributedDoubleBarrier;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.leader.LeaderLatchListener;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.framework.recipes.locks.InterProcessReadWriteLock;
import org.apache.curator.framework.recipes.locks.InterProcessSemaphoreV2;
import org.apache.curator.framework.recipes.locks.Lease;
import org.apache.curator.retry.ExponentialBackoffRetry;

public class CuratorPeer {
    private static PrintStream out;
    private static CuratorFramework client;

    /** A thread-owned lock (mutex or read-write lock) and the one thread that owns it. */
    private static final class Owned<T> {
        final T lock;
        final ExecutorService thread;

        Owned(T lock, String name) {
            this.lock = lock;
            this.thread = Executors.newSingleThreadExecutor(r -> {
                Thread t = new Thread(r, "peer-" + name);
                t.setDaemon(true);
                return t;
            });
        }

        <R> R run(Callable<R> task) throws Exception {
            try {
                return thread.submit(task).get();
            } catch (ExecutionException e) {
                Throwable c = e.getCause();
                if (c instanceof Exception) {
                    throw (Exception) c;
                }
                throw e;
            }
        }
    }

    private static final Map<String, Owned<InterProcessMutex>> mutexes = new HashMap<>();
    private static final Map<String, Owned<InterProcessReadWriteLock>> rwLocks = new HashMap<>();
    private static final Map<String, LeaderLatch> latches = new HashMap<>();
    private static final Map<String, InterProcessSemaphoreV2> semaphores = new HashMap<>();
    private static final Map<String, Deque<Lease>> leases = new HashMap<>();
    private static final Map<String, DistributedDoubleBarrier> doubleBarriers = new HashMap<>();

    static void line(String s) {
        synchronized (out) {
            out.print(s);
            out.print('\n');
            out.flush();
        }
    }

    static String describe(Throwable e) {
        String msg = e.getClass().getName() + ": " + e.getMessage();
        return msg.replace('\r', ' ').replace('\n', ' ');
    }

    static void background(String name, Runnable r) {
        Thread t = new Thread(r, "peer-bg-" + name);
        t.setDaemon(true);
        t.start();
    }

    public static void main(String[] args) throws Exception {
        out = new PrintStream(new FileOutputStream(FileDescriptor.out), false, StandardCharsets.UTF_8);
        // Anything else that prints to System.out (a stray logger) goes to stderr instead.
        System.setOut(System.err);
        if (args.length < 2) {
            line("err usage: CuratorPeer CONNECT SESSION_TIMEOUT_MS");
            System.exit(2);
        }
        int sessionTimeout = Integer.parseInt(args[1]);
        client = CuratorFrameworkFactory.builder()
                .connectString(args[0])
                .sessionTimeoutMs(sessionTimeout)
                .connectionTimeoutMs(Math.max(sessionTimeout, 15000))
                .retryPolicy(new ExponentialBackoffRetry(100, 10))
                .build();
        client.start();
        if (!client.blockUntilConnected(30, TimeUnit.SECONDS)) {
            line("err not connected");
            System.exit(1);
        }
        line("ready");

        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String cmd;
        while ((cmd = in.readLine()) != null) {
            cmd = cmd.trim();
            if (cmd.isEmpty()) {
                continue;
            }
            String[] a = cmd.split("\\s+");
            if (a[0].equals("quit")) {
                break;
            }
            String reply;
            try {
                reply = handle(a);
            } catch (Throwable e) {
                reply = "err " + describe(e);
            }
            line(reply);
        }
        shutdown();
        line("ok");
        System.exit(0);
    }

    static void need(String[] a, int n) {
        if (a.length != n + 1) {
            throw new IllegalArgumentException(a[0] + " takes " + n + " arguments, got " + (a.length - 1));
        }
    }

    static <T> T get(Map<String, T> map, String kind, String name) {
        T v = map.get(name);
        if (v == null) {
            throw new IllegalStateException("no " + kind + " named " + name);
        }
        return v;
    }

    static String handle(String[] a) throws Exception {
        switch (a[0]) {
            case "mutex-acquire": {
                need(a, 3);
                String name = a[1];
                long timeout = Long.parseLong(a[3]);
                Owned<InterProcessMutex> m =
                        mutexes.computeIfAbsent(name, n -> new Owned<>(new InterProcessMutex(client, a[2]), n));
                return "ok " + m.run(() -> m.lock.acquire(timeout, TimeUnit.MILLISECONDS));
            }
            case "mutex-release": {
                need(a, 1);
                Owned<InterProcessMutex> m = get(mutexes, "mutex", a[1]);
                m.run(() -> {
                    m.lock.release();
                    return null;
                });
                return "ok";
            }
            case "mutex-holds": {
                need(a, 1);
                Owned<InterProcessMutex> m = get(mutexes, "mutex", a[1]);
                return "ok " + m.run(() -> m.lock.isAcquiredInThisProcess() && m.lock.isOwnedByCurrentThread());
            }
            case "latch-start": {
                need(a, 3);
                String name = a[1];
                if (latches.containsKey(name)) {
                    throw new IllegalStateException("latch " + name + " exists");
                }
                LeaderLatch latch = new LeaderLatch(client, a[2], a[3]);
                latch.addListener(new LeaderLatchListener() {
                    @Override
                    public void isLeader() {
                        line("event latch " + name + " leader");
                    }

                    @Override
                    public void notLeader() {
                        line("event latch " + name + " notleader");
                    }
                });
                latch.start();
                latches.put(name, latch);
                return "ok";
            }
            case "latch-has": {
                need(a, 1);
                return "ok " + get(latches, "latch", a[1]).hasLeadership();
            }
            case "latch-leader": {
                need(a, 1);
                return "ok " + get(latches, "latch", a[1]).getLeader().getId();
            }
            case "latch-close": {
                need(a, 1);
                LeaderLatch latch = get(latches, "latch", a[1]);
                latches.remove(a[1]);
                latch.close();
                return "ok";
            }
            case "sem-acquire": {
                need(a, 4);
                String name = a[1];
                int max = Integer.parseInt(a[3]);
                long timeout = Long.parseLong(a[4]);
                InterProcessSemaphoreV2 sem =
                        semaphores.computeIfAbsent(name, n -> new InterProcessSemaphoreV2(client, a[2], max));
                Lease lease = sem.acquire(timeout, TimeUnit.MILLISECONDS);
                if (lease == null) {
                    return "ok false";
                }
                leases.computeIfAbsent(name, n -> new ArrayDeque<>()).add(lease);
                return "ok true";
            }
            case "sem-release": {
                need(a, 1);
                get(semaphores, "semaphore", a[1]);
                Deque<Lease> held = leases.get(a[1]);
                if (held == null || held.isEmpty()) {
                    throw new IllegalStateException("semaphore " + a[1] + " holds no lease");
                }
                get(semaphores, "semaphore", a[1]).returnLease(held.removeFirst());
                return "ok";
            }
            case "rw-read-acquire":
            case "rw-write-acquire": {
                need(a, 3);
                String name = a[1];
                long timeout = Long.parseLong(a[3]);
                boolean write = a[0].equals("rw-write-acquire");
                Owned<InterProcessReadWriteLock> rw =
                        rwLocks.computeIfAbsent(name, n -> new Owned<>(new InterProcessReadWriteLock(client, a[2]), n));
                InterProcessMutex m = write ? rw.lock.writeLock() : rw.lock.readLock();
                return "ok " + rw.run(() -> m.acquire(timeout, TimeUnit.MILLISECONDS));
            }
            case "rw-read-release":
            case "rw-write-release": {
                need(a, 1);
                Owned<InterProcessReadWriteLock> rw = get(rwLocks, "read-write lock", a[1]);
                InterProcessMutex m = a[0].equals("rw-write-release") ? rw.lock.writeLock() : rw.lock.readLock();
                rw.run(() -> {
                    m.release();
                    return null;
                });
                return "ok";
            }
            case "barrier-set": {
                need(a, 1);
                new DistributedBarrier(client, a[1]).setBarrier();
                return "ok";
            }
            case "barrier-remove": {
                need(a, 1);
                new DistributedBarrier(client, a[1]).removeBarrier();
                return "ok";
            }
            case "barrier-wait": {
                need(a, 2);
                String path = a[1];
                long timeout = Long.parseLong(a[2]);
                DistributedBarrier b = new DistributedBarrier(client, path);
                background("barrier", () -> {
                    try {
                        boolean passed = b.waitOnBarrier(timeout, TimeUnit.MILLISECONDS);
                        line("event barrier " + path + (passed ? " passed" : " timeout"));
                    } catch (Throwable e) {
                        line("event barrier " + path + " err " + describe(e));
                    }
                });
                return "ok";
            }
            case "dbarrier-enter": {
                need(a, 4);
                String name = a[1];
                int count = Integer.parseInt(a[3]);
                long timeout = Long.parseLong(a[4]);
                DistributedDoubleBarrier b =
                        doubleBarriers.computeIfAbsent(name, n -> new DistributedDoubleBarrier(client, a[2], count));
                background("dbarrier-" + name, () -> {
                    try {
                        line("event dbarrier " + name + " entered " + b.enter(timeout, TimeUnit.MILLISECONDS));
                    } catch (Throwable e) {
                        line("event dbarrier " + name + " err " + describe(e));
                    }
                });
                return "ok";
            }
            case "dbarrier-leave": {
                need(a, 2);
                String name = a[1];
                long timeout = Long.parseLong(a[2]);
                DistributedDoubleBarrier b = get(doubleBarriers, "double barrier", name);
                background("dbarrier-" + name, () -> {
                    try {
                        line("event dbarrier " + name + " left " + b.leave(timeout, TimeUnit.MILLISECONDS));
                    } catch (Throwable e) {
                        line("event dbarrier " + name + " err " + describe(e));
                    }
                });
                return "ok";
            }
            case "session-id": {
                need(a, 0);
                return "ok " + Long.toHexString(client.getZookeeperClient().getZooKeeper().getSessionId());
            }
            default:
                throw new IllegalArgumentException("unknown command " + a[0]);
        }
    }

    static void shutdown() {
        for (LeaderLatch latch : latches.values()) {
            try {
                latch.close();
            } catch (Throwable e) {
                // closing anyway
            }
        }
        for (Owned<InterProcessMutex> m : mutexes.values()) {
            m.thread.shutdownNow();
        }
        for (Owned<InterProcessReadWriteLock> rw : rwLocks.values()) {
            rw.thread.shutdownNow();
        }
        try {
            client.close();
        } catch (Throwable e) {
            // closing anyway
        }
    }
}
