-- What DuckDB takes to read bill_lines.csv and write files of the shape, sort order and size of
-- a run's three large outputs (SPEC §5, Appendix B), with no rule evaluated: `line_outcomes.csv`
-- (one row per line, by line id), `ledger.csv` (about 0.77 rows per line at the generator's mix,
-- by partner, customer, line), the same rows again as one statement per partner
-- (`ledgers/partner_id=<id>/`), and `explanations.csv` (one row per partner x customer x
-- currency, with a paragraph). Amounts are exact DECIMAL. Not a target: a floor under what any
-- engine pays on this machine to read these inputs and write these outputs (BENCHMARKS.md).
-- ${BILL_LINES} is benches/bill_lines.sql, ${DIR} the bundle folder, ${OUT} an empty folder.
-- Statements are split at every semicolon, so none may appear inside a string.
CREATE TEMP TABLE lines AS SELECT * FROM ${BILL_LINES};
COPY (
    SELECT line_id, partner_id, customer_id, bill_type, payable_amount, currency,
           CASE WHEN payable_amount > 0 THEN 'earned' ELSE 'refund_not_earned' END AS fate,
           charge_mode AS reason, 'resale_base.standard_yearly' AS rule_ids,
           payable_amount - coalesce(coupon_amount, 0) AS base,
           round((payable_amount - coalesce(coupon_amount, 0)) * 0.05, 2) AS incentive,
           '2026-10' AS credit_cycle, 0 AS source_row
    FROM lines ORDER BY line_id
) TO '${OUT}/line_outcomes.csv' (FORMAT csv, HEADER);
CREATE TEMP TABLE ledger AS
SELECT '2026-10-' || row_number() OVER (ORDER BY partner_id, customer_id, line_id) AS entry_id,
       partner_id, customer_id, line_id, order_id, 'resale_base' AS lever,
       'resale_base.standard_yearly' AS rule_id, 'earn' AS kind, '' AS ref_id,
       '2026-10' AS earned_cycle, '2026-10' AS credit_cycle,
       payable_amount - coalesce(coupon_amount, 0) AS base, 0.05 AS rate,
       round((payable_amount - coalesce(coupon_amount, 0)) * 0.05, 2) AS amount, currency,
       '2c363887e5f83a39210e46d2f9a8ea30e5c21b61c6e31594a1882c982c4329dc' AS ruleset_hash
FROM lines WHERE hash(line_id) % 100 < 77;
COPY (SELECT * FROM ledger ORDER BY partner_id, customer_id, line_id)
    TO '${OUT}/ledger.csv' (FORMAT csv, HEADER);
COPY (SELECT * FROM ledger ORDER BY partner_id, customer_id, line_id)
    TO '${OUT}/ledgers' (FORMAT csv, HEADER, PARTITION_BY (partner_id));
COPY (
    SELECT '2026-10' AS cycle, partner_id, customer_id, currency,
           sum(payable_amount) FILTER (WHERE payable_amount > 0) AS consumption,
           sum(payable_amount) FILTER (WHERE payable_amount < 0) AS refunds,
           sum(payable_amount - coalesce(coupon_amount, 0)) AS eligible_base,
           count(*) AS lines,
           'In cycle 2026-10, customer ' || customer_id || ' of ' || partner_id || ' consumed '
               || coalesce(sum(payable_amount) FILTER (WHERE payable_amount > 0), 0) || ' '
               || currency || ' and was refunded '
               || coalesce(sum(payable_amount) FILTER (WHERE payable_amount < 0), 0)
               || '. Of that, ' || sum(payable_amount - coalesce(coupon_amount, 0))
               || ' was the eligible base over ' || count(*) || ' lines, and the incentive credited this cycle is '
               || round(sum(payable_amount - coalesce(coupon_amount, 0)) * 0.05, 2) || '.' AS explanation
    FROM lines GROUP BY partner_id, customer_id, currency ORDER BY partner_id, customer_id, currency
) TO '${OUT}/explanations.csv' (FORMAT csv, HEADER);
