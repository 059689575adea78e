// Conformance oracle: runs JSON test cases on the real Kafka Streams TopologyTestDriver.
//
// Protocol: stdin carries one JSON case per line; for each case, stdout gets exactly one JSON line
// (flushed at once, so one JVM can serve cases one by one as a long-lived process)
//   {"name": ..., "outputs": [{"in": i, ["topic": t,] "key": k, ["start": s, "end": e,] "value": v,
//                              "ts": t}, ...],
//    "dropped": [{"in": i, "count": n}, ...], ["failure": {"in": i, "error": "..."}]}
// or {"name": ..., "error": "<stack trace>"} if building or running the case failed.
// The case format is described in tests/conformance/README.md. Which DSL calls each case makes is
// in Topologies and TableTopologies; the user functions they share are in Functions.

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
import java.util.Comparator;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Properties;
import java.util.stream.Stream;

import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.TestInputTopic;
import org.apache.kafka.streams.TestOutputTopic;
import org.apache.kafka.streams.TopologyTestDriver;
import org.apache.kafka.streams.state.BuiltInDslStoreSuppliers;
import org.apache.kafka.streams.test.TestRecord;

public final class Oracle {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String SEP = Functions.SEP;
    /** Key and value of the record that expresses workbench's end of input ("flush": true). */
    private static final String FLUSH_KEY = "~flush";
    private static final String FLUSH_VALUE = "~flush|0";

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
        final JsonNode topo = Functions.required(spec, "topology");
        final StreamsBuilder builder = new StreamsBuilder();
        DslTopologies.reset();
        final Topologies.Built built = Topologies.build(builder, topo);

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
        final TopologyTestDriver driver = new TopologyTestDriver(builder.build(), props);
        boolean failed = false;
        try {
            final Map<String, TestInputTopic<String, String>> inputs = new HashMap<>();
            final Map<String, TestOutputTopic<String, String>> outTopics = new LinkedHashMap<>();
            for (final String topic : built.outputs()) {
                outTopics.put(topic, driver.createOutputTopic(
                    topic, new StringDeserializer(), new StringDeserializer()));
            }
            double droppedBefore = droppedRecords(driver);
            long maxTs = -1L;
            int index = 0;
            for (final JsonNode rec : Functions.required(spec, "records")) {
                final String topic = Functions.required(rec, "topic").asText();
                final TestInputTopic<String, String> input = inputs.computeIfAbsent(
                    topic, t -> driver.createInputTopic(t, new StringSerializer(), new StringSerializer()));
                final long ts = Functions.required(rec, "ts").asLong();
                maxTs = Math.max(maxTs, ts);
                try {
                    input.pipeInput(Functions.text(rec, "key"), Functions.text(rec, "value"), ts);
                } catch (final RuntimeException e) {
                    // e.g. a suppress buffer that is full and configured to shut down: Kafka Streams
                    // stops; what the failing record produced is not read
                    final ObjectNode failure = result.putObject("failure");
                    failure.put("in", index);
                    failure.put("error", describe(e));
                    failed = true;
                    break;
                }
                readOutputs(outTopics, IntNode.valueOf(index), built.windowed(), outputs);
                final double droppedNow = droppedRecords(driver);
                if (droppedNow > droppedBefore) {
                    final ObjectNode d = dropped.addObject();
                    d.put("in", index);
                    d.put("count", (long) (droppedNow - droppedBefore));
                }
                droppedBefore = droppedNow;
                index++;
            }
            if (!failed && spec.path("flush").asBoolean(false)) {
                final String topic = built.inputs().get(0);
                final TestInputTopic<String, String> input = inputs.computeIfAbsent(
                    topic, t -> driver.createInputTopic(t, new StringSerializer(), new StringSerializer()));
                input.pipeInput(FLUSH_KEY, FLUSH_VALUE, Math.max(0L, maxTs) + flushHorizon(topo));
                // the flush key's own outputs are an artefact of the flush record; so are its drops
                // (e.g. a put into a stream-stream join store of retention 0): neither is reported
                readOutputs(outTopics, TextNode.valueOf("end"), built.windowed(), outputs);
            }
        } finally {
            try {
                driver.close();
            } catch (final RuntimeException e) {
                if (!failed) {
                    throw e;
                }
            }
        }
        DslTopologies.readPrinted(outputs);
    }

    /** Reads every output topic (in the built order) and tags the records with {@code in}. */
    private static void readOutputs(final Map<String, TestOutputTopic<String, String>> outTopics,
                                    final JsonNode in, final boolean windowed, final ArrayNode outputs) {
        final boolean several = outTopics.size() > 1;
        for (final Map.Entry<String, TestOutputTopic<String, String>> e : outTopics.entrySet()) {
            for (final TestRecord<String, String> r : e.getValue().readRecordsToList()) {
                final String key = windowed ? r.key().split(SEP, -1)[0] : r.key();
                if (FLUSH_KEY.equals(key)) {
                    continue;
                }
                final ObjectNode o = addOutput(outputs, in, r, windowed);
                if (several) {
                    o.put("topic", e.getKey());
                }
            }
        }
    }

    /**
     * How far past the largest input timestamp the flush record goes ("flush": true), so that
     * every window has closed, every parked stream-stream join record has expired, every
     * stream record waiting in a versioned join's grace buffer has come out and every suppress
     * time limit has passed.
     */
    private static long flushHorizon(final JsonNode topo) {
        long horizon = 1;
        final JsonNode w = topo.get("window");
        if (w != null && !w.isNull()) {
            final long grace = w.path("grace").asLong(0);
            switch (Functions.required(w, "type").asText()) {
                case "tumbling":
                case "hopping": // windows end at most size after a record: end <= close time
                    horizon = Functions.required(w, "size").asLong() + grace + 1;
                    break;
                case "sliding": // right windows end at t + 1 + difference: end < close time
                    horizon = Functions.required(w, "difference").asLong() + grace + 2;
                    break;
                case "session": // a session ends at its last record: end < close time
                    horizon = Functions.required(w, "gap").asLong() + grace + 1;
                    break;
                default:
                    throw new IllegalArgumentException("unknown window type: " + w);
            }
        }
        if (Functions.required(topo, "op").asText().equals("join_ss")) {
            // parked records expire once stream time > T + before/after + grace
            final long before = topo.path("before").asLong(topo.path("difference").asLong(0));
            final long after = topo.path("after").asLong(topo.path("difference").asLong(0));
            horizon = Math.max(before, after) + topo.path("grace").asLong(0) + 1;
        }
        if (topo.has("join_grace")) {
            // stream records wait in the join buffer until stream time is join_grace past them
            horizon = Math.max(horizon, topo.get("join_grace").asLong() + 1);
        }
        final JsonNode s = topo.get("suppress");
        if (s != null && s.path("until").asText("").equals("time_limit")) {
            horizon += Functions.required(s, "time_limit").asLong();
        }
        return horizon;
    }

    /** An exception and its causes, one "Class: message" each, joined by " <- ". */
    private static String describe(final Throwable t) {
        final StringBuilder sb = new StringBuilder();
        for (Throwable c = t; c != null; c = c.getCause() == c ? null : c.getCause()) {
            if (sb.length() > 0) {
                sb.append(" <- ");
            }
            sb.append(c.getClass().getSimpleName()).append(": ").append(c.getMessage());
        }
        return sb.toString();
    }

    /** One output record: {"in", "key", ["start", "end",] "value", "ts"}. */
    private static ObjectNode addOutput(final ArrayNode outputs, final JsonNode in,
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
        return o;
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
