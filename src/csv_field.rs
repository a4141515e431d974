//! One CSV field as RFC 4180 writes it: the engine's one CSV field writer, a leaf that the output
//! tables (`write/`) and the state's parts (`state/`) both use.

/// Whether a CSV field must be quoted (RFC 4180; what the csv crate's `Necessary` style does
/// for a field that is not a record's only one): it holds `,`, `"`, `\n` or `\r`.
///
/// Every text cell of every output goes through here (4 GB at 10M lines), so eight bytes are
/// tested at a time: a byte of `x ^ c` is zero where `x` holds `c`, and
/// `(y - 0x01..01) & !y & 0x80..80` is non-zero exactly when some byte of `y` is zero.
fn needs_quotes(field: &str) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let has_zero_byte = |y: u64| y.wrapping_sub(ONES) & !y & HIGHS != 0;
    let special = |b: u8| matches!(b, b',' | b'"' | b'\n' | b'\r');
    let mut words = field.as_bytes().chunks_exact(8);
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let x = u64::from_ne_bytes(bytes);
        if [b',', b'"', b'\n', b'\r']
            .iter()
            .any(|&c| has_zero_byte(x ^ (ONES * u64::from(c))))
        {
            return true;
        }
    }
    words.remainder().iter().any(|&b| special(b))
}

/// Appends one CSV field to `out`, quoted (quotes doubled) only where RFC 4180 needs it. The one
/// CSV field writer of the engine: output tables and the state's parts both use it.
pub fn push_csv_field(out: &mut String, field: &str) {
    if needs_quotes(field) {
        out.reserve(field.len() + 2);
        out.push('"');
        for (k, part) in field.split('"').enumerate() {
            if k > 0 {
                out.push_str("\"\"");
            }
            out.push_str(part);
        }
        out.push('"');
    } else {
        out.push_str(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Any field, its special bytes at any offset of the eight-byte words, is written as the
        /// csv crate writes it (quoted only when needed, quotes doubled).
        #[test]
        fn a_field_is_written_as_the_csv_crate_writes_it(
            field in "[a-z0-9\\.é中,\"\n\r -]{0,40}"
        ) {
            let mut ours = String::new();
            push_csv_field(&mut ours, &field);
            ours.push_str(",x");
            let mut w = csv::WriterBuilder::new()
                .terminator(csv::Terminator::Any(b'\n'))
                .from_writer(Vec::new());
            w.write_record([field.as_str(), "x"]).unwrap();
            let theirs = String::from_utf8(w.into_inner().unwrap()).unwrap();
            proptest::prop_assert_eq!(format!("{ours}\n"), theirs);
            let naive = field.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
            proptest::prop_assert_eq!(needs_quotes(&field), naive);
        }
    }
}
