//! Property tests: no input makes the parser panic or lose track of lines, and
//! whatever the encoder accepts parses back to the same line.

use std::borrow::Cow;

use proptest::prelude::*;
use tradestack_lineproto::{
    FieldValue, Line, ParseOptions, Parser, Precision, encode_line, parse_batch,
};

/// Bytes that matter to the grammar, plus a few arbitrary ones.
fn tricky_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => prop::sample::select(b" ,=\"\\#\n\r\t-.0123456789eiu tTfF".to_vec()),
        2 => prop::sample::select(b"abcmxyz".to_vec()),
        1 => any::<u8>(),
    ]
}

/// Names made of letters and the characters that need escaping.
fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            'a', 'b', 'Z', '0', ' ', ',', '=', '"', '\\', '#', 'é', '€', '🚀', '-', '_',
        ]),
        1..8,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

fn field_value() -> impl Strategy<Value = FieldValue<'static>> {
    prop_oneof![
        any::<f64>()
            .prop_filter("finite", |v| v.is_finite())
            .prop_map(FieldValue::Float),
        any::<i64>().prop_map(FieldValue::Integer),
        any::<u64>().prop_map(FieldValue::UInteger),
        any::<bool>().prop_map(FieldValue::Boolean),
        ".{0,12}".prop_map(|s| FieldValue::String(Cow::Owned(s))),
    ]
}

fn line() -> impl Strategy<Value = Line<'static>> {
    (
        name(),
        prop::collection::vec((name(), name()), 0..4),
        prop::collection::vec((name(), field_value()), 1..5),
        prop::option::of(any::<i64>()),
    )
        .prop_map(|(measurement, tags, fields, timestamp)| Line {
            measurement: measurement.into(),
            tags: tags
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            fields: fields.into_iter().map(|(k, v)| (k.into(), v)).collect(),
            timestamp,
        })
}

/// Parses everything, checking the invariants every result must satisfy.
fn parse_checked(input: &[u8]) {
    let line_count = input.iter().filter(|&&c| c == b'\n').count() + 1;
    let mut good = 0;
    let errors = parse_batch(input, &ParseOptions::new(Precision::Seconds), |line| {
        assert!(!line.measurement.is_empty());
        assert!(!line.fields.is_empty());
        good += 1;
    });
    assert!(good + errors.len() <= line_count);
    let mut last_line = 0;
    for e in &errors {
        assert!(
            e.line >= 1 && e.line <= line_count,
            "{e:?} in {line_count} lines"
        );
        assert!(e.line > last_line, "errors out of order: {errors:?}");
        assert!(e.column >= 1);
        last_line = e.line;
        let _ = e.to_string();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..256)) {
        parse_checked(&input);
    }

    #[test]
    fn grammar_heavy_bytes_never_panic(input in prop::collection::vec(tricky_byte(), 0..256)) {
        parse_checked(&input);
    }

    #[test]
    fn mutated_valid_lines_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), tricky_byte()), 1..6)
    ) {
        let mut input = b"trades,symbol=BTC-USDT,side=buy price=42000.5,amount=0.0123,id=123456i,s=\"a b\" 1582329600\n\
                          quotes,symbol=ETH-USDT bid=1.5,ask=1.6,bid_size=10,ask_size=12 1582329601\n".to_vec();
        for (at, byte) in edits {
            let i = at.index(input.len());
            input[i] = byte;
        }
        parse_checked(&input);
    }

    #[test]
    fn encoded_lines_parse_back_unchanged(line in line()) {
        let mut text = String::new();
        if encode_line(&line, Precision::Nanoseconds, &mut text).is_ok() {
            let parsed: Vec<_> = Parser::new(text.as_bytes(), &ParseOptions::default()).collect();
            prop_assert_eq!(parsed.len(), 1, "{:?}", text);
            let parsed = parsed.into_iter().next().unwrap();
            prop_assert_eq!(parsed.as_ref().ok(), Some(&line), "{:?}", text);
        } else {
            prop_assert!(text.is_empty());
        }
    }

    #[test]
    fn batches_keep_good_lines(lines in prop::collection::vec(line(), 1..8), bad_at in any::<prop::sample::Index>()) {
        // Encode a batch, then break one line: exactly that line is lost.
        let mut encoded = Vec::new();
        for l in &lines {
            let mut text = String::new();
            if encode_line(l, Precision::Nanoseconds, &mut text).is_ok() && !text[..text.len() - 1].contains('\n') {
                encoded.push((l.clone(), text));
            }
        }
        prop_assume!(!encoded.is_empty());
        let bad = bad_at.index(encoded.len());
        let mut batch = String::new();
        for (i, (_, text)) in encoded.iter().enumerate() {
            batch.push_str(if i == bad { "broken line\n" } else { text });
        }
        let mut good = Vec::new();
        let errors = parse_batch(batch.as_bytes(), &ParseOptions::default(), |l| good.push(l.clone().into_owned()));
        let want: Vec<_> = encoded.iter().enumerate().filter(|(i, _)| *i != bad).map(|(_, (l, _))| l.clone()).collect();
        prop_assert_eq!(good, want);
        prop_assert_eq!(errors.len(), 1);
        prop_assert_eq!(errors[0].line, bad + 1);
    }
}
