-- After an erasure the manage link says that the request was erased, and on which day, and nothing more
-- (issue 22, item 7): a generic 404 left patients unsure whether their erasure had worked.
--
-- What is kept is not linked to anything: no referral id, no reference, only a keyed hash (HMAC with the
-- broker's index key) of the manage token's SHA-256, whose own copy the erasure deletes from `referrals`, and
-- the day. Only someone holding the manage link can find the row. The retention run deletes a row once the
-- retention period has passed since the erasure (the link would show nothing by then anyway).
CREATE TABLE erased_manage_links (
    link_hash bytea PRIMARY KEY,
    erased_on date NOT NULL
);

CREATE INDEX erased_manage_links_erased_on ON erased_manage_links (erased_on);
