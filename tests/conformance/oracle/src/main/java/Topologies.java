// The topologies of the conformance cases: which Kafka Streams DSL calls each "op" of a case makes
// (tests/conformance/README.md describes every op and its parameters). Stream-side operations are
// here; table-side ones (tables, re-grouped tables, table joins) are in TableTopologies.

import static java.util.Objects.requireNonNull;

import com.fasterxml.jackson.databind.JsonNode;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.kstream.Aggregator;
import org.apache.kafka.streams.kstream.CogroupedKStream;
import org.apache.kafka.streams.kstream.EmitStrategy;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.JoinWindows;
import org.apache.kafka.streams.kstream.KGroupedStream;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Repartitioned;
import org.apache.kafka.streams.kstream.SessionWindowedKStream;
import org.apache.kafka.streams.kstream.SessionWindows;
import org.apache.kafka.streams.kstream.SlidingWindows;
import org.apache.kafka.streams.kstream.StreamJoined;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindowedKStream;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.kstream.Windowed;
import org.apache.kafka.streams.processor.StateStore;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.SessionStore;
import org.apache.kafka.streams.state.WindowStore;

final class Topologies {
    /**
     * What a built topology looks like from outside.
     *
     * @param windowed whether output keys are windowed ({@link Functions#windowedKey})
     * @param outputs  the output topics to read, in this order, after each input record
     * @param inputs   the input topics; the first one receives the flush record
     */
    record Built(boolean windowed, List<String> outputs, List<String> inputs) {
        static Built single(final boolean windowed, final String... inputs) {
            return new Built(windowed, List.of(Functions.OUT_TOPIC), List.of(inputs));
        }
    }

    private Topologies() {
    }

    /** Builds the case's topology into {@code builder}. */
    static Built build(final StreamsBuilder builder, final JsonNode topo) {
        final String op = Functions.required(topo, "op").asText();
        switch (op) {
            case "window_agg":
                windowAgg(builder, topo);
                return Built.single(true, "in");
            case "agg":
                agg(builder, topo);
                return Built.single(false, "in");
            case "cogroup":
                return cogroup(builder, topo);
            case "repartition":
                repartition(builder, topo);
                return Built.single(false, "in");
            case "to_topic":
                return toTopic(builder, topo);
            case "table_filter":
                return DslTopologies.tableFilter(builder, topo);
            case "split":
                return DslTopologies.split(builder, topo);
            case "print":
                return DslTopologies.print(builder, topo);
            case "join_ss":
                joinStreamStream(builder, topo);
                return Built.single(false, "left", "right");
            case "process_session":
            case "process_timestamped":
            case "process_global":
                return ProcessorTopologies.build(builder, topo, op);
            default:
                return TableTopologies.build(builder, topo, op);
        }
    }

    // ---------------------------------------------------------------- windows

    static TimeWindows timeWindows(final JsonNode w) {
        final Duration size = Functions.ms(Functions.required(w, "size"));
        final TimeWindows tw = w.has("grace")
            ? TimeWindows.ofSizeAndGrace(size, Functions.ms(w.get("grace")))
            : TimeWindows.ofSizeWithNoGrace(size);
        return w.has("advance") ? tw.advanceBy(Functions.ms(w.get("advance"))) : tw;
    }

    static SlidingWindows slidingWindows(final JsonNode w) {
        final Duration d = Functions.ms(Functions.required(w, "difference"));
        return w.has("grace")
            ? SlidingWindows.ofTimeDifferenceAndGrace(d, Functions.ms(w.get("grace")))
            : SlidingWindows.ofTimeDifferenceWithNoGrace(d);
    }

    static SessionWindows sessionWindows(final JsonNode w) {
        final Duration gap = Functions.ms(Functions.required(w, "gap"));
        return w.has("grace")
            ? SessionWindows.ofInactivityGapAndGrace(gap, Functions.ms(w.get("grace")))
            : SessionWindows.ofInactivityGapWithNoGrace(gap);
    }

    /** Applies the optional "retention" of a window spec (default: Kafka's, size/gap + grace). */
    static <V, T extends StateStore> Materialized<String, V, T> retention(
            final Materialized<String, V, T> m, final JsonNode window) {
        return window.has("retention") ? m.withRetention(Functions.ms(window.get("retention"))) : m;
    }

    private static void windowAgg(final StreamsBuilder builder, final JsonNode topo) {
        final JsonNode w = Functions.required(topo, "window");
        final String type = Functions.required(w, "type").asText();
        final String agg = topo.path("agg").asText("count");
        final String emit = topo.path("emit").asText("update");
        if (!emit.equals("update") && !emit.equals("close") && !emit.equals("suppress")) {
            throw new IllegalArgumentException("unknown emit: " + emit);
        }
        final boolean onClose = emit.equals("close");
        final KGroupedStream<String, String> grouped =
            builder.stream("in", Functions.IN).groupByKey(Grouped.with(Functions.S, Functions.S));
        final KTable<Windowed<String>, String> table;
        switch (type) {
            case "tumbling":
            case "hopping":
            case "sliding": {
                final TimeWindowedKStream<String, String> ws = type.equals("sliding")
                    ? grouped.windowedBy(slidingWindows(w))
                    : grouped.windowedBy(timeWindows(w));
                final TimeWindowedKStream<String, String> ws2 =
                    onClose ? ws.emitStrategy(EmitStrategy.onWindowClose()) : ws;
                switch (agg) {
                    case "count":
                        table = Functions.asStrings(ws2.count(retention(Materialized
                            .<String, Long, WindowStore<Bytes, byte[]>>with(Functions.S, Functions.L), w)));
                        break;
                    case "sum":
                        table = Functions.asStrings(ws2.aggregate(Functions.ZERO, Functions.SUM,
                            retention(Materialized.<String, Long, WindowStore<Bytes, byte[]>>with(
                                Functions.S, Functions.L), w)));
                        break;
                    case "reduce_concat":
                        table = ws2.reduce((a, v) -> a + "," + v, retention(Materialized
                            .<String, String, WindowStore<Bytes, byte[]>>with(Functions.S, Functions.S), w));
                        break;
                    default:
                        throw new IllegalArgumentException("unknown agg: " + agg);
                }
                break;
            }
            case "session": {
                final SessionWindowedKStream<String, String> ws = grouped.windowedBy(sessionWindows(w));
                final SessionWindowedKStream<String, String> ws2 =
                    onClose ? ws.emitStrategy(EmitStrategy.onWindowClose()) : ws;
                switch (agg) {
                    case "count":
                        table = Functions.asStrings(ws2.count(retention(Materialized
                            .<String, Long, SessionStore<Bytes, byte[]>>with(Functions.S, Functions.L), w)));
                        break;
                    case "sum":
                        table = Functions.asStrings(ws2.aggregate(Functions.ZERO, Functions.SUM,
                            (k, a, b) -> a + b, retention(Materialized
                                .<String, Long, SessionStore<Bytes, byte[]>>with(Functions.S, Functions.L), w)));
                        break;
                    case "reduce_concat":
                        table = ws2.reduce((a, v) -> a + "," + v, retention(Materialized
                            .<String, String, SessionStore<Bytes, byte[]>>with(Functions.S, Functions.S), w));
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
            : suppressed(table, topo);
        result.toStream((wk, v) -> Functions.windowedKey(wk)).to(Functions.OUT_TOPIC, Functions.OUT);
    }

    // ---------------------------------------------------------------- suppress

    /**
     * Applies the case's optional "suppress" spec to {@code table}:
     * {"until": "window_close" | "time_limit", "time_limit": ms, "max_records": n, "max_bytes": n,
     * "when_full": "emit_early" | "shut_down"}. No spec: the table unchanged.
     */
    @SuppressWarnings("unchecked")
    static <K> KTable<K, String> suppressed(final KTable<K, String> table, final JsonNode topo) {
        final JsonNode s = topo.get("suppress");
        if (s == null || s.isNull()) {
            return table;
        }
        final String until = Functions.required(s, "until").asText();
        final String whenFull = s.path("when_full").asText(
            until.equals("window_close") ? "shut_down" : "emit_early");
        final boolean bounded = s.has("max_records") || s.has("max_bytes");
        switch (until) {
            case "window_close": {
                if (!whenFull.equals("shut_down")) {
                    throw new IllegalArgumentException("untilWindowCloses needs when_full=shut_down");
                }
                final Suppressed.StrictBufferConfig strict = bounded
                    ? bound(s).shutDownWhenFull()
                    : Suppressed.BufferConfig.unbounded();
                // only windowed tables reach here (untilWindowCloses takes Suppressed<Windowed<?>>)
                return table.suppress((Suppressed<? super K>) (Suppressed<?>) Suppressed.untilWindowCloses(strict));
            }
            case "time_limit": {
                final Duration limit = Functions.ms(Functions.required(s, "time_limit"));
                final Suppressed.BufferConfig<?> config;
                if (!bounded) {
                    config = Suppressed.BufferConfig.unbounded();
                } else if (whenFull.equals("emit_early")) {
                    config = bound(s).emitEarlyWhenFull();
                } else if (whenFull.equals("shut_down")) {
                    config = bound(s).shutDownWhenFull();
                } else {
                    throw new IllegalArgumentException("unknown when_full: " + whenFull);
                }
                return table.suppress(Suppressed.untilTimeLimit(limit, config));
            }
            default:
                throw new IllegalArgumentException("unknown suppress until: " + until);
        }
    }

    /** maxRecords and/or maxBytes of a suppress spec. */
    private static Suppressed.EagerBufferConfig bound(final JsonNode s) {
        Suppressed.EagerBufferConfig config = s.has("max_records")
            ? Suppressed.BufferConfig.maxRecords(s.get("max_records").asLong())
            : Suppressed.BufferConfig.maxBytes(s.get("max_bytes").asLong());
        if (s.has("max_records") && s.has("max_bytes")) {
            config = config.withMaxBytes(s.get("max_bytes").asLong());
        }
        return config;
    }

    // ---------------------------------------------------------------- aggregations

    private static void agg(final StreamsBuilder builder, final JsonNode topo) {
        final KStream<String, String> stream = builder.stream("in", Functions.IN);
        final String groupBy = topo.path("group_by").asText("key");
        final KGroupedStream<String, String> grouped;
        switch (groupBy) {
            case "key":
                grouped = stream.groupByKey(Grouped.with(Functions.S, Functions.S));
                break;
            case "fk": // new key = the value's part before '|' (null if there is none)
                grouped = stream.groupBy((k, v) -> Functions.foreignKey(v),
                                         Grouped.with(Functions.S, Functions.S));
                break;
            default:
                throw new IllegalArgumentException("unknown group_by: " + groupBy);
        }
        suppressed(aggregate(grouped, topo.path("agg").asText("count")), topo)
            .toStream().to(Functions.OUT_TOPIC, Functions.OUT);
    }

    /** count / sum / reduce_concat of a grouped stream, as strings. */
    private static KTable<String, String> aggregate(final KGroupedStream<String, String> grouped,
                                                    final String agg) {
        switch (agg) {
            case "count":
                return Functions.asStrings(grouped.count());
            case "sum":
                return Functions.asStrings(grouped.aggregate(Functions.ZERO, Functions.SUM,
                    Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>with(Functions.S, Functions.L)));
            case "reduce_concat":
                return grouped.reduce((a, v) -> a + "," + v,
                    Materialized.<String, String, KeyValueStore<Bytes, byte[]>>with(Functions.S, Functions.S));
            default:
                throw new IllegalArgumentException("unknown agg: " + agg);
        }
    }

    /**
     * cogroup: {"inputs": [{"topic": t, "agg": "count" | "sum" | "minus"}, ...], "window": optional
     * (tumbling, hopping, sliding, session)}: each input grouped by key with its own aggregator
     * into one Long aggregate starting at 0 (sessions merge with a + b).
     */
    private static Built cogroup(final StreamsBuilder builder, final JsonNode topo) {
        final List<String> topics = new ArrayList<>();
        CogroupedKStream<String, Long> co = null;
        for (final JsonNode input : Functions.required(topo, "inputs")) {
            final String topic = Functions.required(input, "topic").asText();
            topics.add(topic);
            final KGroupedStream<String, String> grouped = builder.stream(topic, Functions.IN)
                .groupByKey(Grouped.with(Functions.S, Functions.S));
            final Aggregator<String, String, Long> aggregator = cogroupAggregator(
                input.path("agg").asText("count"));
            co = co == null ? grouped.cogroup(aggregator) : co.cogroup(grouped, aggregator);
        }
        requireNonNull(co, "cogroup needs at least one input");
        final JsonNode w = topo.get("window");
        if (w == null || w.isNull()) {
            suppressed(Functions.asStrings(co.aggregate(Functions.ZERO, Materialized
                    .<String, Long, KeyValueStore<Bytes, byte[]>>with(Functions.S, Functions.L))), topo)
                .toStream().to(Functions.OUT_TOPIC, Functions.OUT);
            return new Built(false, List.of(Functions.OUT_TOPIC), topics);
        }
        final String type = Functions.required(w, "type").asText();
        final KTable<Windowed<String>, Long> table;
        switch (type) {
            case "tumbling":
            case "hopping":
                table = co.windowedBy(timeWindows(w)).aggregate(Functions.ZERO, retention(Materialized
                    .<String, Long, WindowStore<Bytes, byte[]>>with(Functions.S, Functions.L), w));
                break;
            case "sliding":
                table = co.windowedBy(slidingWindows(w)).aggregate(Functions.ZERO, retention(Materialized
                    .<String, Long, WindowStore<Bytes, byte[]>>with(Functions.S, Functions.L), w));
                break;
            case "session":
                table = co.windowedBy(sessionWindows(w)).aggregate(Functions.ZERO, (k, a, b) -> a + b,
                    retention(Materialized.<String, Long, SessionStore<Bytes, byte[]>>with(
                        Functions.S, Functions.L), w));
                break;
            default:
                throw new IllegalArgumentException("unknown window type: " + type);
        }
        suppressed(Functions.asStrings(table), topo)
            .toStream((wk, v) -> Functions.windowedKey(wk)).to(Functions.OUT_TOPIC, Functions.OUT);
        return new Built(true, List.of(Functions.OUT_TOPIC), topics);
    }

    private static Aggregator<String, String, Long> cogroupAggregator(final String agg) {
        switch (agg) {
            case "count":
                return Functions.PLUS_ONE;
            case "sum":
                return Functions.SUM;
            case "minus":
                return Functions.MINUS;
            default:
                throw new IllegalArgumentException("unknown cogroup agg: " + agg);
        }
    }

    // ---------------------------------------------------------------- repartition, to(extractor)

    /**
     * repartition: {"key_by": "fk" (optional: selectKey to the value's foreign key), "partitions": n
     * (optional), "then": "forward" | "count"}: stream("in")[.selectKey].repartition(...) then
     * straight to "out", or groupByKey().count().
     */
    private static void repartition(final StreamsBuilder builder, final JsonNode topo) {
        KStream<String, String> stream = builder.stream("in", Functions.IN);
        final String keyBy = topo.path("key_by").asText("");
        if (keyBy.equals("fk")) {
            stream = stream.selectKey((k, v) -> Functions.foreignKey(v));
        } else if (!keyBy.isEmpty()) {
            throw new IllegalArgumentException("unknown key_by: " + keyBy);
        }
        Repartitioned<String, String> how = Repartitioned.with(Functions.S, Functions.S);
        if (topo.has("partitions")) {
            how = how.withNumberOfPartitions(topo.get("partitions").asInt());
        }
        final KStream<String, String> moved = stream.repartition(how);
        final String then = topo.path("then").asText("forward");
        switch (then) {
            case "forward":
                moved.to(Functions.OUT_TOPIC, Functions.OUT);
                break;
            case "count":
                Functions.asStrings(moved.groupByKey(Grouped.with(Functions.S, Functions.S)).count())
                    .toStream().to(Functions.OUT_TOPIC, Functions.OUT);
                break;
            default:
                throw new IllegalArgumentException("unknown then: " + then);
        }
    }

    /**
     * to_topic: {"topics": [...], "by": "fk" | "key"}: stream("in").to(topic extractor), the topic
     * being "out-" + the value's foreign key ("out-none" without one), or (by key) "out-" + the
     * key ("out-null" for a null key). The oracle reads the listed topics.
     */
    private static Built toTopic(final StreamsBuilder builder, final JsonNode topo) {
        final List<String> outputs = new ArrayList<>();
        for (final JsonNode t : Functions.required(topo, "topics")) {
            outputs.add(t.asText());
        }
        final boolean byKey = topo.path("by").asText("fk").equals("key");
        builder.stream("in", Functions.IN).to((k, v, context) -> {
            if (byKey) {
                return "out-" + k; // a null key names "out-null"
            }
            final String fk = Functions.foreignKey(v);
            return "out-" + (fk == null ? "none" : fk);
        }, Functions.OUT);
        return new Built(false, outputs, List.of("in"));
    }

    // ---------------------------------------------------------------- stream-stream join

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
        final KStream<String, String> left = builder.stream("left", Functions.IN);
        final KStream<String, String> right = builder.stream("right", Functions.IN);
        final StreamJoined<String, String, String> sj = StreamJoined.with(Functions.S, Functions.S, Functions.S);
        final KStream<String, String> joined;
        switch (how) {
            case "inner":
                joined = left.join(right, Functions.JOINER, jw, sj);
                break;
            case "left":
                joined = left.leftJoin(right, Functions.JOINER, jw, sj);
                break;
            case "outer":
                joined = left.outerJoin(right, Functions.JOINER, jw, sj);
                break;
            default:
                throw new IllegalArgumentException("unknown how: " + how);
        }
        joined.to(Functions.OUT_TOPIC, Functions.OUT);
    }
}
