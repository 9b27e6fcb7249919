// A line-oriented driver for the Apache Curator 5.4 recipes, used by the Rust interop tests
// (client/tests/common/curator.rs).
//
//   java -cp <curator, curator-x-discovery, zookeeper, guava, jackson, slf4j jars>:<dir> \
//       CuratorPeer CONNECT SESSION_TIMEOUT_MS
//
// Reads one command per line on stdin and writes one reply line per command on stdout:
// `ok [VALUE]` or `err <class>: <message>`. Asynchronous notifications are lines starting with
// `event `. Prints `ready` once connected. Logging goes to stderr (or nowhere with slf4j-nop);
// stdout carries only the protocol. End of input behaves as `quit`.
//
// Service discovery (curator-x-discovery): `disc-*` commands act on a named ServiceDiscovery
// with payload type Object and a JsonInstanceSerializer; `cache-*` on a ServiceCache per
// service name, whose listener prints `event cache SERVICE changed <sorted ids>`. The command
// list is in curator.rs (CuratorPeer::call).

import java.io.BufferedReader;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Deque;
import java.util.HashMap;
import java.util.List;
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
import org.apache.curator.framework.state.ConnectionState;
import org.apache.curator.retry.ExponentialBackoffRetry;
import org.apache.curator.x.discovery.ServiceCache;
import org.apache.curator.x.discovery.ServiceDiscovery;
import org.apache.curator.x.discovery.ServiceDiscoveryBuilder;
import org.apache.curator.x.discovery.ServiceInstance;
import org.apache.curator.x.discovery.ServiceType;
import org.apache.curator.x.discovery.UriSpec;
import org.apache.curator.x.discovery.details.JsonInstanceSerializer;
import org.apache.curator.x.discovery.details.ServiceCacheListener;

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

    /** A started ServiceDiscovery (payload type Object, so any JSON payload round-trips). */
    private static final class Disc {
        final ServiceDiscovery<Object> discovery;
        final JsonInstanceSerializer<Object> serializer;
        /** The instances this peer registered, by SERVICE then ID (unregister needs them). */
        final Map<String, Map<String, ServiceInstance<Object>>> registered = new HashMap<>();

        Disc(ServiceDiscovery<Object> discovery, JsonInstanceSerializer<Object> serializer) {
            this.discovery = discovery;
            this.serializer = serializer;
        }
    }

    private static final Map<String, Disc> discoveries = new HashMap<>();
    /** ServiceCaches by SERVICE name (insertion order, so they close before their discovery). */
    private static final Map<String, ServiceCache<Object>> caches = new java.util.LinkedHashMap<>();

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

    static String sortedJoin(Collection<String> items) {
        List<String> l = new ArrayList<>(items);
        java.util.Collections.sort(l);
        return String.join(",", l);
    }

    static String ids(Collection<ServiceInstance<Object>> instances) {
        List<String> l = new ArrayList<>();
        for (ServiceInstance<Object> i : instances) {
            l.add(i.getId());
        }
        return sortedJoin(l);
    }

    static String oneLine(byte[] data) {
        if (data == null) {
            return "null";
        }
        return new String(data, StandardCharsets.UTF_8).replace("\r", "\\r").replace("\n", "\\n");
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
            case "disc-start": {
                if (a.length != 3 && a.length != 4) {
                    throw new IllegalArgumentException("disc-start takes NAME BASEPATH [compat|full]");
                }
                String name = a[1];
                if (discoveries.containsKey(name)) {
                    throw new IllegalStateException("discovery " + name + " exists");
                }
                // The one-argument constructor is compatibleSerializationMode = true (writes an
                // OldServiceInstance: no `enabled`); `full` writes the whole ServiceInstance.
                String mode = a.length == 4 ? a[3] : "compat";
                JsonInstanceSerializer<Object> ser;
                if (mode.equals("compat")) {
                    ser = new JsonInstanceSerializer<>(Object.class);
                } else if (mode.equals("full")) {
                    ser = new JsonInstanceSerializer<>(Object.class, false);
                } else {
                    throw new IllegalArgumentException("disc-start mode is compat or full, not " + mode);
                }
                ServiceDiscovery<Object> d = ServiceDiscoveryBuilder.builder(Object.class)
                        .client(client)
                        .basePath(a[2])
                        .serializer(ser)
                        .build();
                d.start();
                discoveries.put(name, new Disc(d, ser));
                return "ok";
            }
            case "disc-register": {
                need(a, 5);
                Disc d = get(discoveries, "discovery", a[1]);
                Map<String, Object> payload = new HashMap<>();
                payload.put("zone", "a");
                ServiceInstance<Object> inst = ServiceInstance.builder()
                        .name(a[2])
                        .id(a[3])
                        .address(a[4])
                        .port(Integer.parseInt(a[5]))
                        .serviceType(ServiceType.DYNAMIC)
                        .uriSpec(new UriSpec("{scheme}://{address}:{port}"))
                        .payload(payload)
                        .build();
                d.discovery.registerService(inst);
                d.registered.computeIfAbsent(a[2], n -> new HashMap<>()).put(a[3], inst);
                return "ok";
            }
            case "disc-unregister": {
                need(a, 3);
                Disc d = get(discoveries, "discovery", a[1]);
                Map<String, ServiceInstance<Object>> byId = d.registered.get(a[2]);
                ServiceInstance<Object> inst = byId == null ? null : byId.remove(a[3]);
                if (inst == null) {
                    // Not registered here: unregistering only needs the name and id.
                    inst = ServiceInstance.builder().name(a[2]).id(a[3]).build();
                }
                d.discovery.unregisterService(inst);
                return "ok";
            }
            case "disc-names": {
                need(a, 1);
                return "ok " + sortedJoin(get(discoveries, "discovery", a[1]).discovery.queryForNames());
            }
            case "disc-ids": {
                need(a, 2);
                return "ok " + ids(get(discoveries, "discovery", a[1]).discovery.queryForInstances(a[2]));
            }
            case "disc-get": {
                need(a, 3);
                Disc d = get(discoveries, "discovery", a[1]);
                ServiceInstance<Object> inst = d.discovery.queryForInstance(a[2], a[3]);
                return "ok " + (inst == null ? "null" : oneLine(d.serializer.serialize(inst)));
            }
            case "disc-raw": {
                need(a, 1);
                return "ok " + oneLine(client.getData().forPath(a[1]));
            }
            case "cache-start": {
                need(a, 2);
                String service = a[2];
                if (caches.containsKey(service)) {
                    throw new IllegalStateException("a cache for " + service + " exists");
                }
                ServiceCache<Object> cache =
                        get(discoveries, "discovery", a[1]).discovery.serviceCacheBuilder().name(service).build();
                cache.addListener(new ServiceCacheListener() {
                    @Override
                    public void cacheChanged() {
                        line("event cache " + service + " changed " + ids(cache.getInstances()));
                    }

                    @Override
                    public void stateChanged(CuratorFramework c, ConnectionState state) {
                        // connection states are not reported
                    }
                });
                cache.start();
                caches.put(service, cache);
                return "ok";
            }
            case "cache-ids": {
                need(a, 1);
                return "ok " + ids(get(caches, "service cache", a[1]).getInstances());
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
        for (ServiceCache<Object> cache : caches.values()) {
            try {
                cache.close();
            } catch (Throwable e) {
                // closing anyway
            }
        }
        for (Disc d : discoveries.values()) {
            try {
                d.discovery.close();
            } catch (Throwable e) {
                // closing anyway
            }
        }
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
