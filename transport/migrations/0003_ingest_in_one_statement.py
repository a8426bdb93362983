"""`lpr_ingest`: a small batch of detections and health reports stored by one statement (PostgreSQL only).

`transport.one_statement` calls it. A write of the real-time path took six to eight round trips (BEGIN, the
ledger, the open passages, the new passages, the detections, the device touch, COMMIT), each a wait for two
busy cores; called in autocommit, this is one, and its own transaction. It does what `transport.store.write`
does for the same messages: the ledger decides what is new, only new messages get their rows, each new read
joins or starts a passage (as `detections.passages.assign`, read by read in capture order), and the devices
that sent something new are touched unless another transaction holds them.

Arguments: the batch's receive time, the passage window and edit distance, then the rows
as JSON arrays of objects keyed by the model field names `transport.store` writes (ledger, detections, health
reports, device touches). Returns one row per new message (its id as text and, for a read, its passage) and one
per device touched (`touched`).
"""

from django.db import migrations

FUNCTION = r"""
CREATE OR REPLACE FUNCTION lpr_ingest(
    received timestamptz, passage_window interval, max_distance integer,
    ledger json, detections json, health json, touches json
) RETURNS TABLE (message_id text, passage_id bigint, touched text)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    fresh uuid[];
    r record;
    found bigint;
    read_ids uuid[] := '{}';
    passage_ids bigint[] := '{}';
BEGIN
    WITH inserted AS (
        INSERT INTO transport_message (message_id, device_id, data_type, received_via, protocol, sequence, sent_at,
                                       received_at, latency_ms)
        SELECT l.message_id, l.device, l.data_type, l.received_via, l.protocol, l.sequence, l.sent_at, received,
               l.latency_ms
        FROM json_to_recordset(ledger) AS l(message_id uuid, device text, data_type text, received_via text,
                                            protocol text, sequence bigint, sent_at timestamptz, latency_ms float8)
        ON CONFLICT (message_id) DO NOTHING
        RETURNING transport_message.message_id
    )
    SELECT coalesce(array_agg(inserted.message_id), '{}') INTO fresh FROM inserted;

    -- Each new read, in capture order: the passage it joins (same folded plate first, then the nearest in time
    -- among those within the edit distance), or a new one.
    FOR r IN
        SELECT d.message_id, d.device, d.plate_normalized, d.folded, d.confidence, d.captured_at AS at
        FROM json_to_recordset(detections) AS d(message_id uuid, device text, plate_normalized text, folded text,
                                                confidence float8, captured_at timestamptz)
        WHERE d.message_id = ANY (fresh)
        ORDER BY d.captured_at
    LOOP
        SELECT p.id INTO found FROM detections_passage p
        WHERE p.device_id = r.device AND p.last_at >= r.at - passage_window AND p.first_at <= r.at + passage_window
          AND (p.plate_folded = r.folded OR levenshtein_less_equal(p.plate_folded, r.folded, max_distance) <= max_distance)
        ORDER BY p.plate_folded <> r.folded, greatest(p.first_at - r.at, r.at - p.last_at, interval '0')
        LIMIT 1;
        IF found IS NULL THEN
            INSERT INTO detections_passage (device_id, plate_normalized, plate_folded, best_message_id,
                                            best_confidence, first_at, last_at, read_count)
            VALUES (r.device, r.plate_normalized, r.folded, r.message_id, r.confidence, r.at, r.at, 1)
            RETURNING id INTO found;
        ELSE
            UPDATE detections_passage p SET
                read_count = p.read_count + 1,
                first_at = least(p.first_at, r.at), last_at = greatest(p.last_at, r.at),
                best_message_id = CASE WHEN r.confidence > p.best_confidence THEN r.message_id ELSE p.best_message_id END,
                plate_normalized = CASE WHEN r.confidence > p.best_confidence THEN r.plate_normalized ELSE p.plate_normalized END,
                plate_folded = CASE WHEN r.confidence > p.best_confidence THEN r.folded ELSE p.plate_folded END,
                best_confidence = greatest(p.best_confidence, r.confidence)
            WHERE p.id = found;
        END IF;
        read_ids := read_ids || r.message_id;
        passage_ids := passage_ids || found;
    END LOOP;

    INSERT INTO detections_detection (message_id, device_id, plate, plate_normalized, confidence, region,
        candidates, vehicle, bbox, direction, speed_kph, lane, image_id, captured_at, received_at, received_via,
        protocol, latency_ms, extra, search_text, passage_id)
    SELECT d.message_id, d.device, d.plate, d.plate_normalized, d.confidence, d.region, d.candidates, d.vehicle,
           d.bbox, d.direction, d.speed_kph, d.lane, d.image, d.captured_at, received, d.received_via, d.protocol,
           d.latency_ms, d.extra, d.search_text, a.passage_id
    FROM json_to_recordset(detections) AS d(message_id uuid, device text, plate text, plate_normalized text,
            confidence float8, region text, candidates jsonb, vehicle jsonb, bbox jsonb, direction text,
            speed_kph float8, lane float8, image uuid, captured_at timestamptz, received_via text, protocol text,
            latency_ms float8, extra jsonb, search_text text)
    JOIN unnest(read_ids, passage_ids) AS a(message_id, passage_id) ON a.message_id = d.message_id;

    INSERT INTO devices_healthlog (message_id, device_id, reported_at, received_at, received_via, cpu_percent,
        memory_percent, temperature_c, disk_percent, uptime_s, fps, queue_depth, firmware, latency_ms,
        bandwidth_kbps, packet_loss, uptime_percent, extra)
    SELECT h.message_id, h.device, h.reported_at, received, h.received_via, h.cpu_percent, h.memory_percent,
           h.temperature_c, h.disk_percent, h.uptime_s, h.fps, h.queue_depth, h.firmware, h.latency_ms,
           h.bandwidth_kbps, h.packet_loss, h.uptime_percent, h.extra
    FROM json_to_recordset(health) AS h(message_id uuid, device text, reported_at timestamptz, received_via text,
            cpu_percent float8, memory_percent float8, temperature_c float8, disk_percent float8, uptime_s float8,
            fps float8, queue_depth integer, firmware text, latency_ms float8, bandwidth_kbps float8,
            packet_loss float8, uptime_percent float8, extra jsonb)
    WHERE h.message_id = ANY (fresh);

    RETURN QUERY SELECT f::text, a.passage_id, NULL::text
        FROM unnest(fresh) AS f LEFT JOIN unnest(read_ids, passage_ids) AS a(message_id, passage_id)
        ON a.message_id = f;

    -- Devices that sent something new, unless another transaction holds their row (see store._touch_devices).
    RETURN QUERY
    WITH v AS (
        SELECT t.device, t.via, t.firmware FROM json_to_recordset(touches) AS t(device text, via text, firmware text)
        WHERE t.device IN (SELECT l.device FROM json_to_recordset(ledger) AS l(message_id uuid, device text)
                           WHERE l.message_id = ANY (fresh))
    ), free AS (
        SELECT d.id FROM devices_device d JOIN v ON v.device = d.id
        ORDER BY d.id FOR NO KEY UPDATE OF d SKIP LOCKED
    )
    , done AS (
        UPDATE devices_device d SET last_seen_at = received, last_transport = v.via, firmware = v.firmware
        FROM v JOIN free ON free.id = v.device WHERE d.id = v.device
        RETURNING d.id
    )
    SELECT NULL::text, NULL::bigint, done.id::text FROM done;
END
$fn$
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTION)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "DROP FUNCTION IF EXISTS lpr_ingest(timestamptz, interval, integer, json, json, json, json)"
        )


class Migration(migrations.Migration):
    # PL/pgSQL resolves tables and columns when it runs, not here: the function needs only fuzzystrmatch
    # (detections 0003). Depending on later migrations would drop it whenever one of those is unapplied.
    dependencies = [
        ("transport", "0002_lean_ledger_indexes"),
        ("detections", "0003_trigram_indexes_on_postgresql"),
    ]

    operations = [migrations.RunPython(create, drop)]
