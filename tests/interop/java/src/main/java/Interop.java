import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.ByteArrayOutputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericEnumSymbol;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.DoubleSerializer;
import org.apache.kafka.common.serialization.IntegerSerializer;
import org.apache.kafka.common.serialization.LongSerializer;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.common.utils.Utils;
import org.apache.kafka.streams.kstream.SessionWindowedSerializer;
import org.apache.kafka.streams.kstream.TimeWindowedSerializer;
import org.apache.kafka.streams.kstream.Windowed;
import org.apache.kafka.streams.kstream.internals.SessionWindow;
import org.apache.kafka.streams.kstream.internals.TimeWindow;
import org.apache.kafka.streams.kstream.internals.WindowedSerializer;
import org.apache.kafka.streams.kstream.internals.WindowedStreamPartitioner;

/**
 * The Java side of workbench's interop tests (tests/interop/). Commands:
 *
 * <pre>
 * partitions REGISTRY_URL          stdin: {"cases": [...]}; prints one JSON line per case with
 *                                  Java's serialized key bytes (hex) and the partition Java's
 *                                  producer (BuiltInPartitioner) or Kafka Streams'
 *                                  WindowedStreamPartitioner chooses for each partition count
 * produce-avro BOOTSTRAP REGISTRY TOPIC COUNT
 *                                  stdin: an Avro schema; registers it under TOPIC-value, writes
 *                                  COUNT records in Confluent's wire format (String keys, the
 *                                  producer's own partitioner); prints each record as JSON
 * consume-raw BOOTSTRAP TOPIC COUNT VALUE_SERDE
 *                                  reads COUNT records with a StringDeserializer for keys and
 *                                  VALUE_SERDE (string or long) for values; prints each with the
 *                                  partition Java's producer would choose for its key
 * consume-avro BOOTSTRAP REGISTRY TOPIC COUNT
 *                                  reads COUNT records (read_committed), checks the wire format,
 *                                  fetches each writer schema by id, decodes with Apache Avro;
 *                                  prints each record as JSON
 * </pre>
 */
public final class Interop {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final HttpClient HTTP = HttpClient.newHttpClient();

    public static void main(String[] args) throws Exception {
        switch (args[0]) {
            case "partitions" -> partitions(args.length > 1 ? args[1] : null);
            case "produce-avro" -> produceAvro(args[1], args[2], args[3], Integer.parseInt(args[4]));
            case "consume-avro" -> consumeAvro(args[1], args[2], args[3], Integer.parseInt(args[4]));
            case "consume-raw" -> consumeRaw(args[1], args[2], Integer.parseInt(args[3]), args[4]);
            default -> throw new IllegalArgumentException("unknown command " + args[0]);
        }
    }

    // ------------------------------------------------------------------------- partitions
    @SuppressWarnings({"unchecked", "rawtypes"})
    private static void partitions(String registry) throws Exception {
        JsonNode input = JSON.readTree(System.in);
        for (JsonNode c : input.get("cases")) {
            String serde = c.get("serde").asText();
            List<Integer> counts = new ArrayList<>();
            c.get("partitions").forEach(n -> counts.add(n.asInt()));
            ObjectNode out = JSON.createObjectNode();
            out.put("name", c.get("name").asText());
            ArrayNode bytesOut = out.putArray("bytes");
            ArrayNode partsOut = out.putArray("partitions");
            Schema schema = null;
            int schemaId = 0;
            if (serde.equals("avro")) {
                schema = new Schema.Parser().parse(c.get("schema").toString());
                schemaId = register(registry, c.get("subject").asText(), c.get("schema").toString());
            }
            for (JsonNode key : c.get("keys")) {
                byte[] data;
                ArrayNode ps = JSON.createArrayNode();
                if (serde.equals("time_windowed") || serde.equals("session_windowed")) {
                    Serializer<String> inner = new StringSerializer();
                    long start = key.get("start").asLong();
                    Windowed<String> w;
                    WindowedSerializer ser;
                    if (serde.equals("time_windowed")) {
                        long size = c.get("size").asLong();
                        w = new Windowed<>(key.get("key").asText(), new TimeWindow(start, start + size));
                        ser = new TimeWindowedSerializer<>(inner);
                    } else {
                        w = new Windowed<>(key.get("key").asText(), new SessionWindow(start, key.get("end").asLong()));
                        ser = new SessionWindowedSerializer<>(inner);
                    }
                    data = ser.serialize("t", w);
                    WindowedStreamPartitioner<String, Object> part = new WindowedStreamPartitioner<String, Object>(ser);
                    for (int n : counts) {
                        Optional<Set<Integer>> got = part.partitions("t", w, null, n);
                        ps.add(got.get().iterator().next());
                    }
                } else {
                    data = serialize(serde, key, schema, schemaId);
                    for (int n : counts) {
                        int p = BuiltInPartitioner.partitionForKey(data, n);
                        if (p != Utils.toPositive(Utils.murmur2(data)) % n) {
                            throw new IllegalStateException("partitioners disagree");
                        }
                        ps.add(p);
                    }
                }
                bytesOut.add(hex(data));
                partsOut.add(ps);
            }
            System.out.println(JSON.writeValueAsString(out));
        }
    }

    private static byte[] serialize(String serde, JsonNode key, Schema schema, int schemaId)
            throws Exception {
        return switch (serde) {
            case "string" -> new StringSerializer().serialize("t", key.asText());
            case "long" -> new LongSerializer().serialize("t", key.asLong());
            case "integer" -> new IntegerSerializer().serialize("t", key.asInt());
            case "double" -> new DoubleSerializer().serialize("t", key.asDouble());
            case "bytes" -> new ByteArraySerializer().serialize("t", unhex(key.asText()));
            case "avro" -> frame(schemaId, avroBytes(schema, toAvro(schema, key)));
            default -> throw new IllegalArgumentException("unknown serde " + serde);
        };
    }

    // --------------------------------------------------------------------------- registry
    private static int register(String registry, String subject, String schema) throws Exception {
        ObjectNode body = JSON.createObjectNode();
        body.put("schema", schema);
        HttpRequest req = HttpRequest.newBuilder(URI.create(registry + "/subjects/" + subject + "/versions"))
                .header("Content-Type", "application/vnd.schemaregistry.v1+json")
                .POST(HttpRequest.BodyPublishers.ofString(JSON.writeValueAsString(body))).build();
        HttpResponse<String> resp = HTTP.send(req, HttpResponse.BodyHandlers.ofString());
        if (resp.statusCode() != 200) {
            throw new IllegalStateException("registering failed: " + resp.statusCode() + " " + resp.body());
        }
        return JSON.readTree(resp.body()).get("id").asInt();
    }

    private static final Map<Integer, Schema> WRITERS = new HashMap<>();

    private static Schema writerSchema(String registry, int id) throws Exception {
        Schema found = WRITERS.get(id);
        if (found == null) {
            HttpRequest req = HttpRequest.newBuilder(URI.create(registry + "/schemas/ids/" + id)).GET().build();
            HttpResponse<String> resp = HTTP.send(req, HttpResponse.BodyHandlers.ofString());
            if (resp.statusCode() != 200) {
                throw new IllegalStateException("schema " + id + ": " + resp.statusCode() + " " + resp.body());
            }
            found = new Schema.Parser().parse(JSON.readTree(resp.body()).get("schema").asText());
            WRITERS.put(id, found);
        }
        return found;
    }

    // ------------------------------------------------------------------------------- Avro
    private static byte[] frame(int id, byte[] payload) {
        return ByteBuffer.allocate(5 + payload.length).put((byte) 0).putInt(id).put(payload).array();
    }

    private static byte[] avroBytes(Schema schema, Object datum) throws Exception {
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        BinaryEncoder enc = EncoderFactory.get().binaryEncoder(buf, null);
        new GenericDatumWriter<Object>(schema).write(datum, enc);
        enc.flush();
        return buf.toByteArray();
    }

    /** A JSON value as the Avro datum of {@code schema} (records, arrays, enums, unions with null). */
    private static Object toAvro(Schema schema, JsonNode node) {
        switch (schema.getType()) {
            case RECORD: {
                GenericRecord rec = new GenericData.Record(schema);
                for (Schema.Field f : schema.getFields()) {
                    rec.put(f.name(), toAvro(f.schema(), node.get(f.name())));
                }
                return rec;
            }
            case UNION: {
                if (node == null || node.isNull()) {
                    return null;
                }
                for (Schema s : schema.getTypes()) {
                    if (s.getType() != Schema.Type.NULL) {
                        return toAvro(s, node);
                    }
                }
                throw new IllegalArgumentException("union without a non-null branch");
            }
            case ARRAY: {
                List<Object> items = new ArrayList<>();
                node.forEach(n -> items.add(toAvro(schema.getElementType(), n)));
                return new GenericData.Array<>(schema, items);
            }
            case ENUM: return new GenericData.EnumSymbol(schema, node.asText());
            case STRING: return node.asText();
            case LONG: return node.asLong();
            case INT: return node.asInt();
            case DOUBLE: return node.asDouble();
            case FLOAT: return (float) node.asDouble();
            case BOOLEAN: return node.asBoolean();
            case NULL: return null;
            default: throw new IllegalArgumentException("unsupported Avro type " + schema.getType());
        }
    }

    /** An Avro datum as JSON (timestamps stay epoch-millisecond longs). */
    private static JsonNode toJson(Object datum) {
        JsonNodeFactory f = JsonNodeFactory.instance;
        if (datum == null) {
            return f.nullNode();
        }
        if (datum instanceof GenericRecord rec) {
            ObjectNode o = f.objectNode();
            for (Schema.Field field : rec.getSchema().getFields()) {
                o.set(field.name(), toJson(rec.get(field.name())));
            }
            return o;
        }
        if (datum instanceof CharSequence || datum instanceof GenericEnumSymbol) {
            return f.textNode(datum.toString());
        }
        if (datum instanceof Collection<?> items) {
            ArrayNode a = f.arrayNode();
            items.forEach(i -> a.add(toJson(i)));
            return a;
        }
        if (datum instanceof Long l) return f.numberNode(l);
        if (datum instanceof Integer i) return f.numberNode(i);
        if (datum instanceof Double d) return f.numberNode(d);
        if (datum instanceof Float x) return f.numberNode(x);
        if (datum instanceof Boolean b) return f.booleanNode(b);
        throw new IllegalArgumentException("unsupported datum " + datum.getClass());
    }

    private static GenericRecord payment(Schema schema, int i) {
        GenericRecord r = new GenericData.Record(schema);
        r.put("id", (long) i);
        r.put("customer", "c" + (i % 7));
        r.put("amount", i * 1.25);
        r.put("quantity", i % 5);
        r.put("paid_at", 1_700_000_000_000L + i * 1000L);
        List<String> tags = new ArrayList<>();
        tags.add("t" + (i % 3));
        if (i % 2 == 0) {
            tags.add("even");
        }
        r.put("tags", new GenericData.Array<>(schema.getField("tags").schema(), tags));
        Schema status = schema.getField("status").schema();
        r.put("status", new GenericData.EnumSymbol(status, status.getEnumSymbols().get(i % 3)));
        r.put("note", i % 4 == 0 ? null : "note " + i);
        return r;
    }

    private static void produceAvro(String bootstrap, String registry, String topic, int count)
            throws Exception {
        String text = new String(System.in.readAllBytes(), StandardCharsets.UTF_8);
        Schema schema = new Schema.Parser().parse(text);
        int id = register(registry, topic + "-value", text);
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        try (KafkaProducer<String, byte[]> producer = new KafkaProducer<>(props, new StringSerializer(), new ByteArraySerializer())) {
            for (int i = 0; i < count; i++) {
                GenericRecord value = payment(schema, i);
                String key = value.get("customer").toString();
                long ts = (Long) value.get("paid_at");
                RecordMetadata md = producer.send(new ProducerRecord<>(topic, null, ts, key, frame(id, avroBytes(schema, value)))).get();
                ObjectNode o = JSON.createObjectNode();
                o.put("key", key);
                o.put("partition", md.partition());
                o.put("schema_id", id);
                o.set("value", toJson(value));
                System.out.println(JSON.writeValueAsString(o));
            }
        }
    }

    private static void consumeAvro(String bootstrap, String registry, String topic, int count)
            throws Exception {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        try (KafkaConsumer<String, byte[]> consumer = new KafkaConsumer<>(props, new StringDeserializer(), new ByteArrayDeserializer())) {
            List<TopicPartition> tps = new ArrayList<>();
            for (PartitionInfo pi : consumer.partitionsFor(topic)) {
                tps.add(new TopicPartition(topic, pi.partition()));
            }
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            int seen = 0;
            long deadline = System.currentTimeMillis() + 60_000;
            while (seen < count && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, byte[]> rec : consumer.poll(Duration.ofMillis(500))) {
                    ByteBuffer buf = ByteBuffer.wrap(rec.value());
                    if (buf.get() != 0) {
                        throw new IllegalStateException("no magic byte at offset " + rec.offset());
                    }
                    int id = buf.getInt();
                    Schema writer = writerSchema(registry, id);
                    Object value = new GenericDatumReader<Object>(writer).read(null,
                            DecoderFactory.get().binaryDecoder(rec.value(), 5, rec.value().length - 5, null));
                    ObjectNode o = JSON.createObjectNode();
                    o.put("key", rec.key());
                    o.put("partition", rec.partition());
                    o.put("offset", rec.offset());
                    o.put("timestamp", rec.timestamp());
                    o.put("schema_id", id);
                    o.set("value", toJson(value));
                    System.out.println(JSON.writeValueAsString(o));
                    seen++;
                }
            }
            if (seen < count) {
                throw new IllegalStateException("read " + seen + " of " + count + " records of " + topic);
            }
        }
    }

    private static void consumeRaw(String bootstrap, String topic, int count, String valueSerde)
            throws Exception {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        try (KafkaConsumer<String, byte[]> consumer = new KafkaConsumer<>(props, new StringDeserializer(), new ByteArrayDeserializer())) {
            List<TopicPartition> tps = new ArrayList<>();
            for (PartitionInfo pi : consumer.partitionsFor(topic)) {
                tps.add(new TopicPartition(topic, pi.partition()));
            }
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            int seen = 0;
            long deadline = System.currentTimeMillis() + 60_000;
            while (seen < count && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, byte[]> rec : consumer.poll(Duration.ofMillis(500))) {
                    ObjectNode o = JSON.createObjectNode();
                    o.put("key", rec.key());
                    o.put("partition", rec.partition());
                    o.put("java_partition", BuiltInPartitioner.partitionForKey(
                            new StringSerializer().serialize(topic, rec.key()), tps.size()));
                    if (rec.value() == null) {
                        o.putNull("value");
                    } else if (valueSerde.equals("long")) {
                        o.put("value", new org.apache.kafka.common.serialization.LongDeserializer().deserialize(topic, rec.value()));
                    } else {
                        o.put("value", new String(rec.value(), StandardCharsets.UTF_8));
                    }
                    System.out.println(JSON.writeValueAsString(o));
                    seen++;
                }
            }
            if (seen < count) {
                throw new IllegalStateException("read " + seen + " of " + count + " records of " + topic);
            }
        }
    }

    // -------------------------------------------------------------------------------- hex
    private static String hex(byte[] data) {
        StringBuilder sb = new StringBuilder();
        for (byte b : data) {
            sb.append(String.format("%02x", b));
        }
        return sb.toString();
    }

    private static byte[] unhex(String text) {
        byte[] out = new byte[text.length() / 2];
        for (int i = 0; i < out.length; i++) {
            out[i] = (byte) Integer.parseInt(text.substring(2 * i, 2 * i + 2), 16);
        }
        return out;
    }
}
