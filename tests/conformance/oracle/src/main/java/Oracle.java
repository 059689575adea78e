// Conformance oracle: runs JSON test cases on the real Kafka Streams TopologyTestDriver.
//
// Protocol: stdin carries one JSON case per line; for each case, stdout gets exactly one JSON line
// (flushed at once, so one JVM can serve cases one by one as a long-lived process)
//   {"name": ..., "outputs": [{"in": i, "key": k, ["start": s, "end": e,] "value": v, "ts": t}, ...],
//    "dropped": [{"in": i, "count": n}, ...]}
// or {"name": ..., "error": "<stack trace>"} if building or running the case failed.
// The case format is described in tests/conformance/README.md.

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.IntNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.databind.node.TextNode;

import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Comparator;
import java.util.HashMap;
import java.util.Iterator;
import java.util.Map;
import java.util.Properties;
import java.util.function.Function;
import java.util.stream.Stream;

import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.TestInputTopic;
import org.apache.kafka.streams.TestOutputTopic;
import org.apache.kafka.streams.TopologyTestDriver;
import org.apache.kafka.streams.kstream.Aggregator;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.EmitStrategy;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Initializer;
import org.apache.kafka.streams.kstream.JoinWindows;
import org.apache.kafka.streams.kstream.Joined;
import org.apache.kafka.streams.kstream.KGroupedStream;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.SessionWindowedKStream;
import org.apache.kafka.streams.kstream.SessionWindows;
import org.apache.kafka.streams.kstream.SlidingWindows;
import org.apache.kafka.streams.kstream.StreamJoined;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindowedKStream;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.kstream.ValueJoiner;
import org.apache.kafka.streams.kstream.Windowed;
import org.apache.kafka.streams.state.BuiltInDslStoreSuppliers;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.SessionStore;
import org.apache.kafka.streams.state.Stores;
import org.apache.kafka.streams.state.WindowStore;
import org.apache.kafka.streams.test.TestRecord;

public final class Oracle {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Serde<String> S = Serdes.String();
    private static final Serde<Long> L = Serdes.Long();
    private static final Consumed<String, String> IN = Consumed.with(S, S);
    private static final Produced<String, String> OUT = Produced.with(S, S);
    private static final String OUT_TOPIC = "out";
    /** Separates user key, window start and window end in the output key of windowed results. */
    private static final String SEP = "\u0001";
    /** Key and value of the record that expresses workbench's end of input ("flush": true). */
    private static final String FLUSH_KEY = "~flush";
    private static final String FLUSH_VALUE = "~flush|0";

    /** Joiner of every join: String concatenation, so a missing side prints as "null". */
    private static final ValueJoiner<String, String, String> JOINER = (l, r) -> l + "+" + r;
    private static final Initializer<Long> ZERO = () -> 0L;
    /** "sum": adds the number after the last '|' (or the whole value); a null value adds 0. */
    private static final Aggregator<String, String, Long> SUM = (k, v, agg) -> agg + number(v);

    private Oracle() {
    }

    public static void main(final String[] args) throws IOException {
        // State directories go under -Doracle.state.root (e.g. a tmpfs: RocksDB stores flush on
        // every TopologyTestDriver commit, which is slow on a real disk), else java.io.tmpdir.
        final String stateParent = System.getProperty("oracle.state.root");
        final Path stateRoot = stateParent == null || stateParent.isEmpty()
            ? Files.createTempDirectory("kstreams-oracle-")
            : Files.createTempDirectory(Path.of(stateParent), "kstreams-oracle-");
        final BufferedReader in =
            new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        final BufferedWriter out =
            new BufferedWriter(new OutputStreamWriter(System.out, StandardCharsets.UTF_8));
        try {
            String line;
            int caseNo = 0;
            while ((line = in.readLine()) != null) {
                if (line.isBlank()) {
                    continue;
                }
                final ObjectNode result = JSON.createObjectNode();
                try {
                    final JsonNode spec = JSON.readTree(line);
                    result.put("name", spec.path("name").asText(null));
                    runCase(spec, caseNo, stateRoot.resolve("case-" + caseNo), result);
                } catch (final Throwable t) {
                    result.remove("outputs");
                    result.remove("dropped");
                    result.put("error", stackTrace(t));
                }
                // what the driver leaves behind (RocksDB files): a long-lived oracle runs
                // thousands of cases
                final Path caseDir = stateRoot.resolve("case-" + caseNo);
                if (Files.exists(caseDir)) {
                    deleteTree(caseDir);
                }
                out.write(JSON.writeValueAsString(result));
                out.newLine();
                out.flush();
                caseNo++;
            }
        } finally {
            deleteTree(stateRoot);
        }
    }

    // ---------------------------------------------------------------- running one case

    private static void runCase(final JsonNode spec, final int caseNo, final Path stateDir,
                                final ObjectNode result) {
        final JsonNode topo = required(spec, "topology");
        final StreamsBuilder builder = new StreamsBuilder();
        final boolean windowed = buildTopology(builder, topo);

        final Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, "oracle-" + caseNo);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, "dummy:1234");
        props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        props.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        props.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        final boolean caching = spec.path("caching").asBoolean(false) || topo.path("caching").asBoolean(false);
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, caching ? 10L * 1024 * 1024 : 0L);
        final String store = spec.path("store").asText("in_memory");
        switch (store) {
            case "in_memory":
                props.put(StreamsConfig.DSL_STORE_SUPPLIERS_CLASS_CONFIG,
                          BuiltInDslStoreSuppliers.InMemoryDslStoreSuppliers.class);
                break;
            case "rocksdb":
                props.put(StreamsConfig.DSL_STORE_SUPPLIERS_CLASS_CONFIG,
                          BuiltInDslStoreSuppliers.RocksDBDslStoreSuppliers.class);
                break;
            default:
                throw new IllegalArgumentException("unknown store: " + store);
        }
        // Free-form extra StreamsConfig entries, applied last.
        final Iterator<Map.Entry<String, JsonNode>> extra = spec.path("config").properties().iterator();
        while (extra.hasNext()) {
            final Map.Entry<String, JsonNode> e = extra.next();
            props.put(e.getKey(), e.getValue().asText());
        }

        final ArrayNode outputs = result.putArray("outputs");
        final ArrayNode dropped = result.putArray("dropped");
        try (TopologyTestDriver driver = new TopologyTestDriver(builder.build(), props)) {
            final Map<String, TestInputTopic<String, String>> inputs = new HashMap<>();
            final TestOutputTopic<String, String> outTopic =
                driver.createOutputTopic(OUT_TOPIC, new StringDeserializer(), new StringDeserializer());
            double droppedBefore = droppedRecords(driver);
            long maxTs = -1L;
            int index = 0;
            for (final JsonNode rec : required(spec, "records")) {
                final String topic = required(rec, "topic").asText();
                final TestInputTopic<String, String> input = inputs.computeIfAbsent(
                    topic, t -> driver.createInputTopic(t, new StringSerializer(), new StringSerializer()));
                final long ts = required(rec, "ts").asLong();
                maxTs = Math.max(maxTs, ts);
                input.pipeInput(text(rec, "key"), text(rec, "value"), ts);
                for (final TestRecord<String, String> r : outTopic.readRecordsToList()) {
                    addOutput(outputs, IntNode.valueOf(index), r, windowed);
                }
                final double droppedNow = droppedRecords(driver);
                if (droppedNow > droppedBefore) {
                    final ObjectNode d = dropped.addObject();
                    d.put("in", index);
                    d.put("count", (long) (droppedNow - droppedBefore));
                }
                droppedBefore = droppedNow;
                index++;
            }
            if (spec.path("flush").asBoolean(false)) {
                flush(driver, inputs, outTopic, topo, maxTs, windowed, outputs);
            }
        }
    }

    /**
     * workbench's end of input, expressed in Kafka Streams: one more record, with the key
     * {@link #FLUSH_KEY}, piped to the first input topic at a timestamp far enough past every
     * other record that every window has closed and every parked stream-stream join record has
     * expired ({@link #flushHorizon}). Its outputs (except those for the flush key itself,
     * which are an artefact of the flush record) are tagged {@code "in": "end"}; the
     * flush record's own drops are not reported.
     */
    private static void flush(final TopologyTestDriver driver,
                              final Map<String, TestInputTopic<String, String>> inputs,
                              final TestOutputTopic<String, String> outTopic, final JsonNode topo,
                              final long maxTs, final boolean windowed, final ArrayNode outputs) {
        final String op = required(topo, "op").asText();
        final String topic = op.startsWith("join_") ? "left" : "in";
        final TestInputTopic<String, String> input = inputs.computeIfAbsent(
            topic, t -> driver.createInputTopic(t, new StringSerializer(), new StringSerializer()));
        input.pipeInput(FLUSH_KEY, FLUSH_VALUE, Math.max(0L, maxTs) + flushHorizon(topo));
        for (final TestRecord<String, String> r : outTopic.readRecordsToList()) {
            final String key = windowed ? r.key().split(SEP, -1)[0] : r.key();
            if (FLUSH_KEY.equals(key)) {
                continue;
            }
            addOutput(outputs, TextNode.valueOf("end"), r, windowed);
        }
        // What the flush record itself makes Kafka Streams drop (e.g. a put into a stream-stream
        // join store of retention 0) is an artefact of the flush record: not reported.
    }

    /** How far past the largest input timestamp the flush record goes (see {@link #flush}). */
    private static long flushHorizon(final JsonNode topo) {
        switch (required(topo, "op").asText()) {
            case "window_agg": {
                final JsonNode w = required(topo, "window");
                final long grace = w.path("grace").asLong(0);
                switch (required(w, "type").asText()) {
                    case "tumbling":
                    case "hopping": // windows end at most size after a record: end <= close time
                        return required(w, "size").asLong() + grace + 1;
                    case "sliding": // right windows end at t + 1 + difference: end < close time
                        return required(w, "difference").asLong() + grace + 2;
                    case "session": // a session ends at its last record: end < close time
                        return required(w, "gap").asLong() + grace + 1;
                    default:
                        throw new IllegalArgumentException("unknown window type: " + w);
                }
            }
            case "join_ss": { // parked records expire once stream time > T + before/after + grace
                final long before = topo.path("before").asLong(topo.path("difference").asLong(0));
                final long after = topo.path("after").asLong(topo.path("difference").asLong(0));
                return Math.max(before, after) + topo.path("grace").asLong(0) + 1;
            }
            default: // nothing waits for stream time; the flush record only shows that
                return 1;
        }
    }

    /** One output record: {"in", "key", ["start", "end",] "value", "ts"}. */
    private static void addOutput(final ArrayNode outputs, final JsonNode in,
                                  final TestRecord<String, String> r, final boolean windowed) {
        final ObjectNode o = outputs.addObject();
        o.set("in", in);
        if (windowed) {
            final String[] parts = r.key().split(SEP, -1);
            o.put("key", parts[0]);
            o.put("start", Long.parseLong(parts[1]));
            o.put("end", Long.parseLong(parts[2]));
        } else {
            o.put("key", r.key());
        }
        o.put("value", r.value());
        o.put("ts", r.timestamp());
    }

    /** Task-level "dropped-records-total" summed over all tasks (late, expired, null-key records...). */
    private static double droppedRecords(final TopologyTestDriver driver) {
        double total = 0;
        for (final Map.Entry<MetricName, ? extends Metric> e : driver.metrics().entrySet()) {
            final MetricName n = e.getKey();
            if (n.name().equals("dropped-records-total") && n.group().equals("stream-task-metrics")) {
                final Object v = e.getValue().metricValue();
                if (v instanceof Number) {
                    total += ((Number) v).doubleValue();
                }
            }
        }
        return total;
    }

    // ---------------------------------------------------------------- topologies

    /** Builds the topology into {@code builder}; returns true if the output keys are windowed. */
    private static boolean buildTopology(final StreamsBuilder builder, final JsonNode topo) {
        final String op = required(topo, "op").asText();
        switch (op) {
            case "window_agg":
                windowAgg(builder, topo);
                return true;
            case "agg":
                agg(builder, topo);
                return false;
            case "join_ss":
                joinStreamStream(builder, topo);
                return false;
            case "join_st":
                joinStreamTable(builder, topo);
                return false;
            case "join_tt":
                joinTableTable(builder, topo);
                return false;
            case "join_fk":
                joinForeignKey(builder, topo);
                return false;
            case "table":
                builder.table("in", IN, Materialized.<String, String, KeyValueStore<Bytes, byte[]>>as("s"))
                    .toStream()
                    .to(OUT_TOPIC, OUT);
                return false;
            default:
                throw new IllegalArgumentException("unknown op: " + op);
        }
    }

    private static void windowAgg(final StreamsBuilder builder, final JsonNode topo) {
        final JsonNode w = required(topo, "window");
        final String type = required(w, "type").asText();
        final String agg = topo.path("agg").asText("count");
        final String emit = topo.path("emit").asText("update");
        if (!emit.equals("update") && !emit.equals("close") && !emit.equals("suppress")) {
            throw new IllegalArgumentException("unknown emit: " + emit);
        }
        final boolean onClose = emit.equals("close");
        final KGroupedStream<String, String> grouped =
            builder.stream("in", IN).groupByKey(Grouped.with(S, S));
        final KTable<Windowed<String>, String> table;
        switch (type) {
            case "tumbling":
            case "hopping":
            case "sliding": {
                final TimeWindowedKStream<String, String> ws;
                if (type.equals("sliding")) {
                    final Duration d = ms(required(w, "difference"));
                    ws = grouped.windowedBy(w.has("grace")
                        ? SlidingWindows.ofTimeDifferenceAndGrace(d, ms(w.get("grace")))
                        : SlidingWindows.ofTimeDifferenceWithNoGrace(d));
                } else {
                    final Duration size = ms(required(w, "size"));
                    TimeWindows tw = w.has("grace")
                        ? TimeWindows.ofSizeAndGrace(size, ms(w.get("grace")))
                        : TimeWindows.ofSizeWithNoGrace(size);
                    if (type.equals("hopping")) {
                        tw = tw.advanceBy(ms(required(w, "advance")));
                    }
                    ws = grouped.windowedBy(tw);
                }
                final TimeWindowedKStream<String, String> ws2 =
                    onClose ? ws.emitStrategy(EmitStrategy.onWindowClose()) : ws;
                switch (agg) {
                    case "count":
                        table = asStrings(ws2.count(retention(
                            Materialized.<String, Long, WindowStore<Bytes, byte[]>>with(S, L), w)));
                        break;
                    case "sum":
                        table = asStrings(ws2.aggregate(ZERO, SUM, retention(
                            Materialized.<String, Long, WindowStore<Bytes, byte[]>>with(S, L), w)));
                        break;
                    case "reduce_concat":
                        table = ws2.reduce((a, v) -> a + "," + v, retention(
                            Materialized.<String, String, WindowStore<Bytes, byte[]>>with(S, S), w));
                        break;
                    default:
                        throw new IllegalArgumentException("unknown agg: " + agg);
                }
                break;
            }
            case "session": {
                final Duration gap = ms(required(w, "gap"));
                final SessionWindowedKStream<String, String> ws = grouped.windowedBy(w.has("grace")
                    ? SessionWindows.ofInactivityGapAndGrace(gap, ms(w.get("grace")))
                    : SessionWindows.ofInactivityGapWithNoGrace(gap));
                final SessionWindowedKStream<String, String> ws2 =
                    onClose ? ws.emitStrategy(EmitStrategy.onWindowClose()) : ws;
                switch (agg) {
                    case "count":
                        table = asStrings(ws2.count(retention(
                            Materialized.<String, Long, SessionStore<Bytes, byte[]>>with(S, L), w)));
                        break;
                    case "sum":
                        table = asStrings(ws2.aggregate(ZERO, SUM, (k, a, b) -> a + b, retention(
                            Materialized.<String, Long, SessionStore<Bytes, byte[]>>with(S, L), w)));
                        break;
                    case "reduce_concat":
                        table = ws2.reduce((a, v) -> a + "," + v, retention(
                            Materialized.<String, String, SessionStore<Bytes, byte[]>>with(S, S), w));
                        break;
                    default:
                        throw new IllegalArgumentException("unknown agg: " + agg);
                }
                break;
            }
            default:
                throw new IllegalArgumentException("unknown window type: " + type);
        }
        final KTable<Windowed<String>, String> result = emit.equals("suppress")
            ? table.suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()))
            : table;
        result.toStream((wk, v) -> wk.key() + SEP + wk.window().start() + SEP + wk.window().end())
            .to(OUT_TOPIC, OUT);
    }

    /** Applies the optional "retention" of a window spec (default: Kafka's, size/gap + grace). */
    private static <V, T extends org.apache.kafka.streams.processor.StateStore> Materialized<String, V, T> retention(
            final Materialized<String, V, T> m, final JsonNode window) {
        return window.has("retention") ? m.withRetention(ms(window.get("retention"))) : m;
    }

    private static <K> KTable<K, String> asStrings(final KTable<K, Long> t) {
        return t.mapValues(v -> v == null ? null : v.toString());
    }

    private static void agg(final StreamsBuilder builder, final JsonNode topo) {
        final String agg = topo.path("agg").asText("count");
        final KStream<String, String> stream = builder.stream("in", IN);
        final String groupBy = topo.path("group_by").asText("key");
        final KGroupedStream<String, String> grouped;
        switch (groupBy) {
            case "key":
                grouped = stream.groupByKey(Grouped.with(S, S));
                break;
            case "fk": // new key = the value's part before '|' (null if there is none)
                grouped = stream.groupBy((k, v) -> foreignKey(v), Grouped.with(S, S));
                break;
            default:
                throw new IllegalArgumentException("unknown group_by: " + groupBy);
        }
        final KTable<String, String> table;
        switch (agg) {
            case "count":
                table = asStrings(grouped.count());
                break;
            case "sum":
                table = asStrings(grouped.aggregate(
                    ZERO, SUM, Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>with(S, L)));
                break;
            case "reduce_concat":
                table = grouped.reduce((a, v) -> a + "," + v,
                                       Materialized.<String, String, KeyValueStore<Bytes, byte[]>>with(S, S));
                break;
            default:
                throw new IllegalArgumentException("unknown agg: " + agg);
        }
        table.toStream().to(OUT_TOPIC, OUT);
    }

    private static void joinStreamStream(final StreamsBuilder builder, final JsonNode topo) {
        final String how = topo.path("how").asText("inner");
        final long before = topo.path("before").asLong(topo.path("difference").asLong(0));
        final long after = topo.path("after").asLong(topo.path("difference").asLong(0));
        final long grace = topo.path("grace").asLong(0);
        // Start from a symmetric window wide enough that before()/after() never make it empty midway.
        final long base = Math.max(0, Math.max(before, after));
        final JoinWindows jw = JoinWindows.ofTimeDifferenceAndGrace(Duration.ofMillis(base), Duration.ofMillis(grace))
            .before(Duration.ofMillis(before))
            .after(Duration.ofMillis(after));
        final KStream<String, String> left = builder.stream("left", IN);
        final KStream<String, String> right = builder.stream("right", IN);
        final StreamJoined<String, String, String> sj = StreamJoined.with(S, S, S);
        final KStream<String, String> joined;
        switch (how) {
            case "inner":
                joined = left.join(right, JOINER, jw, sj);
                break;
            case "left":
                joined = left.leftJoin(right, JOINER, jw, sj);
                break;
            case "outer":
                joined = left.outerJoin(right, JOINER, jw, sj);
                break;
            default:
                throw new IllegalArgumentException("unknown how: " + how);
        }
        joined.to(OUT_TOPIC, OUT);
    }

    private static KTable<String, String> table(final StreamsBuilder builder, final String topic,
                                                final JsonNode topo) {
        if (topo.path("versioned").asBoolean(false)) {
            final Duration history = Duration.ofMillis(topo.path("history").asLong(1_000_000L));
            return builder.table(topic, IN, Materialized.<String, String>as(
                    Stores.persistentVersionedKeyValueStore(topic + "-versioned", history))
                .withKeySerde(S)
                .withValueSerde(S));
        }
        return builder.table(topic, IN);
    }

    private static void joinStreamTable(final StreamsBuilder builder, final JsonNode topo) {
        final String how = topo.path("how").asText("inner");
        final KStream<String, String> stream = builder.stream("left", IN);
        final KTable<String, String> table = table(builder, "right", topo);
        Joined<String, String, String> joined = Joined.with(S, S, S);
        if (topo.has("join_grace")) {
            joined = joined.withGracePeriod(ms(topo.get("join_grace")));
        }
        final KStream<String, String> result;
        switch (how) {
            case "inner":
                result = stream.join(table, JOINER, joined);
                break;
            case "left":
                result = stream.leftJoin(table, JOINER, joined);
                break;
            default:
                throw new IllegalArgumentException("unknown how: " + how);
        }
        result.to(OUT_TOPIC, OUT);
    }

    private static void joinTableTable(final StreamsBuilder builder, final JsonNode topo) {
        final String how = topo.path("how").asText("inner");
        final KTable<String, String> left = table(builder, "left", topo);
        final KTable<String, String> right = table(builder, "right", topo);
        final KTable<String, String> result;
        switch (how) {
            case "inner":
                result = left.join(right, JOINER);
                break;
            case "left":
                result = left.leftJoin(right, JOINER);
                break;
            case "outer":
                result = left.outerJoin(right, JOINER);
                break;
            default:
                throw new IllegalArgumentException("unknown how: " + how);
        }
        result.toStream().to(OUT_TOPIC, OUT);
    }

    private static void joinForeignKey(final StreamsBuilder builder, final JsonNode topo) {
        final String how = topo.path("how").asText("inner");
        final KTable<String, String> left = builder.table("left", IN);
        final KTable<String, String> right = builder.table("right", IN);
        final Function<String, String> fk = Oracle::foreignKey;
        final KTable<String, String> result;
        switch (how) {
            case "inner":
                result = left.join(right, fk, JOINER);
                break;
            case "left":
                result = left.leftJoin(right, fk, JOINER);
                break;
            default:
                throw new IllegalArgumentException("unknown how: " + how);
        }
        result.toStream().to(OUT_TOPIC, OUT);
    }

    // ---------------------------------------------------------------- helpers

    /** The part of the value before the first '|', or null if the value has no '|'. */
    private static String foreignKey(final String value) {
        if (value == null) {
            return null;
        }
        final int bar = value.indexOf('|');
        return bar < 0 ? null : value.substring(0, bar);
    }

    /** The number after the last '|' (or the whole value); null counts as 0. */
    private static long number(final String value) {
        if (value == null) {
            return 0L;
        }
        return Long.parseLong(value.substring(value.lastIndexOf('|') + 1).trim());
    }

    private static Duration ms(final JsonNode n) {
        if (!n.canConvertToLong()) {
            throw new IllegalArgumentException("expected a number of milliseconds, got " + n);
        }
        return Duration.ofMillis(n.asLong());
    }

    private static JsonNode required(final JsonNode n, final String field) {
        final JsonNode v = n.get(field);
        if (v == null || v.isNull()) {
            throw new IllegalArgumentException("missing field '" + field + "' in " + n);
        }
        return v;
    }

    /** A JSON string field as a Java String; JSON null or absent gives Java null. */
    private static String text(final JsonNode n, final String field) {
        final JsonNode v = n.get(field);
        return v == null || v.isNull() ? null : v.asText();
    }

    private static String stackTrace(final Throwable t) {
        final StringWriter sw = new StringWriter();
        t.printStackTrace(new PrintWriter(sw));
        return sw.toString();
    }

    private static void deleteTree(final Path root) {
        try (Stream<Path> paths = Files.walk(root)) {
            paths.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        } catch (final IOException ignored) {
            // best effort: the JVM's temp directory is cleaned by the OS eventually
        }
    }
}
