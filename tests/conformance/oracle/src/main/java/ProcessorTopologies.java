// Processor API conformance topologies: a processor that drives a state store with the commands
// in its input values, and forwards what each command returned. "process_session" uses an
// in-memory SessionStore, "process_timestamped" an in-memory TimestampedKeyValueStore,
// "process_global" reads the store of a global table (topic "right") that it is not connected
// to (global stores are readable by every processor); the commands are listed in
// tests/conformance/README.md, and tests/conformance/spec_extra.py runs the same processor on
// workbench's stores.

import com.fasterxml.jackson.databind.JsonNode;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Windowed;
import org.apache.kafka.streams.kstream.internals.SessionWindow;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.SessionStore;
import org.apache.kafka.streams.state.Stores;
import org.apache.kafka.streams.state.TimestampedKeyValueStore;
import org.apache.kafka.streams.state.ValueAndTimestamp;

final class ProcessorTopologies {
    private static final String STORE = "store";
    private static final String GLOBAL = "global-right";

    private ProcessorTopologies() {
    }

    static Topologies.Built build(final StreamsBuilder builder, final JsonNode topo, final String op) {
        switch (op) {
            case "process_session": {
                final long retention = topo.path("retention").asLong(1_000_000L);
                final long gap = topo.path("gap").asLong(5L);
                builder.addStateStore(Stores.sessionStoreBuilder(
                    Stores.inMemorySessionStore(STORE, Duration.ofMillis(retention)),
                    Functions.S, Serdes.Long()).withLoggingDisabled());
                builder.stream("in", Functions.IN)
                    .process(() -> new SessionCommands(gap), STORE)
                    .to(Functions.OUT_TOPIC, Functions.OUT);
                return Topologies.Built.single(false, "in");
            }
            case "process_timestamped":
                builder.addStateStore(Stores.timestampedKeyValueStoreBuilder(
                    Stores.inMemoryKeyValueStore(STORE), Functions.S, Functions.S)
                    .withLoggingDisabled());
                builder.stream("in", Functions.IN)
                    .process(TimestampedCommands::new, STORE)
                    .to(Functions.OUT_TOPIC, Functions.OUT);
                return Topologies.Built.single(false, "in");
            case "process_global":
                builder.globalTable("right", Functions.IN,
                    Materialized.<String, String, KeyValueStore<Bytes, byte[]>>as(GLOBAL)
                        .withKeySerde(Functions.S)
                        .withValueSerde(Functions.S));
                builder.stream("left", Functions.IN)
                    .process(GlobalCommands::new)
                    .to(Functions.OUT_TOPIC, Functions.OUT);
                return Topologies.Built.single(false, "left", "right");
            default:
                throw new IllegalArgumentException("unknown op: " + op);
        }
    }

    /** The command in a value: its '|'-separated parts. */
    private static String[] command(final String value) {
        return value == null ? new String[] {"none"} : value.split("\\|", -1);
    }

    /** Drives a SessionStore<String, Long>. */
    static final class SessionCommands implements Processor<String, String, String, String> {
        private final long gap;
        private ProcessorContext<String, String> context;
        private SessionStore<String, Long> store;

        SessionCommands(final long gap) {
            this.gap = gap;
        }

        @Override
        public void init(final ProcessorContext<String, String> context) {
            this.context = context;
            this.store = context.getStateStore(STORE);
        }

        private static Windowed<String> session(final String key, final String start, final String end) {
            return new Windowed<>(key, new SessionWindow(Long.parseLong(start), Long.parseLong(end)));
        }

        private static String format(final KeyValueIterator<Windowed<String>, Long> it) {
            final List<String> parts = new ArrayList<>();
            try (it) {
                while (it.hasNext()) {
                    final KeyValue<Windowed<String>, Long> kv = it.next();
                    parts.add("[" + kv.key.window().start() + "," + kv.key.window().end() + "]=" + kv.value);
                }
            }
            return String.join(";", parts);
        }

        @Override
        public void process(final Record<String, String> record) {
            final String key = record.key();
            final long ts = record.timestamp();
            final String[] c = command(record.value());
            final String out;
            switch (c[0]) {
                case "merge": {
                    long start = ts;
                    long end = ts;
                    long total = Long.parseLong(c[1]);
                    final List<Windowed<String>> found = new ArrayList<>();
                    final List<String> parts = new ArrayList<>();
                    try (KeyValueIterator<Windowed<String>, Long> it = store.findSessions(key, ts - gap, ts + gap)) {
                        while (it.hasNext()) {
                            final KeyValue<Windowed<String>, Long> kv = it.next();
                            found.add(kv.key);
                            parts.add("[" + kv.key.window().start() + "," + kv.key.window().end() + "]=" + kv.value);
                            start = Math.min(start, kv.key.window().start());
                            end = Math.max(end, kv.key.window().end());
                            total += kv.value;
                        }
                    }
                    for (final Windowed<String> w : found) {
                        store.remove(w);
                    }
                    store.put(new Windowed<>(key, new SessionWindow(start, end)), total);
                    out = "merge " + String.join(";", parts) + " -> [" + start + "," + end + "]=" + total;
                    break;
                }
                case "put":
                    store.put(session(key, c[1], c[2]), Long.parseLong(c[3]));
                    out = "put";
                    break;
                case "del":
                    store.put(session(key, c[1], c[2]), null);
                    out = "del";
                    break;
                case "remove":
                    store.remove(session(key, c[1], c[2]));
                    out = "remove";
                    break;
                case "find":
                    out = "find " + format(store.findSessions(key, Long.parseLong(c[1]), Long.parseLong(c[2])));
                    break;
                case "back":
                    out = "back " + format(store.backwardFindSessions(key, Long.parseLong(c[1]), Long.parseLong(c[2])));
                    break;
                case "fetch":
                    out = "fetch " + format(store.fetch(key));
                    break;
                case "bfetch":
                    out = "bfetch " + format(store.backwardFetch(key));
                    break;
                case "get":
                    out = "get " + store.fetchSession(key, Long.parseLong(c[1]), Long.parseLong(c[2]));
                    break;
                default: // e.g. the flush record ("~flush|0")
                    out = "unknown";
            }
            context.forward(record.withValue(out));
        }
    }

    /** Drives a TimestampedKeyValueStore<String, String>. */
    static final class TimestampedCommands implements Processor<String, String, String, String> {
        private ProcessorContext<String, String> context;
        private TimestampedKeyValueStore<String, String> store;

        @Override
        public void init(final ProcessorContext<String, String> context) {
            this.context = context;
            this.store = context.getStateStore(STORE);
        }

        private static String format(final ValueAndTimestamp<String> v) {
            return v == null ? "null" : v.value() + "@" + v.timestamp();
        }

        private static String format(final KeyValueIterator<String, ValueAndTimestamp<String>> it) {
            final List<String> parts = new ArrayList<>();
            try (it) {
                while (it.hasNext()) {
                    final KeyValue<String, ValueAndTimestamp<String>> kv = it.next();
                    parts.add(kv.key + "=" + format(kv.value));
                }
            }
            return String.join(";", parts);
        }

        @Override
        public void process(final Record<String, String> record) {
            final String key = record.key();
            final long ts = record.timestamp();
            final String[] c = command(record.value());
            final String out;
            switch (c[0]) {
                case "put": {
                    final ValueAndTimestamp<String> old = store.get(key);
                    store.put(key, ValueAndTimestamp.make(c[1], ts));
                    out = "put old=" + format(old);
                    break;
                }
                case "newer": {
                    final ValueAndTimestamp<String> old = store.get(key);
                    final boolean apply = old == null || ts >= old.timestamp();
                    if (apply) {
                        store.put(key, ValueAndTimestamp.make(c[1], ts));
                    }
                    out = "newer " + (apply ? "yes" : "no") + " old=" + format(old);
                    break;
                }
                case "absent":
                    out = "absent " + format(store.putIfAbsent(key, ValueAndTimestamp.make(c[1], ts)));
                    break;
                case "del":
                    out = "del " + format(store.delete(key));
                    break;
                case "get":
                    out = "get " + format(store.get(key));
                    break;
                case "range":
                    out = "range " + format(store.range(c[1], c[2]));
                    break;
                case "rrange":
                    out = "rrange " + format(store.reverseRange(c[1], c[2]));
                    break;
                case "all":
                    out = "all " + format(store.all());
                    break;
                case "rall":
                    out = "rall " + format(store.reverseAll());
                    break;
                case "prefix":
                    out = "prefix " + format(store.prefixScan(c[1], new StringSerializer()));
                    break;
                default:
                    out = "unknown";
            }
            context.forward(record.withValue(out));
        }
    }

    /** Reads the global table's store (read-only): get, has and count commands. */
    static final class GlobalCommands implements Processor<String, String, String, String> {
        private ProcessorContext<String, String> context;
        private KeyValueStore<String, Object> store;

        @Override
        public void init(final ProcessorContext<String, String> context) {
            this.context = context;
            this.store = context.getStateStore(GLOBAL);
        }

        /** The stored value (a global table's store holds ValueAndTimestamp entries). */
        private String value(final String key) {
            final Object got = store.get(key);
            if (got instanceof ValueAndTimestamp) {
                return String.valueOf(((ValueAndTimestamp<?>) got).value());
            }
            return String.valueOf(got);
        }

        @Override
        public void process(final Record<String, String> record) {
            final String[] c = command(record.value());
            final String out;
            switch (c[0]) {
                case "get":
                    out = "get " + c[1] + "=" + value(c[1]);
                    break;
                case "has":
                    out = "has " + c[1] + "=" + (store.get(c[1]) != null);
                    break;
                case "count":
                    out = "count " + store.approximateNumEntries();
                    break;
                default:
                    out = "unknown";
            }
            context.forward(record.withValue(out));
        }
    }
}
