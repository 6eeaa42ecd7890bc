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

CREATE FUNCTION metric_latency_bucket(seconds double precision) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN 'latency:' || coalesce(
        (SELECT min(b) FROM unnest(metric_latency_bounds()) AS b WHERE seconds <= b)::text, '+Inf');

-- Adds (name, value) pairs to this backend's rows, in name order.
CREATE FUNCTION metric_add(names text[], amounts double precision[]) RETURNS void
    LANGUAGE sql
    BEGIN ATOMIC
        INSERT INTO metric_counts AS m (backend, name, value)
        SELECT pg_backend_pid(), d.name, sum(d.amount)
        FROM unnest(names, amounts) AS d(name, amount)
        GROUP BY d.name HAVING sum(d.amount) <> 0
        ORDER BY d.name
        ON CONFLICT (backend, name) DO UPDATE SET value = m.value + excluded.value;
    END;

-- referrals: 'submissions'.
CREATE FUNCTION metric_referrals_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM metric_add(ARRAY['submissions'], ARRAY[(SELECT count(*) FROM new_rows)::double precision]);
    RETURN NULL;
END $$;

-- deliveries: 'deliveries:<status>' (a gauge), 'dispatches' and the latency histogram (a delivery's
-- dispatched_at set), 'acknowledgements' (its acknowledged_at set).
CREATE FUNCTION metric_deliveries_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM metric_add(array_agg(c.name), array_agg(c.amount)) FROM (
            SELECT 'deliveries:' || status AS name, 1 AS amount FROM new_rows
            UNION ALL SELECT 'dispatches', 1 FROM new_rows WHERE dispatched_at IS NOT NULL
            UNION ALL SELECT metric_latency_bucket(extract(epoch FROM dispatched_at - created_at)::float8), 1
                FROM new_rows WHERE dispatched_at IS NOT NULL
            UNION ALL SELECT 'latency_seconds', extract(epoch FROM dispatched_at - created_at)::float8
                FROM new_rows WHERE dispatched_at IS NOT NULL
            UNION ALL SELECT 'acknowledgements', 1 FROM new_rows WHERE acknowledged_at IS NOT NULL
        ) c;
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM metric_add(array_agg(c.name), array_agg(c.amount)) FROM (
            SELECT 'deliveries:' || n.status AS name, 1 AS amount
                FROM new_rows n JOIN old_rows o USING (id) WHERE n.status <> o.status
            UNION ALL SELECT 'deliveries:' || o.status, -1
                FROM new_rows n JOIN old_rows o USING (id) WHERE n.status <> o.status
            UNION ALL SELECT 'dispatches', 1
                FROM new_rows n JOIN old_rows o USING (id) WHERE n.dispatched_at IS NOT NULL AND o.dispatched_at IS NULL
            UNION ALL SELECT metric_latency_bucket(extract(epoch FROM n.dispatched_at - n.created_at)::float8), 1
                FROM new_rows n JOIN old_rows o USING (id) WHERE n.dispatched_at IS NOT NULL AND o.dispatched_at IS NULL
            UNION ALL SELECT 'latency_seconds', extract(epoch FROM n.dispatched_at - n.created_at)::float8
                FROM new_rows n JOIN old_rows o USING (id) WHERE n.dispatched_at IS NOT NULL AND o.dispatched_at IS NULL
            UNION ALL SELECT 'acknowledgements', 1
                FROM new_rows n JOIN old_rows o USING (id)
                WHERE n.acknowledged_at IS NOT NULL AND o.acknowledged_at IS NULL
        ) c;
    ELSE  -- DELETE: the gauge only; what happened to a delivery stays counted
        PERFORM metric_add(array_agg('deliveries:' || status), array_agg(-1::double precision)) FROM old_rows;
    END IF;
    RETURN NULL;
END $$;

-- clinic_notifications: 'notifications:sent', 'notifications:failed' (a notice that reaches either).
CREATE FUNCTION metric_notifications_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM metric_add(array_agg('notifications:' || status), array_agg(1::double precision))
        FROM new_rows WHERE status IN ('sent', 'failed');
    ELSE
        PERFORM metric_add(array_agg('notifications:' || n.status), array_agg(1::double precision))
        FROM new_rows n JOIN old_rows o USING (id)
        WHERE n.status IN ('sent', 'failed') AND n.status <> o.status;
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
