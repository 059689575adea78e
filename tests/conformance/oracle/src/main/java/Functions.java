// The user functions every conformance topology shares (the Python side, tests/conformance/spec.py,
// defines the same ones), and small helpers for reading a case's JSON.

import com.fasterxml.jackson.databind.JsonNode;

import java.time.Duration;

import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.kstream.Aggregator;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Initializer;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.ValueJoiner;
import org.apache.kafka.streams.kstream.Windowed;

final class Functions {
    static final Serde<String> S = Serdes.String();
    static final Serde<Long> L = Serdes.Long();
    static final Consumed<String, String> IN = Consumed.with(S, S);
    static final Produced<String, String> OUT = Produced.with(S, S);
    /** The output topic of every topology that has one output. */
    static final String OUT_TOPIC = "out";
    /** Separates user key, window start and window end in the output key of windowed results. */
    static final String SEP = "\u0001";

    /** Joiner of every join: String concatenation, so a missing side prints as "null". */
    static final ValueJoiner<String, String, String> JOINER = (l, r) -> l + "+" + r;
    static final Initializer<Long> ZERO = () -> 0L;
    /** "sum": adds the number after the last '|' (or the whole value); a null value adds 0. */
    static final Aggregator<String, String, Long> SUM = (k, v, agg) -> agg + number(v);
    /** "minus": subtracts that number (the subtractor of "sum"; a second cogroup input). */
    static final Aggregator<String, String, Long> MINUS = (k, v, agg) -> agg - number(v);
    /** "count" as an aggregator (cogroup inputs): one more, whatever the value. */
    static final Aggregator<String, String, Long> PLUS_ONE = (k, v, agg) -> agg + 1;

    private Functions() {
    }

    /** The part of the value before the first '|', or null if the value has no '|'. */
    static String foreignKey(final String value) {
        if (value == null) {
            return null;
        }
        final int bar = value.indexOf('|');
        return bar < 0 ? null : value.substring(0, bar);
    }

    /** The number after the last '|' (or the whole value); null counts as 0. */
    static long number(final String value) {
        if (value == null) {
            return 0L;
        }
        return Long.parseLong(value.substring(value.lastIndexOf('|') + 1).trim());
    }

    /** A Long-valued table as strings ("3"), as every output value is a string. */
    static <K> KTable<K, String> asStrings(final KTable<K, Long> t) {
        return t.mapValues(v -> v == null ? null : v.toString());
    }

    /** The output key of a windowed result: user key, start and end separated by {@link #SEP}. */
    static String windowedKey(final Windowed<String> wk) {
        return wk.key() + SEP + wk.window().start() + SEP + wk.window().end();
    }

    static Duration ms(final JsonNode n) {
        if (!n.canConvertToLong()) {
            throw new IllegalArgumentException("expected a number of milliseconds, got " + n);
        }
        return Duration.ofMillis(n.asLong());
    }

    static JsonNode required(final JsonNode n, final String field) {
        final JsonNode v = n.get(field);
        if (v == null || v.isNull()) {
            throw new IllegalArgumentException("missing field '" + field + "' in " + n);
        }
        return v;
    }

    /** A JSON string field as a Java String; JSON null or absent gives Java null. */
    static String text(final JsonNode n, final String field) {
        final JsonNode v = n.get(field);
        return v == null || v.isNull() ? null : v.asText();
    }
}
