#!/usr/bin/env python3
"""Optional check with an independent reader (pyarrow): every table of a Parquet cycle holds the
same rows as the CSV cycle of the same inputs, each column in its SPEC §8 type.
    python3 scripts/check_parquet.py OUT_CSV/<cycle> OUT_PARQUET/<cycle>
Needs pyarrow (pip install pyarrow). tests/parquet_cli.rs is the check CI runs."""
import csv, datetime, decimal, pathlib, sys
import pyarrow as pa
import pyarrow.parquet as pq

COUNTS = {"row", "source_row", "rejected_lines"}
INSTANTS = {"trade_time", "expires_at"}
DATES = {"expires_on"}


def expected_type(name, field_type):
    if name in COUNTS:
        return pa.types.is_int64(field_type)
    if name in INSTANTS:
        return field_type == pa.timestamp("us", tz="UTC") or field_type == pa.timestamp("us", tz="+00:00")
    if name in DATES:
        return pa.types.is_date32(field_type)
    if pa.types.is_decimal(field_type):
        return (field_type.precision, field_type.scale) == (38, 8)
    return pa.types.is_string(field_type) or pa.types.is_large_string(field_type)


def as_csv(value):
    """A Parquet value as the CSV writes it (None: an empty or unreadable cell)."""
    if isinstance(value, datetime.datetime):
        text = value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        micros = value.microsecond
        if micros % 1000 == 0 and micros:
            text += f".{micros // 1000:03d}"
        elif micros:
            text += f".{micros:06d}"
        return text + "Z"
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


def main(csv_dir, pq_dir):
    csv_dir, pq_dir = pathlib.Path(csv_dir), pathlib.Path(pq_dir)
    bad = 0
    tables = sorted(p.relative_to(csv_dir) for p in csv_dir.rglob("*.csv"))
    for rel in tables:
        table = pq.read_table(pq_dir / rel.with_suffix(".parquet"))
        with open(csv_dir / rel, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        header, records = rows[0], rows[1:]
        problems = []
        if table.column_names != header:
            problems.append(f"columns {table.column_names} != {header}")
        if table.num_rows != len(records):
            problems.append(f"{table.num_rows} rows != {len(records)}")
        for i, field in enumerate(table.schema):
            if not expected_type(field.name, field.type):
                problems.append(f"{field.name}: {field.type}")
            for r, value in enumerate(table.column(i).to_pylist()):
                text = records[r][i] if r < len(records) else None
                if value is None:
                    ok = text == "" or not _is_decimal(text)
                elif isinstance(value, decimal.Decimal):
                    ok = _is_decimal(text) and value == decimal.Decimal(text.lstrip("'"))
                else:
                    ok = str(as_csv(value)) == text
                if not ok:
                    problems.append(f"{field.name} row {r + 1}: {value!r} != {text!r}")
                    break
        print(("ok      " if not problems else "DIFFERS ") + str(rel), *problems[:5], sep="\n  " if problems else "")
        bad += bool(problems)
    print(f"{len(tables)} tables, {bad} differing")
    return 1 if bad else 0


def _is_decimal(text):
    try:
        decimal.Decimal(text.lstrip("'"))
        return True
    except (decimal.InvalidOperation, AttributeError):
        return False


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
