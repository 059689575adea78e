// Table-side conformance topologies: tables (versioned or not), re-grouped tables
// (KTable.groupBy + count/reduce/aggregate with adder and subtractor), and the joins that read a
// table: stream-table, table-table, foreign-key, and stream-global-table.

import com.fasterxml.jackson.databind.JsonNode;

import java.time.Duration;
import java.util.function.Function;

import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.kstream.GlobalKTable;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Joined;
import org.apache.kafka.streams.kstream.KGroupedTable;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.KeyValueMapper;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;

final class TableTopologies {
    private TableTopologies() {
    }

    static Topologies.Built build(final StreamsBuilder builder, final JsonNode topo, final String op) {
        switch (op) {
            case "table":
                sourceTable(builder, topo);
                return Topologies.Built.single(false, "in");
            case "table_group_by":
                groupTable(builder, topo);
                return Topologies.Built.single(false, "in");
            case "join_st":
                joinStreamTable(builder, topo);
                return Topologies.Built.single(false, "left", "right");
            case "join_tt":
                joinTableTable(builder, topo);
                return Topologies.Built.single(false, "left", "right");
            case "join_fk":
                joinForeignKey(builder, topo);
                return Topologies.Built.single(false, "left", "right");
            case "join_global":
                joinGlobal(builder, topo);
                return Topologies.Built.single(false, "left", "right");
            default:
                throw new IllegalArgumentException("unknown op: " + op);
        }
    }

    /**
     * {@code builder.table(topic)}; with "versioned": true, materialized in a versioned store
     * ({@code Stores.persistentVersionedKeyValueStore}, history "history" ms, default 1000000).
     */
    static KTable<String, String> table(final StreamsBuilder builder, final String topic,
                                        final JsonNode topo) {
        if (topo.path("versioned").asBoolean(false)) {
            final Duration history = Duration.ofMillis(topo.path("history").asLong(1_000_000L));
            return builder.table(topic, Functions.IN, Materialized.<String, String>as(
                    Stores.persistentVersionedKeyValueStore(topic + "-versioned", history))
                .withKeySerde(Functions.S)
                .withValueSerde(Functions.S));
        }
        return builder.table(topic, Functions.IN);
    }

    /** table: the table's changelog (optionally versioned, optionally suppressed). */
    private static void sourceTable(final StreamsBuilder builder, final JsonNode topo) {
        final KTable<String, String> table = topo.path("versioned").asBoolean(false)
            ? table(builder, "in", topo)
            : builder.table("in", Functions.IN,
                            Materialized.<String, String, KeyValueStore<Bytes, byte[]>>as("s"));
        Topologies.suppressed(table, topo).toStream().to(Functions.OUT_TOPIC, Functions.OUT);
    }

    /**
     * table_group_by: {"agg": "count" | "sum" | "reduce_sum"}: table("in").groupBy(value's foreign
     * key) then count(), aggregate(0, +number, -number) or reduce(adder, subtractor) where
     * reduce_sum's adder gives String.valueOf(number(a) + number(v)) and its subtractor
     * String.valueOf(number(a) - number(v)).
     */
    private static void groupTable(final StreamsBuilder builder, final JsonNode topo) {
        final String groupBy = topo.path("group_by").asText("fk");
        if (!groupBy.equals("fk")) {
            throw new IllegalArgumentException("unknown group_by: " + groupBy);
        }
        final KeyValueMapper<String, String, KeyValue<String, String>> byForeignKey =
            (k, v) -> KeyValue.pair(Functions.foreignKey(v), v);
        final KGroupedTable<String, String> grouped = table(builder, "in", topo)
            .groupBy(byForeignKey, Grouped.with(Functions.S, Functions.S));
        final String agg = topo.path("agg").asText("count");
        final KTable<String, String> result;
        switch (agg) {
            case "count":
                result = Functions.asStrings(grouped.count(
                    Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>with(Functions.S, Functions.L)));
                break;
            case "sum":
                result = Functions.asStrings(grouped.aggregate(Functions.ZERO, Functions.SUM,
                    Functions.MINUS,
                    Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>with(Functions.S, Functions.L)));
                break;
            case "reduce_sum":
                result = grouped.reduce(
                    (a, v) -> String.valueOf(Functions.number(a) + Functions.number(v)),
                    (a, v) -> String.valueOf(Functions.number(a) - Functions.number(v)),
                    Materialized.<String, String, KeyValueStore<Bytes, byte[]>>with(Functions.S, Functions.S));
                break;
            default:
                throw new IllegalArgumentException("unknown agg: " + agg);
        }
        Topologies.suppressed(result, topo).toStream().to(Functions.OUT_TOPIC, Functions.OUT);
    }

    private static void joinStreamTable(final StreamsBuilder builder, final JsonNode topo) {
        final String how = topo.path("how").asText("inner");
        final KStream<String, String> stream = builder.stream("left", Functions.IN);
        final KTable<String, String> table = table(builder, "right", topo);
        Joined<String, String, String> joined = Joined.with(Functions.S, Functions.S, Functions.S);
        if (topo.has("join_grace")) {
            joined = joined.withGracePeriod(Functions.ms(topo.get("join_grace")));
        }
        final KStream<String, String> result;
        switch (how) {
            case "inner":
                result = stream.join(table, Functions.JOINER, joined);
                break;
            case "left":
                result = stream.leftJoin(table, Functions.JOINER, joined);
                break;
            default:
                throw new IllegalArgumentException("unknown how: " + how);
        }
        result.to(Functions.OUT_TOPIC, Functions.OUT);
    }

    private static void joinTableTable(final StreamsBuilder builder, final JsonNode topo) {
        final String how = topo.path("how").asText("inner");
        final KTable<String, String> left = table(builder, "left", topo);
        final KTable<String, String> right = table(builder, "right", topo);
        final KTable<String, String> result;
        switch (how) {
            case "inner":
                result = left.join(right, Functions.JOINER);
                break;
            case "left":
                result = left.leftJoin(right, Functions.JOINER);
                break;
            case "outer":
                result = left.outerJoin(right, Functions.JOINER);
                break;
            default:
                throw new IllegalArgumentException("unknown how: " + how);
        }
        result.toStream().to(Functions.OUT_TOPIC, Functions.OUT);
    }

    private static void joinForeignKey(final StreamsBuilder builder, final JsonNode topo) {
        final String how = topo.path("how").asText("inner");
        final KTable<String, String> left = builder.table("left", Functions.IN);
        final KTable<String, String> right = builder.table("right", Functions.IN);
        final Function<String, String> fk = Functions::foreignKey;
        final KTable<String, String> result;
        switch (how) {
            case "inner":
                result = left.join(right, fk, Functions.JOINER);
                break;
            case "left":
                result = left.leftJoin(right, fk, Functions.JOINER);
                break;
            default:
                throw new IllegalArgumentException("unknown how: " + how);
        }
        result.toStream().to(Functions.OUT_TOPIC, Functions.OUT);
    }

    /**
     * join_global: stream("left").join/leftJoin(globalTable("right"), key selector = the stream
     * value's foreign key, joiner); the output keeps the stream record's key.
     */
    private static void joinGlobal(final StreamsBuilder builder, final JsonNode topo) {
        final String how = topo.path("how").asText("inner");
        final KStream<String, String> stream = builder.stream("left", Functions.IN);
        final GlobalKTable<String, String> global = builder.globalTable("right", Functions.IN,
            Materialized.<String, String, KeyValueStore<Bytes, byte[]>>as("global-right")
                .withKeySerde(Functions.S)
                .withValueSerde(Functions.S));
        final KeyValueMapper<String, String, String> selector = (k, v) -> Functions.foreignKey(v);
        final KStream<String, String> result;
        switch (how) {
            case "inner":
                result = stream.join(global, selector, Functions.JOINER);
                break;
            case "left":
                result = stream.leftJoin(global, selector, Functions.JOINER);
                break;
            default:
                throw new IllegalArgumentException("unknown how: " + how);
        }
        result.to(Functions.OUT_TOPIC, Functions.OUT);
    }
}
