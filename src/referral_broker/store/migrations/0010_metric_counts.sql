-- /metrics reads counters that are kept as rows change, not counts over whole tables (issue 7).
-- Counting every referral and delivery ever made at each scrape grew with the years of history: at
-- one million referrals a scrape cost PostgreSQL about four seconds, every fifteen seconds. And the
-- latency histogram was computed from times the sweep later cuts to the day, so an anonymised
-- delivery moved between buckets and Prometheus saw its counters fall.
--
-- Statement-level triggers with transition tables add each statement's changes, once per statement,
-- to a row of the backend (connection) that made them. No two transactions ever update the same
-- row, so the counters add no lock waits and no deadlocks to intake or dispatch; a scrape sums the
-- few rows. Rows of backends that have gone are folded into backend 0 by the worker's heartbeat.
CREATE TABLE metric_counts (
    backend integer NOT NULL,       -- pg_backend_pid() of the connection that counted; 0: folded
    name    text NOT NULL,          -- see the trigger functions below
    value   double precision NOT NULL,
    PRIMARY KEY (backend, name)
) WITH (fillfactor = 50);           -- room for HOT updates on the same page

-- The upper bounds of the delivery latency histogram, in seconds ('latency:<bound>' counts the
-- deliveries whose time fell in the bucket ending at it, 'latency:+Inf' those above the last).
CREATE FUNCTION metric_latency_bounds() RETURNS double precision[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN ARRAY[0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400]::double precision[];

-- The bucket of a latency: the smallest bound at or above it. Plain expressions, so PostgreSQL
-- inlines the function into the trigger's query (a sub-SELECT over the bounds cost ~10 µs a row).
CREATE FUNCTION metric_latency_bucket(seconds double precision) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN 'latency:' || coalesce((metric_latency_bounds())[
        width_bucket(seconds, metric_latency_bounds()) + 1
        - coalesce(((metric_latency_bounds())[width_bucket(seconds, metric_latency_bounds())] = seconds)::int, 0)
    ]::text, '+Inf');

-- One INSERT … ON CONFLICT a statement, on this backend's rows, in name order. The gauge is the
-- new rows' statuses counted minus the old rows'. Measured (`docs/performance.md`): intake's insert
-- about +0.15 ms, a 50-row dispatch about +0.5 ms, a sweep statement of 2,000 deliveries a few ms.

-- referrals: 'submissions'.
-- deliveries: 'deliveries:<status>' (a gauge), 'dispatches' and the latency histogram (a delivery's
-- dispatched_at set), 'acknowledgements' (its acknowledged_at set).
CREATE FUNCTION metric_referrals_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO metric_counts AS m (backend, name, value)
    SELECT pg_backend_pid(), 'submissions', count(*) FROM new_rows HAVING count(*) > 0
    ON CONFLICT (backend, name) DO UPDATE SET value = m.value + excluded.value;
    RETURN NULL;
END $$;
CREATE FUNCTION metric_deliveries_changed() RETURNS trigger LANGUAGE plpgsql AS $$
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
        -- Which deliveries had dispatched_at (acknowledged_at) set by this statement: the old and new
        -- rows grouped by id, not joined. A join's plan is kept for the connection, made for the
        -- number of rows of its first statements: made for a one-row dispatch it looks the old rows
        -- up by a nested loop, 4 million steps for a sweep's 2,000 (0.3-0.6 s a batch, measured).
        -- Grouping costs the same whatever plan it gets.
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

-- clinic_notifications: 'notifications:sent', 'notifications:failed' (a notice that reaches either).
CREATE FUNCTION metric_notifications_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO metric_counts AS m (backend, name, value)
        SELECT pg_backend_pid(), 'notifications:' || status, count(*) FROM new_rows
        WHERE status IN ('sent', 'failed') GROUP BY status ORDER BY status
        ON CONFLICT (backend, name) DO UPDATE SET value = m.value + excluded.value;
    ELSE  -- a notice only leaves 'pending': the new rows counted minus the old
        INSERT INTO metric_counts AS m (backend, name, value)
        SELECT pg_backend_pid(), c.name, sum(c.amount) FROM (
            SELECT 'notifications:' || status AS name, count(*)::float8 AS amount FROM new_rows
            WHERE status IN ('sent', 'failed') GROUP BY status
            UNION ALL SELECT 'notifications:' || status, -count(*) FROM old_rows
            WHERE status IN ('sent', 'failed') GROUP BY status
        ) c
        GROUP BY c.name HAVING sum(c.amount) <> 0 ORDER BY c.name
        ON CONFLICT (backend, name) DO UPDATE SET value = m.value + excluded.value;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER metric_referrals_inserted AFTER INSERT ON referrals
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION metric_referrals_inserted();
CREATE TRIGGER metric_deliveries_inserted AFTER INSERT ON deliveries
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION metric_deliveries_changed();
CREATE TRIGGER metric_deliveries_updated AFTER UPDATE ON deliveries
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION metric_deliveries_changed();
CREATE TRIGGER metric_deliveries_deleted AFTER DELETE ON deliveries
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION metric_deliveries_changed();
CREATE TRIGGER metric_notifications_inserted AFTER INSERT ON clinic_notifications
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION metric_notifications_changed();
CREATE TRIGGER metric_notifications_updated AFTER UPDATE ON clinic_notifications
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION metric_notifications_changed();

-- What was there before: counted once, with the tables held still so that nothing is counted twice
-- or missed (the triggers above count only what commits after this migration). The latency of a
-- delivery already anonymised is read from its cut times, as the old scrape did.
LOCK TABLE referrals, deliveries, clinic_notifications IN SHARE ROW EXCLUSIVE MODE;
INSERT INTO metric_counts (backend, name, value)
SELECT 0, name, sum(amount) FROM (
    SELECT 'submissions' AS name, count(*)::float8 AS amount FROM referrals
    UNION ALL SELECT 'deliveries:' || status, 1 FROM deliveries
    UNION ALL SELECT 'dispatches', 1 FROM deliveries WHERE dispatched_at IS NOT NULL
    UNION ALL SELECT metric_latency_bucket(extract(epoch FROM dispatched_at - created_at)::float8), 1
        FROM deliveries WHERE dispatched_at IS NOT NULL
    UNION ALL SELECT 'latency_seconds', extract(epoch FROM dispatched_at - created_at)::float8
        FROM deliveries WHERE dispatched_at IS NOT NULL
    UNION ALL SELECT 'acknowledgements', 1 FROM deliveries WHERE acknowledged_at IS NOT NULL
    UNION ALL SELECT 'notifications:' || status, 1 FROM clinic_notifications WHERE status IN ('sent', 'failed')
) c
GROUP BY name HAVING sum(amount) <> 0;
