-- The deliveries' counters without the per-delivery grouping when a statement sets no new dispatch or
-- acknowledgement (issue 7). The grouping of old and new rows by id (0010) tells which deliveries had
-- dispatched_at or acknowledged_at set by a statement; it cost the anonymisation sweep about 13 ms a
-- batch of 2,000 deliveries, a fifth of the batch, though the sweep only cuts those times to the day.
--
-- No statement sets dispatched_at or acknowledged_at back to NULL (deliveries.py sets them to a time,
-- the sweep cuts them to the day). So when a statement's new rows hold as many of each as its old rows
-- did, none was set by it, and only the statuses need counting: one count of each transition table.
CREATE OR REPLACE FUNCTION metric_deliveries_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_dispatched bigint;
    old_acknowledged bigint;
    new_dispatched bigint;
    new_acknowledged bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO metric_counts AS m (backend, name, value)
        SELECT pg_backend_pid(), c.name, sum(c.amount) FROM (
            SELECT 'deliveries:' || status AS name, count(*)::float8 AS amount FROM new_rows GROUP BY status
            UNION ALL SELECT x.name, x.amount FROM (
                SELECT extract(epoch FROM dispatched_at - created_at)::float8 AS seconds
                FROM new_rows WHERE dispatched_at IS NOT NULL
            ) d CROSS JOIN LATERAL (VALUES
                ('dispatches', 1::float8), ('latency_seconds', d.seconds), (metric_latency_bucket(d.seconds), 1)
            ) AS x(name, amount)
            UNION ALL SELECT 'acknowledgements', count(*) FROM new_rows WHERE acknowledged_at IS NOT NULL
        ) c
        GROUP BY c.name HAVING sum(c.amount) <> 0 ORDER BY c.name
        ON CONFLICT (backend, name) DO UPDATE SET value = m.value + excluded.value;
    ELSIF TG_OP = 'UPDATE' THEN
        SELECT count(dispatched_at), count(acknowledged_at) INTO old_dispatched, old_acknowledged FROM old_rows;
        SELECT count(dispatched_at), count(acknowledged_at) INTO new_dispatched, new_acknowledged FROM new_rows;
        IF new_dispatched = old_dispatched AND new_acknowledged = old_acknowledged THEN
            INSERT INTO metric_counts AS m (backend, name, value)
            SELECT pg_backend_pid(), c.name, sum(c.amount) FROM (
                SELECT 'deliveries:' || status AS name, count(*)::float8 AS amount FROM new_rows GROUP BY status
                UNION ALL SELECT 'deliveries:' || status, -count(*) FROM old_rows GROUP BY status
            ) c
            GROUP BY c.name HAVING sum(c.amount) <> 0 ORDER BY c.name
            ON CONFLICT (backend, name) DO UPDATE SET value = m.value + excluded.value;
            RETURN NULL;
        END IF;
        -- Which deliveries had dispatched_at (acknowledged_at) set by this statement: the old and new
        -- rows grouped by id, not joined (0010 says why).
        INSERT INTO metric_counts AS m (backend, name, value)
        SELECT pg_backend_pid(), c.name, sum(c.amount) FROM (
            SELECT 'deliveries:' || status AS name, count(*)::float8 AS amount FROM new_rows GROUP BY status
            UNION ALL SELECT 'deliveries:' || status, -count(*) FROM old_rows GROUP BY status
            UNION ALL SELECT x.name, x.amount FROM (
                SELECT max(u.seconds) AS seconds,
                       bool_or(u.now AND u.dispatched) AND NOT bool_or(NOT u.now AND u.dispatched) AS dispatched,
                       bool_or(u.now AND u.acknowledged) AND NOT bool_or(NOT u.now AND u.acknowledged)
                           AS acknowledged
                FROM (
                    SELECT id, true AS now, dispatched_at IS NOT NULL AS dispatched,
                           acknowledged_at IS NOT NULL AS acknowledged,
                           extract(epoch FROM dispatched_at - created_at)::float8 AS seconds
                    FROM new_rows
                    UNION ALL
                    SELECT id, false, dispatched_at IS NOT NULL, acknowledged_at IS NOT NULL, NULL FROM old_rows
                ) u
                GROUP BY u.id
            ) d CROSS JOIN LATERAL (VALUES
                (CASE WHEN d.dispatched THEN 'dispatches' END, 1::float8),
                (CASE WHEN d.dispatched THEN 'latency_seconds' END, d.seconds),
                (CASE WHEN d.dispatched THEN metric_latency_bucket(d.seconds) END, 1),
                (CASE WHEN d.acknowledged THEN 'acknowledgements' END, 1)
            ) AS x(name, amount)
            WHERE x.name IS NOT NULL
        ) c
        GROUP BY c.name HAVING sum(c.amount) <> 0 ORDER BY c.name
        ON CONFLICT (backend, name) DO UPDATE SET value = m.value + excluded.value;
    ELSE
        INSERT INTO metric_counts AS m (backend, name, value)
        SELECT pg_backend_pid(), 'deliveries:' || status, -count(*) FROM old_rows GROUP BY status ORDER BY 2
        ON CONFLICT (backend, name) DO UPDATE SET value = m.value + excluded.value;
    END IF;
    RETURN NULL;
END $$;
