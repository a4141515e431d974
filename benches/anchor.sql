-- The anchor of SPEC §8: read bill_lines.csv and partners.csv and compute the two base levers of
-- the reference policy (resale_base, referral_base) per partner and currency, with exact DECIMAL
-- amounts rounded per line. `incentives run` must stay within 2x of this query's time.
-- ${BILL_LINES} is replaced by benches/bill_lines.sql, ${DIR} by the bundle folder.
WITH lines AS (
    SELECT * FROM ${BILL_LINES}
), partners AS (
    SELECT * FROM read_csv('${DIR}/partners.csv', header = true, auto_detect = false, columns = {
        'partner_id': 'VARCHAR', 'name': 'VARCHAR', 'partner_type': 'VARCHAR',
        'business_region': 'VARCHAR', 'market': 'VARCHAR', 'programme': 'VARCHAR',
        'joined_on': 'DATE', 'exited_on': 'DATE'})
), earning AS (
    SELECT l.partner_id, l.currency,
           CASE WHEN l.sales_mode = 'resale' THEN 'resale_base' ELSE 'referral_base' END AS lever,
           l.payable_amount - COALESCE(l.coupon_amount, 0) AS base,
           CASE WHEN l.sales_mode = 'resale'
                THEN CASE WHEN l.charge_mode = 'on_demand' THEN 0.05 ELSE 0.08 END
                ELSE CASE WHEN l.charge_mode = 'on_demand' THEN 0.03 ELSE 0.05 END
           END AS rate,
           CAST(timezone('Asia/Shanghai', l.trade_time) AS DATE) AS trade_date,
           p.joined_on, p.exited_on
    FROM lines l JOIN partners p USING (partner_id)
    WHERE l.payable_amount > 0
      AND l.bill_type <> 'adjustment'
      AND l.service_type_code NOT IN ('hws.service.type.marketplace', 'hws.service.type.support',
                                      'hws.service.type.domain')
      AND (l.sales_mode = 'referral' OR p.partner_type = 'solution_provider')
)
SELECT partner_id, lever, currency, COUNT(*) AS lines, SUM(base) AS base,
       SUM(ROUND(base * rate, 2)) AS amount
FROM earning
WHERE joined_on <= trade_date AND (exited_on IS NULL OR trade_date < exited_on)
GROUP BY ALL
ORDER BY ALL;
