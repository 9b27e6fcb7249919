// The Curator 5.4 half of scripts/bench-recipes.sh: the modes of
// examples/examples/recipe_bench.rs, with the same arguments and the same output.
//
//   javac -cp JARS -d DIR RecipeBench.java
//   java -cp JARS:DIR RecipeBench CONNECT MODE ...
//
// JARS: /usr/share/java/{curator-recipes,curator-framework,curator-client,zookeeper,
// zookeeper-jute,guava,slf4j-api,slf4j-nop}.jar. Modes:
//
//   uncontended PATH SECONDS          one session acquires and releases an InterProcessMutex
//                                     in a loop; prints {"ops":N,"seconds":S,"ops_per_sec":X}
//   handoff PATH CONTENDERS ROUNDS    CONTENDERS threads, each with its own CuratorFramework
//                                     (one session each; Curator mutexes are thread-owned),
//                                     contend on one mutex; each new holder records the time
//                                     since the previous holder called release. After
//                                     CONTENDERS warm-up hand-offs, ROUNDS are measured;
//                                     prints {"count":N,"p50_us":X,"p99_us":Y}
//   latch-leader PATH ID              joins a LeaderLatch, prints "leader" once it leads, then
//                                     sleeps until killed
//   latch-follower PATH ID            joins, prints "follower" once it is in the election and
//                                     does not lead, then "leader UNIX_MS" when it leads
//
// Every session: 4 s session timeout, ExponentialBackoffRetry(100, 10).

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.leader.Participant;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.retry.ExponentialBackoffRetry;

public class RecipeBench {
    static final int SESSION_TIMEOUT_MS = 4000;

    static CuratorFramework connect(String connect) throws Exception {
        CuratorFramework c = CuratorFrameworkFactory.builder()
                .connectString(connect)
                .sessionTimeoutMs(SESSION_TIMEOUT_MS)
                .connectionTimeoutMs(15000)
                .retryPolicy(new ExponentialBackoffRetry(100, 10))
                .build();
        c.start();
        if (!c.blockUntilConnected(60, TimeUnit.SECONDS)) {
            throw new IllegalStateException("not connected to " + connect + " within 60 s");
        }
        return c;
    }

    static void println(String s) {
        System.out.println(s);
        System.out.flush();
    }

    /** The q quantile of sorted samples (nearest rank), as recipe_bench.rs computes it. */
    static long quantile(long[] sorted, double q) {
        if (sorted.length == 0) {
            return 0;
        }
        int rank = (int) Math.ceil(q * sorted.length);
        rank = Math.max(1, Math.min(sorted.length, rank));
        return sorted[rank - 1];
    }

    static void uncontended(String connect, String path, double seconds) throws Exception {
        try (CuratorFramework c = connect(connect)) {
            InterProcessMutex mutex = new InterProcessMutex(c, path);
            // One acquire before the clock starts: it makes the lock's parents.
            mutex.acquire();
            mutex.release();
            long run = (long) (seconds * 1e9);
            long start = System.nanoTime();
            long ops = 0;
            while (System.nanoTime() - start < run) {
                mutex.acquire();
                mutex.release();
                ops++;
            }
            double secs = (System.nanoTime() - start) / 1e9;
            println(String.format("{\"ops\":%d,\"seconds\":%.3f,\"ops_per_sec\":%.1f}",
                    ops, secs, ops / secs));
        }
    }

    static void handoff(String connect, String path, int contenders, int rounds)
            throws Exception {
        final int warmup = contenders;
        List<CuratorFramework> clients = new ArrayList<>();
        try {
            for (int i = 0; i < contenders; i++) {
                clients.add(connect(connect));
            }
            InterProcessMutex first = new InterProcessMutex(clients.get(0), path);
            first.acquire();
            first.release();

            final Object lock = new Object();
            // When the last holder called release (System.nanoTime), or -1; guarded by lock.
            final long[] releasedAt = {-1};
            final int[] handoffs = {0};
            final long[] samples = new long[rounds];
            final int[] count = {0};
            final AtomicBoolean done = new AtomicBoolean(false);
            final AtomicReference<Throwable> failure = new AtomicReference<>();
            final CyclicBarrier startLine = new CyclicBarrier(contenders);
            List<Thread> threads = new ArrayList<>();
            for (int i = 0; i < contenders; i++) {
                final InterProcessMutex mutex = new InterProcessMutex(clients.get(i), path);
                Thread t = new Thread(() -> {
                    try {
                        startLine.await(60, TimeUnit.SECONDS);
                        while (true) {
                            mutex.acquire();
                            long now = System.nanoTime();
                            boolean finished;
                            synchronized (lock) {
                                long previous = releasedAt[0];
                                releasedAt[0] = -1;
                                if (previous >= 0) {
                                    handoffs[0]++;
                                    if (handoffs[0] > warmup && count[0] < rounds) {
                                        samples[count[0]++] = (now - previous) / 1000;
                                        if (count[0] >= rounds) {
                                            done.set(true);
                                        }
                                    }
                                }
                                finished = done.get();
                                if (!finished) {
                                    releasedAt[0] = System.nanoTime();
                                }
                            }
                            mutex.release();
                            if (finished) {
                                return;
                            }
                        }
                    } catch (Throwable e) {
                        failure.compareAndSet(null, e);
                        done.set(true);
                    }
                }, "contender-" + i);
                t.setDaemon(true);
                threads.add(t);
                t.start();
            }
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(600);
            for (Thread t : threads) {
                long left = TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime());
                if (left > 0) {
                    t.join(left);
                }
                if (t.isAlive()) {
                    throw new IllegalStateException("the hand-off rounds did not end within 600 s");
                }
            }
            if (failure.get() != null) {
                throw new RuntimeException("a contender failed", failure.get());
            }
            long[] sorted;
            synchronized (lock) {
                sorted = Arrays.copyOf(samples, count[0]);
            }
            Arrays.sort(sorted);
            println(String.format("{\"count\":%d,\"p50_us\":%d,\"p99_us\":%d}",
                    sorted.length, quantile(sorted, 0.50), quantile(sorted, 0.99)));
        } finally {
            for (CuratorFramework c : clients) {
                c.close();
            }
        }
    }

    static void latch(String connect, String path, String id, boolean leader) throws Exception {
        CuratorFramework c = connect(connect);
        LeaderLatch latch = new LeaderLatch(c, path, id);
        latch.start();
        if (leader) {
            latch.await();
            println("leader");
            // Killed by the script (SIGKILL): the session ends only by expiring.
            while (true) {
                Thread.sleep(3_600_000L);
            }
        }
        // In the election (its node listed) and not the leader.
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (true) {
            if (latch.hasLeadership()) {
                throw new IllegalStateException("the follower led before the leader was killed");
            }
            boolean listed = false;
            for (Participant p : latch.getParticipants()) {
                if (p.getId().equals(id) && !p.isLeader()) {
                    listed = true;
                }
            }
            if (listed) {
                break;
            }
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("not in the election within 60 s");
            }
            Thread.sleep(10);
        }
        println("follower");
        latch.await();
        println("leader " + System.currentTimeMillis());
        latch.close();
        c.close();
    }

    public static void main(String[] args) throws Exception {
        String usage = "usage: RecipeBench CONNECT (uncontended PATH SECONDS | handoff PATH "
                + "CONTENDERS ROUNDS | latch-leader PATH ID | latch-follower PATH ID)";
        if (args.length < 2) {
            System.err.println(usage);
            System.exit(2);
        }
        String connect = args[0];
        String mode = args[1];
        if (mode.equals("uncontended") && args.length == 4) {
            uncontended(connect, args[2], Double.parseDouble(args[3]));
        } else if (mode.equals("handoff") && args.length == 5) {
            int contenders = Integer.parseInt(args[3]);
            if (contenders < 2) {
                System.err.println("CONTENDERS must be at least 2");
                System.exit(2);
            }
            handoff(connect, args[2], contenders, Integer.parseInt(args[4]));
        } else if (mode.equals("latch-leader") && args.length == 4) {
            latch(connect, args[2], args[3], true);
        } else if (mode.equals("latch-follower") && args.length == 4) {
            latch(connect, args[2], args[3], false);
        } else {
            System.err.println(usage);
            System.exit(2);
        }
        System.exit(0);
    }
}
