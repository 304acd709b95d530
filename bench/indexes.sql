-- The plans behind sends migration 0010 and usage migration 0003 (issue 15: drop the indexes
-- that no query uses). Run on the benchmark's million-send database after `make bench`:
--   psql -h 127.0.0.1 -U postgres -d flx_bench_1m -f bench/indexes.sql
-- Each EXPLAIN names the index that serves a query that could have used a dropped one.
\pset pager off
SELECT min(organization_id) AS org FROM sends_send \gset
ANALYZE sends_send;
ANALYZE sends_event;
ANALYZE sends_idempotencyrecord;
ANALYZE usage_usagecounter;
ANALYZE usage_usagerejection;
\echo '--- indexes of the tables a send writes, and how often each was used'
SELECT relname AS table, indexrelname AS index, idx_scan
FROM pg_stat_user_indexes
WHERE relname IN ('sends_send', 'sends_event', 'sends_message', 'sends_idempotencyrecord',
                  'usage_usagecounter', 'usage_usagerejection')
ORDER BY 1, 2;
\echo '--- a send list (GET /api/v1/sends), newest first'
EXPLAIN SELECT id FROM sends_send WHERE organization_id = :org ORDER BY public_id DESC LIMIT 51;
\echo '--- the cascade of an organization deletion'
EXPLAIN DELETE FROM sends_send WHERE organization_id IN (:org + 1);
EXPLAIN DELETE FROM sends_idempotencyrecord WHERE organization_id IN (:org + 1);
\echo '--- a send by its public id; the takeover range of sends.idempotency'
EXPLAIN SELECT id FROM sends_send WHERE public_id = 'sends_01m8wtfh6p90y0ta8xc4z25vck';
EXPLAIN SELECT id FROM sends_send WHERE organization_id = :org
  AND public_id >= 'sends_01m8wt0000000000000000000' AND idempotency_key = 'k'
  ORDER BY created_at, id LIMIT 1;
\echo '--- the admin search (=public_id is iexact): no index serves it, LIKE or not'
EXPLAIN SELECT id FROM sends_send WHERE UPPER(public_id::text) = UPPER('sends_01m8wtfh6p90y0ta8xc4z25vck');
\echo '--- an event by public id, by dedupe key (a provider event seen before)'
EXPLAIN SELECT id FROM sends_event WHERE public_id = 'evt_01m8wtfh6p90y0ta8xc4z25vck';
EXPLAIN SELECT id FROM sends_event WHERE dedupe_key = 'abc';
\echo '--- the idempotency lookup'
EXPLAIN SELECT id FROM sends_idempotencyrecord WHERE organization_id = :org AND key = 'k';
\echo '--- usage by organization (sequential scans off: these tables are small here)'
SET enable_seqscan = off;
EXPLAIN SELECT * FROM usage_usagecounter WHERE organization_id = :org AND hour >= now() - interval '7 days';
EXPLAIN DELETE FROM usage_usagecounter WHERE organization_id IN (:org + 1);
EXPLAIN DELETE FROM usage_usagerejection WHERE organization_id IN (:org + 1);
