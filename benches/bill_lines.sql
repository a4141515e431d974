-- bill_lines.csv as DuckDB reads it in benches/anchor.sql and benches/outputs_floor.sql (where
-- ${BILL_LINES} stands): every column typed, amounts exact DECIMAL. ${DIR} is the bundle folder.
read_csv('${DIR}/bill_lines.csv', header = true, auto_detect = false, columns = {
    'line_id': 'VARCHAR', 'bill_cycle': 'VARCHAR', 'partner_id': 'VARCHAR',
    'customer_id': 'VARCHAR', 'sales_mode': 'VARCHAR', 'market': 'VARCHAR', 'region': 'VARCHAR',
    'service_type_code': 'VARCHAR', 'resource_type_code': 'VARCHAR', 'charge_mode': 'VARCHAR',
    'bill_type': 'VARCHAR', 'trade_time': 'TIMESTAMPTZ', 'order_id': 'VARCHAR',
    'original_order_id': 'VARCHAR', 'official_amount': 'DECIMAL(20,8)',
    'discount_amount': 'DECIMAL(20,8)', 'payable_amount': 'DECIMAL(20,8)',
    'coupon_amount': 'DECIMAL(20,8)', 'settlement_amount': 'DECIMAL(20,8)', 'currency': 'VARCHAR'})
