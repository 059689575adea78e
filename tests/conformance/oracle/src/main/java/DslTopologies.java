// Conformance topologies of the rest of the DSL, part A (issue 15): table filters (whose
// tombstones depend on whether a later step asks for old values) and split() with named
// branches and a default branch.

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.kstream.Branched;
import org.apache.kafka.streams.kstream.BranchedKStream;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Named;
import org.apache.kafka.streams.kstream.Printed;
import org.apache.kafka.streams.state.KeyValueStore;

final class DslTopologies {
    /** The file the current case's print() writes, and how many of its lines were read. */
    private static Path printFile;

    private DslTopologies() {
    }

    /** Forget the previous case's print file (called before each case is built). */
    static void reset() {
        printFile = null;
    }

    /**
     * print: {"label": l, "mapper": "key_value" | "value"}: stream("in").print(Printed.toFile(a
     * temporary file).withLabel(l)[.withKeyValueMapper((k, v) -> v)]). After each record the
     * oracle reports the file's lines as outputs {"in": i, "key": null, "value": line, "ts": 0}.
     */
    static Topologies.Built print(final StreamsBuilder builder, final JsonNode topo) {
        try {
            printFile = Files.createTempFile("oracle-print", ".txt");
        } catch (final IOException e) {
            throw new UncheckedIOException(e);
        }
        printFile.toFile().deleteOnExit();
        Printed<String, String> printed = Printed.<String, String>toFile(printFile.toString())
            .withLabel(Functions.required(topo, "label").asText());
        if (topo.path("mapper").asText("key_value").equals("value")) {
            printed = printed.withKeyValueMapper((k, v) -> v);
        }
        builder.stream("in", Functions.IN).print(printed);
        return new Topologies.Built(false, List.of(), List.of("in"));
    }

    /**
     * The lines print() wrote (Kafka flushes a Printed.toFile writer only when the topology
     * closes), as outputs: the topology prints every input record, so line i is record i's (the
     * flush record's line is left out).
     */
    static void readPrinted(final ArrayNode outputs) {
        if (printFile == null) {
            return;
        }
        final List<String> lines;
        try {
            lines = Files.readAllLines(printFile, StandardCharsets.UTF_8);
        } catch (final IOException e) {
            throw new UncheckedIOException(e);
        }
        for (int i = 0; i < lines.size(); i++) {
            if (lines.get(i).contains("~flush")) { // the flush record (Oracle.FLUSH_KEY)
                continue;
            }
            final ObjectNode o = outputs.addObject();
            o.put("in", i);
            o.putNull("key");
            o.put("value", lines.get(i));
            o.put("ts", 0);
        }
    }

    /**
     * table_filter: {"min": n, "then": "changes" | "filter_changes" (a second filter, "max": m)
     * | "map_changes" (mapValues v + "!") | "group_count" (groupBy foreign key, count) | "join"
     * (join with table "right", "how": inner | left | outer) | "fk_join" (foreign-key join with
     * table "right") | "suppress" (the case's "suppress" spec)}: table("in").filter(number(v) >=
     * min) then the step.
     */
    static Topologies.Built tableFilter(final StreamsBuilder builder, final JsonNode topo) {
        final long min = topo.path("min").asLong(0);
        final String then = topo.path("then").asText("changes");
        final KTable<String, String> filtered = builder.table("in", Functions.IN)
            .filter((k, v) -> Functions.number(v) >= min);
        switch (then) {
            case "changes":
                filtered.toStream().to(Functions.OUT_TOPIC, Functions.OUT);
                return Topologies.Built.single(false, "in");
            case "filter_changes": {
                final long max = topo.path("max").asLong(Long.MAX_VALUE);
                filtered.filter((k, v) -> Functions.number(v) <= max)
                    .toStream().to(Functions.OUT_TOPIC, Functions.OUT);
                return Topologies.Built.single(false, "in");
            }
            case "map_changes":
                filtered.mapValues(v -> v + "!").toStream().to(Functions.OUT_TOPIC, Functions.OUT);
                return Topologies.Built.single(false, "in");
            case "group_count":
                Functions.asStrings(filtered
                        .groupBy((k, v) -> KeyValue.pair(Functions.foreignKey(v), v),
                                 Grouped.with(Functions.S, Functions.S))
                        .count(Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>with(
                            Functions.S, Functions.L)))
                    .toStream().to(Functions.OUT_TOPIC, Functions.OUT);
                return Topologies.Built.single(false, "in");
            case "join": {
                final KTable<String, String> right = builder.table("right", Functions.IN);
                final String how = topo.path("how").asText("inner");
                final KTable<String, String> joined;
                switch (how) {
                    case "inner":
                        joined = filtered.join(right, Functions.JOINER);
                        break;
                    case "left":
                        joined = filtered.leftJoin(right, Functions.JOINER);
                        break;
                    case "outer":
                        joined = filtered.outerJoin(right, Functions.JOINER);
                        break;
                    default:
                        throw new IllegalArgumentException("unknown how: " + how);
                }
                joined.toStream().to(Functions.OUT_TOPIC, Functions.OUT);
                return Topologies.Built.single(false, "in", "right");
            }
            case "fk_join":
                filtered.join(builder.table("right", Functions.IN), Functions::foreignKey,
                              Functions.JOINER)
                    .toStream().to(Functions.OUT_TOPIC, Functions.OUT);
                return Topologies.Built.single(false, "in", "right");
            case "suppress":
                Topologies.suppressed(filtered, topo).toStream().to(Functions.OUT_TOPIC, Functions.OUT);
                return Topologies.Built.single(false, "in");
            default:
                throw new IllegalArgumentException("unknown then: " + then);
        }
    }

    /**
     * split: {"branches": [{"name": n, "fk": f}, ...], "default": name or null}:
     * stream("in").split().branch(foreignKey(v) equals f, Branched.withConsumer(to "out-" + n))...
     * then defaultBranch (to "out-" + default) or noDefaultBranch(). The oracle reads the
     * branches' topics in order (the default last).
     */
    static Topologies.Built split(final StreamsBuilder builder, final JsonNode topo) {
        final List<String> outputs = new ArrayList<>();
        BranchedKStream<String, String> branched = builder.stream("in", Functions.IN)
            .split(Named.as("split-"));
        for (final JsonNode branch : Functions.required(topo, "branches")) {
            final String name = Functions.required(branch, "name").asText();
            final String fk = Functions.text(branch, "fk");
            final String topic = "out-" + name;
            outputs.add(topic);
            branched = branched.branch((k, v) -> Objects.equals(Functions.foreignKey(v), fk),
                Branched.withConsumer(s -> s.to(topic, Functions.OUT), name));
        }
        final String defaultName = Functions.text(topo, "default");
        if (defaultName == null) {
            branched.noDefaultBranch();
        } else {
            final String topic = "out-" + defaultName;
            outputs.add(topic);
            branched.defaultBranch(Branched.withConsumer(s -> s.to(topic, Functions.OUT), defaultName));
        }
        return new Topologies.Built(false, outputs, List.of("in"));
    }
}
